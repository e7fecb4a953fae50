"""Scoring a candidate pool: from a saved checkpoint or a live Trainer, in resumable shards.

Output: one row per candidate, `block_id, step, method`, `influence_<task>` per task,
`candidate_loss` (the block's own loss under the checkpoint, which a perplexity filter ranks by;
the scorer computes it anyway), and for the exact method `loss_before_<task>` and `loss_after_<task>`.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data import check_blocks, load_candidates, load_eval_datasets, load_scores
from ..plots import plot_correlation_heatmap, plot_fast_vs_exact, plot_score_distributions
from ..provenance import changes, make_record, read_record, up_to_date, write_record
from ..stats import common_blocks, score_tasks, spearman, task_correlations
from ..utils import atomic_directory, process_state, save_to_disk, set_seed, write_json
from .batched import BatchedFirstOrderScorer, ForwardDifferenceScorer
from .exact import ExactScorer
from .fast import FAST_METHODS, FirstOrderScorer
from .validation import InfluenceError, Scorer, ValidationBatches

# Imported inside the functions that use them (heavy or optional): accelerate, datasets, transformers.

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Method:
    """An influence method: how its scorer is built, and which scorer options it refuses."""

    name: str
    description: str
    # (model, optimizer, validation, max_grad_norm, batch_size, top_layers, autocast) -> its scorer
    build: Callable[..., Scorer]
    refuses: Callable[[int, int | None], str | None] = lambda batch_size, top_layers: None


def build_exact(model, optimizer, validation, max_grad_norm, batch_size, top_layers, autocast) -> Scorer:
    return ExactScorer(model, optimizer, validation, max_grad_norm, autocast)


def exact_refuses(batch_size: int, top_layers: int | None) -> str | None:
    if batch_size != 1 or top_layers is not None:
        return "the exact method takes one real step per candidate: batch_size 1, top_layers null"
    return None


def first_order_builder(method: str):
    def build(model, optimizer, validation, max_grad_norm, batch_size, top_layers, autocast) -> Scorer:
        if batch_size > 1:
            return BatchedFirstOrderScorer(
                model, optimizer, validation, max_grad_norm, method, top_layers, batch_size=batch_size
            )
        return FirstOrderScorer(model, optimizer, validation, max_grad_norm, method, top_layers)

    return build


def build_forward(model, optimizer, validation, max_grad_norm, batch_size, top_layers, autocast) -> Scorer:
    return ForwardDifferenceScorer(model, optimizer, validation, max_grad_norm, batch_size)


def forward_refuses(batch_size: int, top_layers: int | None) -> str | None:
    return (
        "adam_precond_forward moves every weight; top_layers does not apply"
        if top_layers is not None
        else None
    )


SCORERS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("exact", "one real optimizer step per candidate, validation losses before and after", build_exact,
               exact_refuses),
        *(Method(name, text, first_order_builder(name)) for name, text in FAST_METHODS.items()),
        Method("adam_precond_forward", "central differences along the Adam direction: no backward pass",
               build_forward, forward_refuses),
    )
}  # fmt: skip
METHODS = tuple(SCORERS)


class WindowedScorer:
    """A fast scorer that sees only the first `window` tokens of each block: the forward and backward
    cost a fraction of the block's, the score is an approximation (fidelity in bench_influence)."""

    def __init__(self, scorer: Scorer, window: int):
        if window < 2:
            raise InfluenceError(f"window must be at least 2 tokens (one to predict), not {window}")
        self.scorer, self.window = scorer, window
        self.model, self.batch_size = scorer.model, scorer.batch_size

    def score(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.scorer.score(input_ids[: self.window])

    def score_batch(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.scorer.score_batch(input_ids[:, : self.window])


def make_scorer(
    method: str,
    model,
    optimizer,
    validation: ValidationBatches,
    max_grad_norm,
    batch_size: int = 1,
    top_layers: int | None = None,
    window: int | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> Scorer:
    """The method's scorer. `autocast_dtype` is the run's mixed precision, in which the exact probe
    takes its step (the fast methods model the step in float32)."""
    if method not in SCORERS:
        raise InfluenceError(f"unknown influence method {method!r}; methods: {', '.join(METHODS)}")
    if method != "grad_dot" and all(group["lr"] == 0 for group in optimizer.param_groups):
        raise InfluenceError(
            "the learning rate of the next step is 0 (the end of the schedule): one step moves nothing and every "
            "score would be 0; score an earlier checkpoint"
        )
    problem = SCORERS[method].refuses(batch_size, top_layers)
    if problem:
        raise InfluenceError(problem)
    if window is not None and method == "exact":
        raise InfluenceError("the exact method steps on the whole block: window null")
    scorer = SCORERS[method].build(
        model, optimizer, validation, max_grad_norm, batch_size, top_layers, autocast_dtype
    )
    return scorer if window is None else WindowedScorer(scorer, window)


def result_row(result: dict, tasks: list[str], block_id: int, step: int, method: str) -> dict:
    """One output row from a scorer's result; stops at a non-finite value, naming the candidate."""
    if not all(math.isfinite(v) for values in result.values() for v in values.reshape(-1).tolist()):
        raise InfluenceError(f"non-finite loss or score for candidate block_id={block_id}: {result}")
    row = {"block_id": int(block_id), "step": int(step), "method": method}
    for key, values in result.items():
        if values.dim() == 0:  # a per-candidate value, not one per task
            row[key] = float(values)
            continue
        row.update({f"{key}_{task}": float(v) for task, v in zip(tasks, values.tolist(), strict=True)})
    return row


def score_rows(
    scorer, tasks: list[str], candidates, step: int, method: str, desc: str = "scoring"
) -> list[dict]:
    """One row per candidate, `scorer.batch_size` candidates at a time where the scorer batches."""
    rows = []
    device = next(scorer.model.parameters()).device
    block_ids, input_ids = candidates["block_id"], candidates["input_ids"]
    with tqdm(total=len(block_ids), desc=desc, unit="cand") as bar:
        for start in range(0, len(block_ids), scorer.batch_size):
            ids = input_ids[start : start + scorer.batch_size]
            if len({len(x) for x in ids}) == 1:
                result = scorer.score_batch(torch.as_tensor(ids, dtype=torch.long, device=device))
                results = [{key: value[i] for key, value in result.items()} for i in range(len(ids))]
            else:  # blocks of unequal length
                results = [scorer.score(torch.as_tensor(x, dtype=torch.long, device=device)) for x in ids]
            for block_id, result in zip(block_ids[start : start + len(ids)], results, strict=True):
                rows.append(result_row(result, tasks, block_id, step, method))
            bar.update(len(ids))
    return rows


def balanced_shard_size(candidates: int, shard_size: int, processes: int, batch_size: int) -> int:
    """The shard size a run uses: at most `shard_size`, small enough that every process gets work
    (a pool of one shard would leave all processes but one idle), and a multiple of the scorer's
    batch, so that every batch holds the same candidates as in one process (the same scores, bit
    for bit, for any number of processes)."""
    size = min(shard_size, math.ceil(candidates / max(1, processes)))
    return max(batch_size, math.ceil(size / batch_size) * batch_size)


def score_pool_in_shards(
    scorer, tasks, candidates, step: int, method: str, shard_dir: Path, shard_size: int, rank=0, world_size=1
) -> None:
    """Score the pool shard by shard into `shard_dir`; a shard is written whole (temp file then
    rename), so a killed run resumes at the first missing shard. Rank r of w takes shards r, r+w, ...
    (`balanced_shard_size` keeps them even)."""
    from datasets import Dataset

    shard_dir.mkdir(parents=True, exist_ok=True)
    n_shards = math.ceil(len(candidates) / shard_size)
    for shard in range(rank, n_shards, world_size):
        path = shard_dir / f"shard-{shard:05d}.parquet"
        if path.is_file():
            continue
        part = candidates.select(range(shard * shard_size, min((shard + 1) * shard_size, len(candidates))))
        rows = score_rows(
            scorer, tasks, part, step, method, desc=f"{method} step {step} shard {shard + 1}/{n_shards}"
        )
        tmp = path.with_suffix(".tmp")
        Dataset.from_list(rows).to_parquet(str(tmp))
        tmp.rename(path)


def collect_shards(shard_dir: Path, candidates):
    """All shards as one Dataset, checked: every candidate exactly once."""
    from datasets import concatenate_datasets, load_dataset

    files = sorted(str(p) for p in shard_dir.glob("shard-*.parquet"))
    scores = concatenate_datasets([load_dataset("parquet", data_files=f, split="train") for f in files])
    expected, got = list(candidates["block_id"]), list(scores["block_id"])
    if sorted(expected) != sorted(got):
        missing = set(expected) - set(got)
        raise InfluenceError(
            f"{shard_dir}: {len(missing)} candidate(s) missing, {len(got) - len(set(got))} scored twice"
        )
    return scores


# ----------------------------------------------------------------------------------------------
# A saved checkpoint -> the Trainer's own model and optimizer
# ----------------------------------------------------------------------------------------------


def run_precision(train_args) -> torch.dtype | None:
    """The autocast dtype the run trained in (the Trainer's `bf16`/`fp16`), None for float32."""
    if getattr(train_args, "bf16", False):
        return torch.bfloat16
    return torch.float16 if getattr(train_args, "fp16", False) else None


def precision_record(model, train_args) -> dict:
    """What the scores were computed in, for scoring.json and the log."""
    step = run_precision(train_args)
    return {
        "weights": str(next(model.parameters()).dtype).removeprefix("torch."),
        "exact_step": f"{str(step).removeprefix('torch.')} autocast, as the run trained"
        if step
        else "float32, as the run trained",
        "validation_losses": "float32",
        "fast_methods": "float32",
    }


def load_checkpoint_for_scoring(checkpoint: str | Path, device="cpu"):
    """(model, optimizer, training args, step) of a Trainer checkpoint.

    The optimizer is built by a Trainer from the run's own TrainingArguments (same class, same
    parameter groups) and filled from `optimizer.pt`; its lr is the one the next step would use.
    """
    from transformers import AutoModelForCausalLM, Trainer

    checkpoint = Path(checkpoint)
    for name in ("trainer_state.json", "training_args.bin"):
        if not (checkpoint / name).is_file():
            raise InfluenceError(f"{checkpoint} is not a Trainer checkpoint (no {name})")
    args = torch.load(checkpoint / "training_args.bin", weights_only=False)
    step = json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]
    model = AutoModelForCausalLM.from_pretrained(str(checkpoint)).to(device)
    args.output_dir = str(checkpoint.parent / ".influence_scratch")  # the Trainer writes nothing here
    args.report_to = []
    args.eval_strategy = "no"  # only the optimizer is wanted from this Trainer
    trainer = Trainer(model=model, args=args)
    optimizer = trainer.create_optimizer()
    state_file = checkpoint / "optimizer.pt"
    if state_file.is_file():
        state = torch.load(state_file, map_location=device, weights_only=False)
        optimizer.load_state_dict(state)
    elif (checkpoint / "optimizer.bin").is_file():  # FSDP with FULL_STATE_DICT: moments keyed by name
        state = torch.load(checkpoint / "optimizer.bin", map_location=device, weights_only=False)
        optimizer.load_state_dict(state_dict_by_index(state, model, optimizer, checkpoint))
    elif any(checkpoint.glob("pytorch_model_fsdp*")) or any(checkpoint.glob("optimizer_*")):
        raise InfluenceError(
            f"{checkpoint} holds a sharded FSDP checkpoint (SHARDED_STATE_DICT), which the scorers cannot read: "
            "train with fsdp_state_dict_type: FULL_STATE_DICT (recipes/accelerate_configs/fsdp.yaml), or "
            "consolidate it with `accelerate merge-weights` for the weights (the moments stay sharded)"
        )
    return model, optimizer, args, step


def state_dict_by_index(state: dict, model, optimizer, checkpoint) -> dict:
    """An optimizer state keyed by parameter name (FSDP's full state dict) as `load_state_dict`
    takes it: keyed by the parameter's index in this optimizer's groups."""
    names = {id(p): name for name, p in model.named_parameters()}
    by_index, groups, index = {}, [], 0
    saved_groups = {tuple(group["params"]): group for group in state["param_groups"]}
    for group in optimizer.param_groups:
        group_names = tuple(names[id(p)] for p in group["params"])
        saved = saved_groups.get(group_names)
        if saved is None:
            raise InfluenceError(f"{checkpoint}/optimizer.bin: no parameter group holds {group_names[:2]}...")
        indices = list(range(index, index + len(group_names)))
        by_index.update(
            {i: state["state"][n] for i, n in zip(indices, group_names, strict=True) if n in state["state"]}
        )
        groups.append({**saved, "params": indices})
        index += len(group_names)
    return {"state": by_index, "param_groups": groups}


# ----------------------------------------------------------------------------------------------
# The stage, from saved checkpoints
# ----------------------------------------------------------------------------------------------


def scores_folder(output_dir, step: int, method: str) -> Path:
    return Path(output_dir) / f"step-{step}" / method


def scoring_record(args, checkpoint, method: str, max_grad_norm) -> dict:
    """What one score set is made from: the checkpoint, the candidates, the validation sets, and
    every argument that changes a score or which candidates are scored."""
    arguments = {
        "method": method,
        "tasks": list(args.tasks),
        "part": args.part,
        "candidates_split": args.candidates_split,
        "max_candidates": args.max_candidates,
        "max_grad_norm": max_grad_norm,
        "batch_size": args.batch_size,
        "top_layers": args.top_layers,
        **({"window": args.window} if args.window is not None else {}),  # older records have none
        "eval_batch_size": args.eval_batch_size,
        "shard_size": args.shard_size,
        "seed": args.seed,
    }
    inputs = {
        "checkpoint": checkpoint,
        "candidates": args.candidates,
        "validation_sets": args.validation_sets,
    }
    return make_record(arguments, inputs)


def scorer_options(args, method: str) -> tuple[int, int | None, int | None]:
    """(batch_size, top_layers, window) for a method: the exact method always takes one real step
    per candidate on the whole block."""
    return (1, None, None) if method == "exact" else (args.batch_size, args.top_layers, args.window)


def dry_run_plan(args) -> str:
    """Stage 03's memory per process for each of the recipe's methods at its batch_size and
    top_layers, from the checkpoint's config (or `dry_run_model_preset`); nothing is loaded or scored."""
    from ..costs import H100_MEMORY_GIB, format_scoring_plan, scoring_memory_plan

    shape = dry_run_shape(args)
    tasks = len(args.tasks) or dry_run_task_count(args.validation_sets)
    plans, lines = {}, []
    for method in args.methods:
        batch_size, top_layers, window = scorer_options(args, method)
        tokens = window or shape.context
        plans[method] = scoring_memory_plan(shape, method, tasks, batch_size, tokens, top_layers)
        fitting = [b for b in range(1, 257) if scoring_memory_plan(shape, method, tasks, b, tokens,
                   top_layers)["total"] <= H100_MEMORY_GIB and (method != "exact" or b == 1)]  # fmt: skip
        lines.append(
            f"{method} (batch_size {batch_size}, top_layers {top_layers}): {plans[method]['total']:.1f} GiB, "
            f"{'fits' if plans[method]['total'] <= H100_MEMORY_GIB else 'does NOT fit'} an {H100_MEMORY_GIB} GiB GPU"
            + (f"; the largest batch_size that fits: {max(fitting)}" if fitting and method != "exact" else "")
            + (" or more" if fitting and max(fitting) == 256 else "")
        )
    header = f"stage 03 memory plan, blocks of {shape.context} tokens (an estimate, codesift.costs; not a measurement):"
    return "\n".join([header, format_scoring_plan(shape, plans, tasks), *lines])


def dry_run_shape(args):
    from ..costs import ModelShape

    config_file = Path(args.checkpoint[0]) / "config.json" if args.checkpoint else None
    if args.dry_run_model_preset is None and config_file is not None and config_file.is_file():
        from transformers import AutoConfig

        return ModelShape.from_config(AutoConfig.from_pretrained(str(config_file.parent)))
    if args.dry_run_model_preset is None or args.dry_run_vocab_size is None:
        raise InfluenceError(
            f"dry run: no checkpoint config at {config_file}; pass --dry_run_model_preset and --dry_run_vocab_size"
        )
    from ..modeling import VocabSpec, build_model_config

    return ModelShape.from_config(
        build_model_config(args.dry_run_model_preset, VocabSpec(args.dry_run_vocab_size))
    )


def dry_run_task_count(validation_sets: str) -> int:
    """Every task of the validation sets when they exist; else the recipes' six, assumed."""
    from ..data import task_names

    found = Path(validation_sets) / "dataset_dict.json"
    return len(task_names(json.loads(found.read_text())["splits"])) if found.is_file() else 6


def run_influence_stage(args) -> dict:
    """Score the candidate pool at every checkpoint with every method; one dataset per (step,
    method) under `output_dir/step-<k>/<method>`. Finished folders are skipped and unfinished ones
    resume from their shards. Returns {(step, method): seconds per candidate}."""
    set_seed(args.seed)
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        raise InfluenceError(f"unknown influence method(s) {unknown}; methods: {', '.join(METHODS)}")
    for checkpoint in args.checkpoint:
        if not Path(checkpoint).is_dir():
            raise InfluenceError(f"checkpoint not found: {checkpoint}")
    state = process_state()
    cpu = not torch.cuda.is_available()
    device = torch.device("cpu") if cpu else state.device  # "cpu:<rank>" is no map_location torch.load takes
    candidates = load_candidates(args.candidates, args.candidates_split, args.max_candidates)
    task_sets = load_eval_datasets(args.validation_sets, args.tasks, args.part)
    timings = {}
    for checkpoint in args.checkpoint:
        model, optimizer, train_args, step = load_checkpoint_for_scoring(checkpoint, device)
        check_blocks(candidates, model.config, args.candidates)
        precision = precision_record(model, train_args)
        logger.info(
            "%s: %s weights as saved; the exact probe steps in %s; validation losses and fast methods in float32",
            checkpoint, precision["weights"], precision["exact_step"],
        )  # fmt: skip
        validation = ValidationBatches(
            task_sets, args.eval_batch_size, model.config.pad_token_id or 0, device
        )
        max_grad_norm = args.max_grad_norm if args.max_grad_norm is not None else train_args.max_grad_norm
        for method in args.methods:
            final = scores_folder(args.output_dir, step, method)
            record = scoring_record(args, checkpoint, method, max_grad_norm)
            if up_to_date(final, record, f"{method} scores at step {step}", "dataset_info.json"):
                continue
            shards = Path(args.output_dir) / ".shards" / f"step-{step}-{method}"
            shard_size = balanced_shard_size(
                len(candidates), args.shard_size, state.num_processes, scorer_options(args, method)[0]
            )
            # the shards' layout follows the number of processes; the scores do not
            shard_record = {**record, "arguments": {**record["arguments"], "shard_size": shard_size}}
            if state.is_main_process:
                if shards.exists() and changes(read_record(shards), shard_record):  # other arguments
                    logger.info(
                        "starting %s over: %s changed",
                        shards,
                        ", ".join(changes(read_record(shards), shard_record)),
                    )
                    shutil.rmtree(shards)
                write_record(shards, shard_record)
            state.wait_for_everyone()
            start = time.perf_counter()
            scorer = make_scorer(
                method, model, optimizer, validation, max_grad_norm, *scorer_options(args, method),
                autocast_dtype=run_precision(train_args),
            )  # fmt: skip
            score_pool_in_shards(
                scorer,
                list(task_sets),
                candidates,
                step,
                method,
                shards,
                shard_size,
                state.process_index,
                state.num_processes,
            )
            state.wait_for_everyone()
            seconds = (time.perf_counter() - start) / len(candidates)
            timings[(step, method)] = seconds
            if state.is_main_process:
                scores = collect_shards(shards, candidates)
                with atomic_directory(final) as tmp:
                    save_to_disk(scores, tmp)
                    write_json(
                        tmp / "scoring.json",
                        {
                            "checkpoint": str(checkpoint),
                            "step": step,
                            "method": method,
                            "tasks": list(task_sets),
                            "part": args.part,
                            "candidates": len(candidates),
                            "max_grad_norm": max_grad_norm,
                            "seconds_per_candidate": seconds,
                            "batch_size": scorer_options(args, method)[0],
                            "top_layers": scorer_options(args, method)[1],
                            "window": scorer_options(args, method)[2],
                            "precision": precision,
                            "processes": state.num_processes,
                            "shard_size": shard_size,
                        },
                    )
                    write_record(tmp, record)
                shutil.rmtree(shards, ignore_errors=True)
            state.wait_for_everyone()
    return timings


def write_influence_plots(output_dir) -> list[Path]:
    """Figures over every score set found under `output_dir`: distributions and task correlations
    per (step, method), correlations across steps, and each fast method against the exact scores."""
    plots = Path(output_dir) / "plots"
    written = []
    found = load_scores(output_dir)
    for (step, method), scores in found.items():
        written.append(plots / f"distribution_step-{step}_{method}.png")
        plot_score_distributions(scores, f"{method} scores at step {step}", written[-1])
        tasks, matrix = task_correlations(scores)
        if len(tasks) > 1:
            written.append(plots / f"tasks_step-{step}_{method}.png")
            plot_correlation_heatmap(matrix, tasks, f"between tasks ({method}, step {step})", written[-1])
    for method in sorted({m for _, m in found}):
        steps = sorted(s for s, m in found if m == method)
        if len(steps) > 1:
            task = score_tasks(found[(steps[0], method)])[0]
            matrix = [
                [
                    spearman(
                        *[
                            x[f"influence_{task}"]
                            for x in common_blocks(found[(a, method)], found[(b, method)])
                        ]
                    )
                    for b in steps
                ]
                for a in steps
            ]
            written.append(plots / f"steps_{method}.png")
            plot_correlation_heatmap(
                matrix, [f"step {s}" for s in steps], f"{task}: across checkpoints ({method})", written[-1]
            )
    for (step, method), scores in found.items():
        if method != "exact" and (step, "exact") in found:
            exact, fast = common_blocks(found[(step, "exact")], scores)
            for task in score_tasks(exact):
                rho = spearman(exact[f"influence_{task}"], fast[f"influence_{task}"])
                written.append(plots / f"fast_vs_exact_step-{step}_{method}_{task}.png")
                plot_fast_vs_exact(
                    exact[f"influence_{task}"], fast[f"influence_{task}"], task, method, rho, written[-1]
                )
    return written
