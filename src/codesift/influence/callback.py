"""`InfluenceCallback`: score the candidate pool at chosen steps of a running Trainer.

It scores with the live model, optimizer and schedule position, then puts everything back: weights,
optimizer state, lr, gradients and the RNG streams (the data order comes from the sampler's own
generator, which it never touches), so the run goes on exactly as it would have without it.
Under DDP the pool is split across ranks and the rows are gathered on the main process.

In a recipe:
    callbacks: [influence]
    callback_kwargs:
      influence: {steps: [300, 600], candidates: outputs/tiny/corpus/blocks, methods: [adam_update]}
(`batch_size`, `top_layers` and `window` as in the stage-03 recipe, for the fast methods.)
"""

from __future__ import annotations

import time
from dataclasses import fields
from pathlib import Path

from transformers import TrainerCallback

from ..data import check_blocks, load_candidates, load_eval_datasets
from ..utils import atomic_directory, save_to_disk, write_json
from .exact import TrainingStateSnapshot
from .scoring import make_scorer, run_precision, score_rows, scores_folder
from .validation import InfluenceError, ValidationBatches

# Imported inside the functions that use them (heavy or optional): datasets, torch.


# The callback scores the live run: its model, optimizer, clipping and step, so these stage-03
# arguments do not apply; and by default it uses a fast method and writes under the run's folder.
NOT_FOR_THE_CALLBACK = (
    "checkpoint",
    "max_grad_norm",
    "shard_size",
    "seed",
    "dry_run",
    "dry_run_model_preset",
    "dry_run_vocab_size",
)
CALLBACK_DEFAULTS = {"methods": ["adam_update"], "output_dir": None}


class InfluenceCallback(TrainerCallback):
    """`steps` (a list) or `every` (an interval) says when; every other option is a stage-03
    argument (`InfluenceArguments`: candidates, tasks, methods, batch_size, ...)."""

    def __init__(
        self, steps: list[int] | None = None, every: int | None = None, enabled: bool = True, **options
    ):
        from ..configs import InfluenceArguments

        if not steps and not every:
            raise InfluenceError("InfluenceCallback needs `steps` (a list) or `every` (an interval)")
        known = {f.name for f in fields(InfluenceArguments)} - set(NOT_FOR_THE_CALLBACK)
        unknown = sorted(set(options) - known)
        if unknown:
            raise InfluenceError(
                f"InfluenceCallback has no option(s) {unknown}; options: steps, every, enabled, {', '.join(sorted(known))}"
            )
        self.args = InfluenceArguments(**{**CALLBACK_DEFAULTS, **options})
        self.steps, self.every, self.enabled = set(steps or []), every, enabled
        self.candidates = self.task_sets = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not self.enabled:
            return  # switched off: costs the run nothing
        # load and check everything before the first step, not halfway through the run
        options = self.args
        self.candidates = load_candidates(
            options.candidates, options.candidates_split, options.max_candidates
        )
        self.task_sets = load_eval_datasets(options.validation_sets, options.tasks, options.part)
        check_blocks(self.candidates, model.config, options.candidates)
        options.output_dir = options.output_dir or str(Path(args.output_dir) / "influence")

    def due(self, step: int) -> bool:
        return step in self.steps or bool(self.every and step % self.every == 0)

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        if not self.enabled or not self.due(state.global_step):
            return
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the optimizer
        snapshot = TrainingStateSnapshot(model, inner)
        was_training = model.training
        try:
            self.score(args, state, model, inner)
        finally:
            snapshot.restore()
            model.train(was_training)

    def score(self, args, state, model, optimizer) -> None:
        import torch.distributed as dist

        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        device = next(model.parameters()).device
        validation = ValidationBatches(
            self.task_sets, self.args.eval_batch_size, model.config.pad_token_id or 0, device
        )
        mine = self.candidates.shard(num_shards=world, index=rank, contiguous=True)
        for method in self.args.methods:
            start = time.perf_counter()
            batched = method != "exact"
            scorer = make_scorer(
                method,
                model,
                optimizer,
                validation,
                args.max_grad_norm,
                self.args.batch_size if batched else 1,
                self.args.top_layers if batched else None,
                self.args.window if batched else None,
                autocast_dtype=run_precision(args),  # the probe steps as the run does
            )
            rows = score_rows(
                scorer,
                list(self.task_sets),
                mine,
                state.global_step,
                method,
                desc=f"influence ({method}) at step {state.global_step}",
            )
            if world > 1:
                gathered = [None] * world
                dist.all_gather_object(gathered, rows)
                rows = [row for part in gathered for row in part]
            if state.is_world_process_zero:
                self.write(rows, state.global_step, method, time.perf_counter() - start)

    def write(self, rows, step, method, seconds) -> None:
        from datasets import Dataset

        with atomic_directory(scores_folder(self.args.output_dir, step, method)) as tmp:
            save_to_disk(Dataset.from_list(rows), tmp)
            write_json(
                tmp / "scoring.json",
                {
                    "step": step,
                    "method": method,
                    "tasks": list(self.task_sets),
                    "part": self.args.part,
                    "candidates": len(rows),
                    "seconds": seconds,
                    # the bill an equal-compute arm reads, in the same field as stage 03's
                    "seconds_per_candidate": seconds / max(1, len(rows)),
                    "source": "InfluenceCallback",
                },
            )
