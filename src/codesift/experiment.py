"""Stages 04 + 06 as one experiment, the paper's first research question at small scale.

For every seed and every arm (a selection strategy): select a `fraction` of the candidate pool,
continue pretraining from the SAME warm-up checkpoint (weights, AdamW moments, schedule position)
for the SAME number of steps (so the same tokens), evaluate, and write the cell's metrics. The
seed drives the selection noise (Gumbel, random) and the continued run's data order. Finished cells
are skipped, so a stopped run resumes at the first missing cell. The results table (markdown, PNG,
JSON) aggregates the cells: mean and 95% confidence interval over seeds per arm.

Each cell is what these three commands do, run in one process:
    python scripts/filter_data.py --config recipes/tiny/filter.yaml --strategy random --seed 42 ...
    python scripts/pretrain.py --config recipes/tiny/pretrain.yaml --continue_from <checkpoint> \
        --blocks <selection>/blocks --max_steps 50 --seed 42 ...
    python scripts/evaluate_model.py --config recipes/tiny/evaluate.yaml --model_name_or_path <model>
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import shutil
import time
from datetime import date
from pathlib import Path

import numpy as np

from .configs import EvaluationArguments, SelectionArguments, load_configs, stage_arguments
from .utils import read_json, write_json

logger = logging.getLogger(__name__)

CHECKPOINT_ROW = "checkpoint (no continued training)"


class ExperimentError(ValueError):
    """An experiment input that cannot work; raised before any arm runs."""


def arm_arguments(args, spec: dict, seed: int, output_dir) -> SelectionArguments:
    """The SelectionArguments of one arm: the experiment's pool and fraction, the arm's own fields."""
    spec = dict(spec)
    name = spec.pop("name", None) or spec.get("strategy")
    unknown = set(spec) - {f.name for f in dataclasses.fields(SelectionArguments)}
    if unknown:
        raise ExperimentError(f"arm {name!r}: unknown field(s) {sorted(unknown)}")
    defaults = {
        "scores": args.scores,
        "candidates": args.candidates,
        "candidates_split": args.candidates_split,
        "max_candidates": args.max_candidates,
        "documents": args.documents,
        "fraction": args.fraction,
        "perplexity_checkpoint": args.checkpoint,
    }
    return SelectionArguments(
        **{**defaults, **spec, "name": name, "seed": seed, "output_dir": str(output_dir)}
    )


def continue_pretraining(args, blocks_dir, output_dir, seed: int, extra_callbacks=()) -> dict:
    """`args.continue_steps` more steps from the checkpoint on the selected blocks."""
    from .training import run_pretraining

    configs = load_configs(
        stage_arguments("pretrain"),
        args.pretrain_recipe,
        tokenizer_name_or_path=args.checkpoint,
        blocks=str(blocks_dir),
        blocks_split="train",
        blocks_streaming=False,
        validation_sets=None,  # the evaluation that follows measures every task once
        eval_tasks=[],
        continue_from=args.checkpoint,
        auto_resume=False,
        schedule_total_steps=None,
        callbacks=["log_history"],
        callback_kwargs={},
        output_dir=str(output_dir),
        max_steps=args.continue_steps,
        seed=seed,
        data_seed=seed,  # the checkpoint's RNG state is restored on resume; data order follows this
        eval_strategy="no",
        save_strategy="no",
        disable_tqdm=True,
        **args.pretrain_overrides,
    )
    start = time.perf_counter()
    metrics = run_pretraining(*configs, extra_callbacks=extra_callbacks)
    training_args = configs[2]
    world = max(1, training_args.world_size)
    metrics["tokens_trained"] = (
        args.continue_steps
        * training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps
        * world
        * seq_len_of(blocks_dir)
    )
    metrics["train_seconds"] = time.perf_counter() - start
    return metrics


def seq_len_of(blocks_dir) -> int:
    from .training import load_blocks

    return len(load_blocks(str(blocks_dir))[0]["input_ids"])


def evaluation_arguments(args, model_dir, output_dir) -> EvaluationArguments:
    return dataclasses.replace(
        EvaluationArguments(**args.evaluation), model_name_or_path=str(model_dir), output_dir=str(output_dir)
    )


def scoring_seconds(scores_dir) -> float:
    """Seconds stage 03 spent scoring the pool (0 when the scores carry no timing)."""
    info = Path(scores_dir) / "scoring.json"
    if not info.is_file():
        return 0.0
    meta = read_json(info)
    return float(meta.get("seconds_per_candidate", 0.0)) * int(meta.get("candidates", 0))


def check_experiment(args) -> None:
    if not (Path(args.checkpoint) / "trainer_state.json").is_file():
        raise ExperimentError(f"warm-up checkpoint not found at {args.checkpoint}: run stage 02 first")
    names = [spec.get("name") or spec.get("strategy") for spec in args.strategies]
    if len(set(names)) != len(names):
        raise ExperimentError(f"arm names must be unique; got {names}")
    if args.continue_steps < 1:
        raise ExperimentError("continue_steps must be at least 1")
    from .selection import check_arguments

    for spec in args.strategies:
        check_arguments(arm_arguments(args, spec, 0, "unused"))


def run_cell(args, spec, seed, cell: Path, candidates, documents, losses, metric) -> dict:
    """One arm at one seed: select, continue pretraining, evaluate; metrics.json marks it done."""
    from .evaluation import evaluate_model
    from .selection import SCORE_STRATEGIES, select, write_selection
    from .utils import write_jsonl

    selection_args = arm_arguments(args, spec, seed, cell / "selection")
    selection = select(selection_args, candidates, losses)
    write_selection(selection, cell / "selection", candidates, documents)
    train_metrics = continue_pretraining(args, cell / "selection" / "blocks", cell / "model", seed)
    results = evaluate_model(evaluation_arguments(args, cell / "model", cell / "evaluation"), metric=metric)
    (cell / "evaluation").mkdir(parents=True, exist_ok=True)
    write_jsonl(cell / "evaluation" / "samples.jsonl", results.pop("samples"))
    selection_seconds = selection.metadata["selection_seconds"]
    if selection_args.strategy in SCORE_STRATEGIES:
        selection_seconds += scoring_seconds(args.scores)
    elif selection_args.strategy == "perplexity":
        selection_seconds += losses_seconds(cell.parent.parent)
    metrics = {
        "arm": selection.metadata["name"],
        "seed": seed,
        "kept_blocks": selection.metadata["kept_blocks"],
        "tokens_trained": train_metrics["tokens_trained"],
        "train_loss": train_metrics.get("train_loss"),
        "train_seconds": train_metrics["train_seconds"],
        "selection_seconds": selection_seconds,
        **{k: v for k, v in results.items() if k.startswith(("loss/", "pass@"))},
    }
    write_json(cell / "metrics.json", metrics)
    return metrics


def losses_seconds(output_dir) -> float:
    info = Path(output_dir) / "candidate_losses.json"
    return float(read_json(info)["seconds"]) if info.is_file() else 0.0


def candidate_losses_cached(args, candidates, output_dir: Path):
    """The perplexity baseline's signal: recorded by stage 03 while scoring (free), else computed
    once per experiment under the checkpoint (and timed)."""
    from .selection import checkpoint_candidate_losses, load_scores_dataset, recorded_candidate_losses

    recorded = recorded_candidate_losses(
        load_scores_dataset(args.scores), [int(b) for b in candidates["block_id"]]
    )
    if recorded is not None:
        return recorded
    start = time.perf_counter()
    cached = (output_dir / "candidate_losses.parquet").is_file()
    losses = checkpoint_candidate_losses(args.checkpoint, candidates, output_dir / "candidate_losses.parquet")
    if not cached:
        write_json(output_dir / "candidate_losses.json", {"seconds": time.perf_counter() - start})
    return losses


def run_experiment(args) -> dict:
    """Every cell (resuming), the checkpoint's own row, then the table. Returns the table's paths."""
    from .evaluation import evaluate_model, pass_at_k_metric
    from .influence.scoring import load_candidates
    from .selection import load_documents

    check_experiment(args)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    candidates = load_candidates(args.candidates, args.candidates_split, args.max_candidates)
    documents = load_documents(args.documents)
    needs_losses = any(spec.get("strategy") == "perplexity" for spec in args.strategies)
    losses = candidate_losses_cached(args, candidates, output_dir) if needs_losses else None
    metric = pass_at_k_metric() if EvaluationArguments(**args.evaluation).execution_tasks else None
    if args.evaluate_checkpoint and not (output_dir / "checkpoint" / "metrics.json").is_file():
        results = evaluate_model(
            evaluation_arguments(args, args.checkpoint, output_dir / "checkpoint"), metric=metric
        )
        results.pop("samples")
        (output_dir / "checkpoint").mkdir(parents=True, exist_ok=True)
        write_json(
            output_dir / "checkpoint" / "metrics.json",
            {"arm": CHECKPOINT_ROW, "seed": None, "tokens_trained": 0, "selection_seconds": 0.0, **results},
        )
    for seed in args.seeds:
        for spec in args.strategies:
            name = spec.get("name") or spec.get("strategy")
            cell = output_dir / f"seed-{seed}" / name
            if (cell / "metrics.json").is_file():
                continue
            shutil.rmtree(cell, ignore_errors=True)  # a cell stopped halfway starts over
            logger.info("arm %s, seed %d", name, seed)
            run_cell(args, spec, seed, cell, candidates, documents, losses, metric)
    return write_results_table(args, output_dir)


# ----------------------------------------------------------------------------------------------
# The results table
# ----------------------------------------------------------------------------------------------


def collect_cells(output_dir, seeds=None) -> list[dict]:
    """Every finished cell's metrics (and the checkpoint row), optionally only some seeds."""
    output_dir = Path(output_dir)
    rows = [read_json(p) for p in sorted(output_dir.glob("seed-*/*/metrics.json"))]
    if seeds is not None:
        rows = [r for r in rows if r["seed"] in seeds]
    if (output_dir / "checkpoint" / "metrics.json").is_file():
        rows.append(read_json(output_dir / "checkpoint" / "metrics.json"))
    return rows


def table_columns(tasks: list[str]) -> list[tuple[str, str]]:
    """(metric key, column title) of the table, in order."""
    columns = []
    for task in tasks:
        columns += [
            (f"loss/{task}/report", f"{task} report loss"),
            (f"pass@1/{task}/report", f"{task} pass@1"),
        ]
    columns += [(f"loss/{task}/select", f"{task} select loss (chose the data)") for task in tasks]
    return columns


def summarise(rows: list[dict], arms: list[str], tasks: list[str]) -> dict:
    """{arm: {key: (mean, ci)}} plus seeds, tokens and selection time, and the paired difference
    from random per seed for the report losses."""
    from .evaluation import mean_and_ci

    keys = [key for key, _ in table_columns(tasks)] + ["tokens_trained", "selection_seconds"]
    summary = {}
    by_arm = {arm: [r for r in rows if r["arm"] == arm] for arm in arms}
    random_by_seed = {r["seed"]: r for r in by_arm.get("random", [])}
    for arm, cells in by_arm.items():
        if not cells:
            continue
        entry = {key: mean_and_ci([c.get(key) for c in cells if c.get(key) is not None]) for key in keys}
        entry["seeds"] = sorted(c["seed"] for c in cells if c["seed"] is not None)
        for task in tasks:
            key = f"loss/{task}/report"
            diffs = [c[key] - random_by_seed[c["seed"]][key] for c in cells if c["seed"] in random_by_seed]
            entry[f"vs_random/{key}"] = mean_and_ci(diffs) if arm != "random" and diffs else (None, None)
        summary[arm] = entry
    return summary


def machine_description() -> str:
    import torch

    device = f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} CPU cores ({platform.machine()}, {platform.system()}), {device}, torch {torch.__version__}"


def _fmt(mean_ci, digits=3) -> str:
    mean, ci = mean_ci
    if mean is None or (isinstance(mean, float) and np.isnan(mean)):
        return "-"
    if ci is None or np.isnan(ci):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {ci:.{digits}f}"


def results_markdown(summary: dict, tasks: list[str], args, n_seeds: int) -> str:
    columns = table_columns(tasks)
    header = ["arm", *[title for _, title in columns], *[f"{t} report loss - random" for t in tasks]]
    header += ["tokens trained", "selection time (s)", "seeds"]
    lines = [
        f"# Results: selection at equal tokens ({args.fraction:.0%} of the pool, {args.continue_steps} steps)",
        "",
        f"- Date: {date.today().isoformat()}; recipe: `{Path(args.pretrain_recipe).parent}`; "
        f"checkpoint: `{args.checkpoint}`; scores: `{args.scores}`",
        f"- Machine: {machine_description()}",
        f"- Mean ± 95% CI (t) over {n_seeds} seed(s); losses are mean completion-token NLL (lower is "
        "better); `report` problems were never used to choose data, `select` ones were.",
        "- Selection time counts scoring the whole pool (influence arms) and choosing; the perplexity arm's "
        "losses come free with the scoring (else their forward pass is counted).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for arm, entry in summary.items():
        cells = [arm, *[_fmt(entry[key]) for key, _ in columns]]
        cells += [_fmt(entry[f"vs_random/loss/{t}/report"]) for t in tasks]
        tokens = entry["tokens_trained"][0]
        cells += [f"{tokens:,.0f}", f"{entry['selection_seconds'][0]:.1f}", str(len(entry["seeds"]) or "-")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results_table(args, output_dir) -> dict:
    from .plots import plot_results_table

    output_dir = Path(output_dir)
    arms = [spec.get("name") or spec.get("strategy") for spec in args.strategies]
    if args.evaluate_checkpoint:
        arms = [CHECKPOINT_ROW, *arms]
    rows = collect_cells(output_dir, seeds=set(args.seeds) | {None})
    summary = summarise(rows, arms, args.table_tasks)
    markdown = results_markdown(summary, args.table_tasks, args, len(args.seeds))
    paths = {
        "markdown": output_dir / "results.md",
        "png": output_dir / "results.png",
        "json": output_dir / "results.json",
    }
    paths["markdown"].write_text(markdown)
    write_json(paths["json"], {"arguments": dataclasses.asdict(args), "summary": summary, "cells": rows})
    plot_results_table(summary, args.table_tasks, paths["png"])
    return {key: str(value) for key, value in paths.items()}
