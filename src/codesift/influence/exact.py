"""The exact data-influence score (the paper's DIScore, computed as MATES's probe does).

From a checkpoint with its real optimizer state: take ONE optimizer step on one candidate block,
exactly as the Trainer would (the same loss, gradient clipping, learning rate at that step, betas,
eps, weight decay and bias correction, because it IS the Trainer's optimizer), measure every task's
validation loss, then restore weights and optimizer state bit for bit, in memory.

    score = loss_before - loss_after        (positive: the block helps the task)
"""

from __future__ import annotations

import random
import time

import numpy as np
import torch

from .validation import InfluenceError, OneAtATime, ValidationBatches


def trainable_params(optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]


class TrainingStateSnapshot:
    """Weights, optimizer state and RNG streams, copied once and written back after each probe.

    The state is cloned tensor by tensor: `Optimizer.load_state_dict` and `step()` update state
    tensors in place, so a snapshot that shares them would silently move with the model.
    """

    def __init__(self, model, optimizer):
        self.optimizer = optimizer
        self.params = trainable_params(optimizer)
        self.weights = [p.detach().clone() for p in self.params]
        self.state = {
            id(p): {k: v.clone() if torch.is_tensor(v) else v for k, v in optimizer.state[p].items()}
            for p in self.params
            if p in optimizer.state
        }
        self.lrs = [group["lr"] for group in optimizer.param_groups]
        self.rng = (
            torch.get_rng_state(),
            torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            random.getstate(),
            np.random.get_state(),
        )

    def restore(self) -> None:
        with torch.no_grad():
            torch._foreach_copy_([p.data for p in self.params], self.weights)
        for p in self.params:
            p.grad = None
            saved = self.state.get(id(p))
            if saved is None:
                self.optimizer.state.pop(p, None)
                continue
            live = self.optimizer.state[p]
            for key, value in saved.items():
                if torch.is_tensor(value) and torch.is_tensor(live.get(key)):
                    live[key].copy_(value)
                else:
                    live[key] = value.clone() if torch.is_tensor(value) else value
        for group, lr in zip(self.optimizer.param_groups, self.lrs, strict=True):
            group["lr"] = lr
        cpu, cuda, python, numpy_state = self.rng
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        random.setstate(python)
        np.random.set_state(numpy_state)


def require_optimizer_state(optimizer) -> None:
    params = trainable_params(optimizer)
    if not params or not any(optimizer.state.get(p) for p in params):
        raise InfluenceError(
            "the exact score needs the optimizer state (AdamW moments) of a checkpoint, and this one has none; "
            "save checkpoints with their optimizer (the Trainer's default), or use method 'grad_dot', "
            "which needs no optimizer state"
        )


def training_step(
    model,
    optimizer,
    input_ids: torch.Tensor,
    max_grad_norm: float | None,
    autocast_dtype: torch.dtype | None = None,
) -> float:
    """One optimizer step on one block, as the Trainer takes it (mean token loss, clip, step), the
    forward under the run's mixed precision (`autocast_dtype`: bf16 or fp16 autocast, as the
    Trainer's `bf16`/`fp16`; None: float32)."""
    model.train()
    model.zero_grad(set_to_none=True)
    batch = input_ids.reshape(1, -1)
    # the same inputs the Trainer's collator gives (an all-ones mask selects the same attention path)
    with torch.autocast(batch.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        loss = model(input_ids=batch, attention_mask=torch.ones_like(batch), labels=batch).loss
    loss.backward()
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_(trainable_params(optimizer), max_grad_norm)
    optimizer.step()
    model.zero_grad(set_to_none=True)
    return float(loss.detach())


class ExactScorer(OneAtATime):
    """Scores candidates against every task with the live model and optimizer, restoring both."""

    method = "exact"

    def __init__(
        self,
        model,
        optimizer,
        validation: ValidationBatches,
        max_grad_norm: float | None,
        autocast_dtype: torch.dtype | None = None,
    ):
        require_optimizer_state(optimizer)
        self.model, self.optimizer, self.validation = model, optimizer, validation
        self.max_grad_norm, self.autocast_dtype = max_grad_norm, autocast_dtype
        self.snapshot = TrainingStateSnapshot(model, optimizer)
        self.loss_before = validation.losses(model)  # once per checkpoint
        self.seconds = {"step": 0.0, "validation": 0.0, "restore": 0.0}  # where the time goes (benchmarks)

    def score(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"influence", "loss_before", "loss_after"}: float64 vectors over tasks; "candidate_loss":
        the block's own loss before the step."""
        start = time.perf_counter()
        try:
            candidate_loss = training_step(
                self.model, self.optimizer, input_ids, self.max_grad_norm, self.autocast_dtype
            )
            stepped = time.perf_counter()
            after = self.validation.losses(self.model)
            validated = time.perf_counter()
        finally:
            self.snapshot.restore()
        restored = time.perf_counter()
        self.seconds["step"] += stepped - start
        self.seconds["validation"] += validated - stepped
        self.seconds["restore"] += restored - validated
        return {
            "influence": self.loss_before - after,
            "loss_before": self.loss_before,
            "loss_after": after,
            "candidate_loss": torch.tensor(candidate_loss, dtype=torch.float64),
        }
