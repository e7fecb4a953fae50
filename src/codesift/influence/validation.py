"""Each task's validation loss (and its gradient), computed over batched forward passes.

A task's loss is the mean negative log-likelihood over all of its completion tokens (token-weighted
across problems), the quantity one optimizer step on a candidate is scored against. The forward
pass runs the decoder once per padded batch and applies the output layer only at completion
positions, which is most of the saving at small scale (the vocabulary projection dominates).
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

from ..errors import CodesiftError


class InfluenceError(CodesiftError):
    """An influence input that cannot be scored; raised before anything is written."""


class ValidationBatches:
    """All problems of all tasks, sorted by task then length into padded batches on the device."""

    def __init__(self, task_datasets: dict, batch_size: int, pad_token_id: int, device="cpu"):
        if not task_datasets:
            raise InfluenceError("no validation task to score against")
        self.tasks = list(task_datasets)
        rows = []
        for index, (task, dataset) in enumerate(task_datasets.items()):
            tokens = sum(sum(label != -100 for label in labels[1:]) for labels in dataset["labels"])
            if tokens == 0:
                raise InfluenceError(f"task {task!r} has no completion tokens left after truncation")
            rows += [
                (index, ids, labels)
                for ids, labels in zip(dataset["input_ids"], dataset["labels"], strict=True)
            ]
        # batches never mix tasks, so one task's gradient needs only its own batches
        rows.sort(key=lambda row: (row[0], len(row[1])))
        chunks = [
            [row for row in rows if row[0] == index][start : start + batch_size]
            for index in range(len(self.tasks))
            for start in range(0, sum(row[0] == index for row in rows), batch_size)
        ]
        self.batches = []
        for chunk in chunks:
            width = len(chunk[-1][1])
            ids = torch.full((len(chunk), width), pad_token_id, dtype=torch.long)
            labels = torch.full((len(chunk), width), -100, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, (_, row_ids, row_labels) in enumerate(chunk):
                ids[i, : len(row_ids)] = torch.as_tensor(row_ids)
                labels[i, : len(row_labels)] = torch.as_tensor(row_labels)
                mask[i, : len(row_ids)] = 1
            task_index = torch.tensor([row[0] for row in chunk])
            self.batches.append(tuple(t.to(device) for t in (ids, mask, labels, task_index)))
        counts = torch.zeros(len(self.tasks), dtype=torch.float64)
        for _, _, labels, task_index in self.batches:
            counts.index_add_(0, task_index.cpu(), (labels[:, 1:] != -100).sum(1).cpu().double())
        self.token_counts = counts
        self.n_tokens = int(sum(int(b[1].sum()) for b in self.batches))

    def _batch_nll_sums(self, model, batch) -> torch.Tensor:
        """Summed NLL of each task's completion tokens in one batch (a vector over tasks)."""
        ids, mask, labels, task_index = batch
        hidden = model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        targets = labels[:, 1:]
        scored = targets != -100
        logits = model.get_output_embeddings()(hidden[:, :-1][scored])
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()  # the loss in at least float32, as the model's own loss is
        nll = F.cross_entropy(logits, targets[scored], reduction="none")
        rows = scored.nonzero()[:, 0]
        # summed in float64: a float32 sum of thousands of token losses near 5 drifts by ~1e-5,
        # more than the differences between candidates that the exact score must resolve
        sums = torch.zeros(len(self.tasks), dtype=torch.float64, device=nll.device)
        return sums.index_add(0, task_index[rows], nll.double())

    def losses(self, model) -> torch.Tensor:
        """Each task's mean completion-token loss (float64 vector, in `self.tasks` order)."""
        was_training = model.training
        model.eval()
        total = torch.zeros(len(self.tasks), dtype=torch.float64)
        with torch.no_grad():
            for batch in self.batches:
                total += self._batch_nll_sums(model, batch).double().cpu()
        model.train(was_training)
        return total / self.token_counts

    def gradients(self, model, params: list[torch.Tensor]) -> torch.Tensor:
        """d(task loss)/d(params) for every task, flattened: a (tasks x parameters) matrix."""
        was_training = model.training
        model.eval()
        # filled in place, one parameter at a time: stacking flattened rows would hold the matrix
        # twice (at 1B, six tasks: 28 GB more at the peak)
        matrix = torch.empty(
            len(self.tasks), sum(p.numel() for p in params), dtype=params[0].dtype, device=params[0].device
        )
        for task in range(len(self.tasks)):
            model.zero_grad(set_to_none=True)
            for batch in self.batches:
                if bool((batch[3] == task).any()):
                    (self._batch_nll_sums(model, batch)[task] / self.token_counts[task]).backward()
            offset = 0
            for p in params:
                row = matrix[task, offset : offset + p.numel()]
                row.copy_(p.grad.reshape(-1)) if p.grad is not None else row.zero_()
                offset += p.numel()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        return matrix


def flatten_grads(params: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


class Scorer(Protocol):
    """What scores candidates: `score` takes one block (1-D ids), `score_batch` a batch of blocks of
    one length (2-D); both give {"influence": per task, "candidate_loss", ...}, float64 tensors,
    a leading batch dimension for `score_batch`. `batch_size` is how many `score_batch` takes at once."""

    model: torch.nn.Module
    batch_size: int

    def score(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def score_batch(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]: ...


class OneAtATime:
    """`score_batch` for a scorer that takes one candidate at a time: each row alone, stacked."""

    batch_size = 1

    def score_batch(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        results = [self.score(row) for row in input_ids]
        return {key: torch.stack([result[key] for result in results]) for key in results[0]}
