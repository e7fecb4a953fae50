"""Trainer callbacks chosen by name from a recipe (`callbacks: [log_history]`), as open-r1 does."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from transformers import TrainerCallback

from .errors import ConfigError


class LogHistoryCallback(TrainerCallback):
    """Appends every log (train loss, each task's eval loss, lr) to `<output_dir>/log_history.jsonl`
    as it happens, so a long run can be plotted while it trains and its logs survive a crash."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            with open(Path(args.output_dir) / "log_history.jsonl", "a") as handle:
                handle.write(json.dumps({"step": state.global_step, **logs}) + "\n")


class ScheduleRecorderCallback(TrainerCallback):
    """Writes `schedule.json` into every checkpoint: the LR schedule's full length, which
    `trainer_state.json` does not hold when a run stops before its schedule ends. Continued
    pretraining reads it to keep the same schedule. Always on (added by the trainer)."""

    def __init__(self, schedule_total_steps: int):
        self.schedule_total_steps = schedule_total_steps

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            (folder / "schedule.json").write_text(
                json.dumps(
                    {
                        "schedule_total_steps": self.schedule_total_steps,
                        "lr_scheduler_type": getattr(
                            args.lr_scheduler_type, "value", str(args.lr_scheduler_type)
                        ),
                    }
                )
            )


# name -> class, or "module:Class" for callbacks of later stages (imported only when chosen, so
# that this module never imports the stages built on top of it)
CALLBACKS: dict[str, type[TrainerCallback] | str] = {
    "log_history": LogHistoryCallback,
    "influence": "codesift.influence.callback:InfluenceCallback",
    "push_to_hub_revision": "codesift.hub:PushRevisionCallback",
}


def check_callback_names(names: list[str], kwargs: dict | None = None) -> None:
    unknown = [name for name in [*names, *(kwargs or {})] if name not in CALLBACKS]
    if unknown:
        raise ConfigError(f"unknown callback(s) {unknown}; known: {', '.join(CALLBACKS)}")


def get_callbacks(names: list[str], kwargs: dict | None = None) -> list[TrainerCallback]:
    """Callbacks by name, each built with its entry of `kwargs` (the recipe's `callback_kwargs`)."""
    kwargs = dict(kwargs or {})
    check_callback_names(names, kwargs)
    callbacks = []
    for name in names:
        target = CALLBACKS[name]
        if isinstance(target, str):
            module, cls = target.split(":")
            target = getattr(importlib.import_module(module), cls)
        callbacks.append(target(**kwargs.get(name, {})))
    return callbacks
