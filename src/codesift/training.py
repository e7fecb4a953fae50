"""Pretraining with the HF Trainer (stage 02): data, collator, schedule, resume and continuation.

Checkpoints keep the optimizer, scheduler and RNG state (the Trainer's default), because stage 03
takes one exact optimizer step from them. Continued pretraining (`continue_from`) starts from a
checkpoint's weights, AdamW moments and schedule position but trains on another dataset of blocks,
which is how stage 06 compares selected and random data at equal tokens.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import Trainer

from .callbacks import ScheduleRecorderCallback, check_callback_names, get_callbacks
from .data import check_blocks, load_blocks, load_eval_datasets
from .errors import CodesiftError
from .modeling import ASSUMED_PRESETS, build_model, build_model_config, count_parameters
from .plots import plot_training_curves
from .prepare.tokenizer import load_tokenizer
from .provenance import make_record, read_record, write_record
from .utils import set_seed

# transformers' Trainer is imported at the top (PretrainTrainer subclasses it); the model classes
# and the checkpoint helpers inside the functions that use them.

logger = logging.getLogger(__name__)


class PretrainError(CodesiftError):
    """A pretraining input that cannot work; raised before any training starts."""


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


@dataclass
class CausalLMCollator:
    """Pads to the longest row; `labels` default to `input_ids` (blocks) and are -100 on padding."""

    pad_token_id: int

    def __call__(self, features: list[dict]) -> dict:
        width = max(len(f["input_ids"]) for f in features)
        batch = {"input_ids": [], "attention_mask": [], "labels": []}
        for f in features:
            ids = list(f["input_ids"])
            labels = list(f["labels"]) if "labels" in f else list(ids)
            pad = width - len(ids)
            batch["input_ids"].append(ids + [self.pad_token_id] * pad)
            batch["attention_mask"].append([1] * len(ids) + [0] * pad)
            batch["labels"].append(labels + [-100] * pad)
        return {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}


# ----------------------------------------------------------------------------------------------
# Trainer: one with a schedule that may be longer than the run
# ----------------------------------------------------------------------------------------------


class PretrainTrainer(Trainer):
    """A Trainer whose LR schedule spans `schedule_total_steps`, which may exceed `max_steps`:
    a run stopped halfway, or continued from a checkpoint, keeps the schedule of the whole run."""

    def __init__(self, *args, schedule_total_steps: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.schedule_total_steps = schedule_total_steps or self.args.max_steps
        self.add_callback(ScheduleRecorderCallback(self.schedule_total_steps))

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        return super().create_scheduler(max(self.schedule_total_steps, num_training_steps), optimizer)


def read_checkpoint_schedule(checkpoint: Path) -> tuple[int, int]:
    """(global step, schedule length) of a checkpoint."""
    state_file = checkpoint / "trainer_state.json"
    if not state_file.is_file():
        raise PretrainError(
            f"{checkpoint} is not a Trainer checkpoint (no trainer_state.json); "
            "continue_from needs a checkpoint-<step> folder with its optimizer state"
        )
    state = json.loads(state_file.read_text())
    schedule_file = checkpoint / "schedule.json"
    total = json.loads(schedule_file.read_text())["schedule_total_steps"] if schedule_file.is_file() else None
    return state["global_step"], total or state["max_steps"]


def last_checkpoint(output_dir: str) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None


# ----------------------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------------------


@dataclass
class RunStart:
    """Where a run starts: fresh, resumed from its own checkpoint, or continued from another's."""

    resume_from: str | None
    start_step: int
    schedule_total_steps: int
    weights_from: str | None


def plan_start(model_args, pretrain_args, training_args) -> RunStart:
    """Decide where training starts, and adjust max_steps for continued runs. Raises on missing
    checkpoints before anything is built."""
    if pretrain_args.continue_from:
        checkpoint = Path(pretrain_args.continue_from)
        if not checkpoint.is_dir():
            raise PretrainError(f"continue_from checkpoint not found: {checkpoint}")
        step, total = read_checkpoint_schedule(checkpoint)
        # max_steps counts the NEW steps; the Trainer counts from the checkpoint's step
        training_args.max_steps = step + training_args.max_steps
        training_args.ignore_data_skip = True  # new data: start it at its first block
        own = last_checkpoint(training_args.output_dir) if pretrain_args.auto_resume else None
        return RunStart(own or str(checkpoint), step, max(total, training_args.max_steps), str(checkpoint))
    if training_args.resume_from_checkpoint:
        checkpoint = Path(training_args.resume_from_checkpoint)
        if not checkpoint.is_dir():
            raise PretrainError(f"resume_from_checkpoint not found: {checkpoint}")
        resume = str(checkpoint)
    else:
        resume = last_checkpoint(training_args.output_dir) if pretrain_args.auto_resume else None
    total = pretrain_args.schedule_total_steps or training_args.max_steps
    step = read_checkpoint_schedule(Path(resume))[0] if resume else 0
    return RunStart(resume, step, total, model_args.model_name_or_path)


def load_model_and_tokenizer(model_args, start: RunStart, seed: int):
    from transformers import AutoModelForCausalLM

    if not Path(model_args.tokenizer_name_or_path).exists() and model_args.tokenizer_name_or_path.startswith(
        ("outputs/", ".", "/")
    ):
        raise PretrainError(
            f"tokenizer not found at {model_args.tokenizer_name_or_path}: run scripts/build_corpus.py"
        )
    tokenizer = load_tokenizer(model_args.tokenizer_name_or_path)
    kwargs = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    if start.weights_from:
        model = AutoModelForCausalLM.from_pretrained(start.weights_from, **kwargs)
        if model.config.vocab_size < len(tokenizer):
            raise PretrainError(
                f"{start.weights_from} has a vocabulary of {model.config.vocab_size}, the tokenizer {len(tokenizer)}"
            )
    else:
        config = build_model_config(model_args.model_preset, tokenizer, model_args.model_overrides)
        if model_args.attn_implementation:
            config._attn_implementation = model_args.attn_implementation
        model = build_model(config, seed)
    return model, tokenizer


def build_trainer(model_args, pretrain_args, training_args, start: RunStart, extra_callbacks=()):
    """Data, model and Trainer for a run; every input is checked before the Trainer exists."""
    blocks = load_blocks(pretrain_args.blocks, pretrain_args.blocks_split, pretrain_args.blocks_streaming)
    eval_datasets = load_eval_datasets(
        pretrain_args.validation_sets, pretrain_args.eval_tasks, pretrain_args.eval_part
    )
    callbacks = get_callbacks(pretrain_args.callbacks, pretrain_args.callback_kwargs) + list(extra_callbacks)
    model, tokenizer = load_model_and_tokenizer(model_args, start, training_args.seed)
    check_blocks(blocks, model.config, pretrain_args.blocks)
    if eval_datasets:
        longest = max(max(len(ids) for ids in ds["input_ids"]) for ds in eval_datasets.values())
        if longest > model.config.max_position_embeddings:
            raise PretrainError(
                f"validation sets hold {longest}-token problems; the model's context is "
                f"{model.config.max_position_embeddings} (tokenize them with this seq_len)"
            )
    training_args.remove_unused_columns = True  # block_id, doc_ids and task_id stay out of forward()
    # no metric reads logits, and gathering them (vocab x tokens per problem) made eval 10x slower
    training_args.prediction_loss_only = True
    return PretrainTrainer(
        model=model,
        args=training_args,
        train_dataset=blocks,
        eval_dataset=eval_datasets or None,
        data_collator=CausalLMCollator(tokenizer.pad_token_id),
        processing_class=tokenizer,
        callbacks=callbacks,
        schedule_total_steps=start.schedule_total_steps,
    )


def dry_run_plan(model_args, pretrain_args, training_args, gpu_counts=(1, 8, 64)) -> str:
    """The run's parameters, memory per GPU and tokens per step on 1, 8 and 64 GPUs (FSDP-sharded
    above one), from the recipe alone: the model is sized on the meta device, nothing is trained."""
    from .costs import ModelShape, format_plan, memory_plan
    from .modeling import VocabSpec, count_parameters

    try:
        tokenizer = load_tokenizer(model_args.tokenizer_name_or_path)
    except (OSError, ValueError) as error:
        if pretrain_args.dry_run_vocab_size is None:
            raise PretrainError(
                f"dry run: tokenizer {model_args.tokenizer_name_or_path} cannot be loaded ({type(error).__name__}); "
                "pass --dry_run_vocab_size N to size the vocabulary without it"
            ) from error
        tokenizer = VocabSpec(pretrain_args.dry_run_vocab_size)
    config = build_model_config(model_args.model_preset, tokenizer, model_args.model_overrides)
    shape = ModelShape.from_config(config)
    counted = count_parameters(config)
    optimizer = "adamw_8bit" if "8bit" in str(training_args.optim) else "adamw"
    plans = {
        n: memory_plan(
            shape,
            n,
            training_args.per_device_train_batch_size,
            config.max_position_embeddings,
            training_args.gradient_accumulation_steps,
            sharded=n > 1,
            optimizer=optimizer,
            activation_checkpointing=bool(
                training_args.activation_checkpointing or training_args.gradient_checkpointing
            ),
        )
        for n in gpu_counts
    }
    steps = training_args.max_steps
    tokens = {n: plans[n]["tokens_per_step"] * steps for n in gpu_counts}
    return "\n".join(
        [
            format_plan(shape, plans),
            f"parameters counted on the meta device: {counted:,} (the plan's count: {shape.params:,})",
            f"optimizer {getattr(training_args.optim, 'value', training_args.optim)}; bf16 mixed precision assumed; one GPU unsharded, more FSDP full shard",
            f"{steps:,} steps: " + ", ".join(f"{tokens[n] / 1e9:.1f}B tokens on {n} GPU" for n in gpu_counts),
        ]
    )


# What makes a run's result: a rerun that resumes or reuses a run must have the same of these.
RUN_TRAINING_FIELDS = (
    "seed", "data_seed", "learning_rate", "per_device_train_batch_size",
    "gradient_accumulation_steps", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon",
    "max_grad_norm", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps", "warmup_ratio",
    "optim", "bf16", "fp16",
)  # fmt: skip
RUN_PRETRAIN_FIELDS = ("blocks", "blocks_split", "continue_from")


def run_record(model_args, pretrain_args, training_args) -> dict:
    """The arguments and input stamps of a pretraining run (its provenance.json), taken before a
    continued run adds the checkpoint's step to max_steps."""
    arguments = {
        "model": vars(model_args),
        "pretrain": {name: getattr(pretrain_args, name) for name in RUN_PRETRAIN_FIELDS},
        # the schedule's length, not max_steps: a run stopped early (schedule_total_steps) and
        # resumed to its end is one run
        "schedule": {"length": pretrain_args.schedule_total_steps or training_args.max_steps},
        "training": {
            name: getattr(training_args, name) for name in RUN_TRAINING_FIELDS if hasattr(training_args, name)
        },
    }
    local = {name: path for name, path in (("blocks", pretrain_args.blocks),
             ("tokenizer", model_args.tokenizer_name_or_path)) if path and Path(path).exists()}  # fmt: skip
    return make_record(arguments, local)


def check_run_record(output_dir: str, record: dict, start_over: bool) -> bool:
    """Whether the run in `output_dir` may be resumed: yes when it was made from `record`. A run
    made otherwise is an error naming what changed, or, with `start_over`, its checkpoints are
    removed (False: start fresh). A run from before records were kept is resumed with a warning."""
    saved = read_record(output_dir)
    if saved is None:
        logger.warning(
            "%s holds checkpoints but no record of their arguments; resuming them as they are", output_dir
        )
        return True
    changed = changed_arguments(saved, record)
    if not changed:
        return True
    if not start_over:
        raise PretrainError(
            f"{output_dir} holds a run made with other {', '.join(changed)}; resuming it would mix two runs. "
            f"Use another output_dir, or --start_over true to remove its checkpoints and train anew"
        )
    logger.info("starting over in %s: %s changed", output_dir, ", ".join(changed))
    for checkpoint in Path(output_dir).glob("checkpoint-*"):
        shutil.rmtree(checkpoint)
    return False


def changed_arguments(saved: dict, record: dict) -> list[str]:
    """The argument names (and, marked so, the inputs) that differ between two run records."""
    names = []
    for part in ("model", "pretrain", "training", "schedule"):
        old, new = saved["arguments"].get(part, {}), record["arguments"].get(part, {})
        names += [key if part != "schedule" else "max_steps (schedule length)"
                  for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]  # fmt: skip
    old, new = saved.get("inputs", {}), record.get("inputs", {})
    return names + [f"{key} contents" for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def warn_if_fsdp_fell_back(trainer) -> None:
    """A launch with the FSDP config on CPU processes: accelerate shards only on accelerators and
    runs DDP instead (each process holds the whole model); say so rather than let it pass as FSDP."""
    import os

    distributed = str(trainer.accelerator.distributed_type)
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" and "FSDP" not in distributed:
        logger.warning(
            "the FSDP config asks for FSDP, but accelerate shards only on GPUs: this run trains with %s "
            "(every process holds the whole model and optimizer)",
            distributed.rsplit(".", 1)[-1],
        )


def run_pretraining(model_args, pretrain_args, training_args, extra_callbacks=()) -> dict:
    """The whole stage: plan the start, build, train, save the final model, state and card.
    Returns the final metrics (train and each task's eval loss)."""
    set_seed(training_args.seed)
    check_callback_names(pretrain_args.callbacks, pretrain_args.callback_kwargs)  # even for a finished run
    record = run_record(model_args, pretrain_args, training_args)
    own = last_checkpoint(training_args.output_dir) if pretrain_args.auto_resume else None
    if own and not training_args.resume_from_checkpoint:
        pretrain_args.auto_resume = check_run_record(
            training_args.output_dir, record, pretrain_args.start_over
        )
    start = plan_start(model_args, pretrain_args, training_args)
    if start.resume_from and read_checkpoint_schedule(Path(start.resume_from))[0] >= training_args.max_steps:
        return finished_run_metrics(training_args.output_dir, start.resume_from)
    trainer = build_trainer(model_args, pretrain_args, training_args, start, extra_callbacks)
    if trainer.is_world_process_zero():  # after every input was checked: a refused start writes nothing
        write_record(training_args.output_dir, record)
    logger.info(
        "training %s parameters on %d process(es) from step %d to %d (schedule of %d steps)%s",
        f"{sum(p.numel() for p in trainer.model.parameters()):,}",
        training_args.world_size,
        start.start_step,
        training_args.max_steps,
        start.schedule_total_steps,
        f", resuming {start.resume_from}" if start.resume_from else "",
    )
    warn_if_fsdp_fell_back(trainer)
    result = trainer.train(resume_from_checkpoint=start.resume_from)
    metrics = dict(result.metrics)
    if trainer.eval_dataset is not None:
        metrics.update(final_eval_metrics(trainer))
    trainer.save_model()
    trainer.save_state()
    trainer.log_metrics("all", metrics)
    trainer.save_metrics("all", metrics)
    if trainer.is_world_process_zero():
        plot_training_curves(
            trainer.state.log_history, Path(training_args.output_dir) / "plots" / "training_curves.png"
        )

        write_model_card(
            training_args.output_dir,
            model_args,
            pretrain_args,
            training_args,
            start,
            metrics,
            ASSUMED_PRESETS,
        )
    return metrics


def finished_run_metrics(output_dir: str, checkpoint: str) -> dict:
    """A rerun of a finished run changes nothing: it says so and returns the saved metrics.
    (Resuming from the last checkpoint would otherwise take one more optimizer step.)"""
    logger.info(
        "run already finished: %s is at max_steps; nothing to train "
        "(--auto_resume false or another output_dir starts a new run)",
        checkpoint,
    )
    saved = Path(output_dir) / "all_results.json"
    return json.loads(saved.read_text()) if saved.is_file() else {}


def final_eval_metrics(trainer) -> dict:
    """Each task's eval metrics at the last step: taken from the log when the run just evaluated
    there (an eval of every task costs seconds even at tiny scale), else evaluated now."""
    step = trainer.state.global_step
    logged = {k: v for log in trainer.state.log_history if log.get("step") == step for k, v in log.items()}
    wanted = [f"eval_{name}_loss" for name in trainer.eval_dataset]
    if all(key in logged for key in wanted):
        return {k: v for k, v in logged.items() if k.startswith("eval_")}
    return trainer.evaluate()


def write_model_card(output_dir, model_args, pretrain_args, training_args, start, metrics, assumed) -> None:
    """A short README.md beside the final model: what it is, what it saw, what is assumed."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(output_dir)
    n_params = count_parameters(config)
    losses = {k: round(v, 4) for k, v in metrics.items() if k.startswith("eval_") and k.endswith("_loss")}
    notes = (
        [assumed[model_args.model_preset]]
        if model_args.model_preset in assumed and not start.weights_from
        else []
    )
    lines = [
        "---",
        "library_name: transformers",
        "tags: [codesift, code, llama, pretraining]",
        "---",
        f"# {Path(output_dir).name}",
        "",
        f"A Llama-style code model ({n_params:,} parameters, {config.num_hidden_layers} layers, hidden "
        f"{config.hidden_size}, context {config.max_position_embeddings}, vocabulary {config.vocab_size}) "
        f"trained with codesift stage 02 (`scripts/pretrain.py`).",
        "",
        f"- Start: {'continued from ' + start.weights_from if pretrain_args.continue_from else (start.weights_from or 'fresh init, preset ' + model_args.model_preset)}",
        f"- Data: blocks from `{pretrain_args.blocks}` (split {pretrain_args.blocks_split})",
        f"- Steps: {start.start_step} to {training_args.max_steps} of a {start.schedule_total_steps}-step "
        f"{getattr(training_args.lr_scheduler_type, 'value', training_args.lr_scheduler_type)} schedule; lr {training_args.learning_rate}, batch "
        f"{training_args.per_device_train_batch_size} x {training_args.gradient_accumulation_steps} per device",
        f"- Final validation losses (completion tokens only): {losses or 'not evaluated'}",
        *(f"- Assumed: {note}" for note in notes),
    ]
    (Path(output_dir) / "README.md").write_text("\n".join(lines) + "\n")
