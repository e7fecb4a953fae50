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
from .data import load_blocks, load_candidates
from .errors import CodesiftError
from .evaluation import evaluate_model, pass_at_k_metric
from .intervals import format_interval, mean_and_ci
from .plots import plot_cross_task_matrix, plot_results_table
from .provenance import make_record, up_to_date, write_record
from .report_page import write_report_page
from .selection import (
    SCORE_STRATEGIES,
    check_arguments,
    checkpoint_candidate_losses,
    load_documents,
    load_scores_dataset,
    recorded_candidate_losses,
    select,
    write_selection,
)
from .training import run_pretraining
from .utils import process_state, read_json, write_json, write_jsonl

# Imported inside the functions that use them (heavy or optional): torch.

logger = logging.getLogger(__name__)

CHECKPOINT_ROW = "checkpoint (no continued training)"


class ExperimentError(CodesiftError):
    """An experiment input that cannot work; raised before any arm runs."""


# Arm fields that are not selection arguments: how long the arm trains.
ARM_KEYS = ("continue_steps", "equal_compute", "compute_of", "baseline", "seeds")


def arm_name(spec: dict) -> str:
    return spec.get("name") or spec.get("strategy")


def arm_seeds(args, spec: dict) -> list[int]:
    """The seeds an arm runs at: its own `seeds` (more where a claim rests on it, fewer where a cell
    costs an hour), else the experiment's."""
    return [int(seed) for seed in spec.get("seeds", args.seeds)]


def experiment_seeds(args) -> list[int]:
    """Every seed some arm runs at, in first-seen order."""
    return list(dict.fromkeys([*args.seeds, *(s for spec in args.strategies for s in arm_seeds(args, spec))]))


def arm_arguments(args, spec: dict, seed: int, output_dir) -> SelectionArguments:
    """The SelectionArguments of one arm: the experiment's pool and fraction, the arm's own fields."""
    spec = {k: v for k, v in spec.items() if k not in ARM_KEYS}
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


def warmup_seconds_per_step(checkpoint) -> float:
    """The warm-up run's measured seconds per training step: its `train_runtime` less the time its
    periodic evaluations took (each `eval_*_runtime` in the log), over its steps. Evaluations are
    not training: counting them would price a step ~25% too high, and buy too few steps."""
    state_file = Path(checkpoint) / "trainer_state.json"
    results = Path(checkpoint).parent / "all_results.json"
    if not results.is_file() or not state_file.is_file():
        raise ExperimentError(f"equal_compute needs the warm-up's measured time: {results} not found")
    state = read_json(state_file)
    evaluating = sum(
        value for log in state["log_history"] for key, value in log.items()
        if key.startswith("eval_") and key.endswith("_runtime")
    )  # fmt: skip
    steps = max(1, state["global_step"])
    return max(float(read_json(results)["train_runtime"]) - evaluating, 1e-9) / steps


def arm_steps(args, spec: dict) -> int:
    """The arm's optimizer steps: the experiment's, the arm's own, or (equal_compute) the
    experiment's plus the steps that a scoring bill would have bought: the bill of `compute_of`
    (default: the experiment's scores), priced for the whole pool (`seconds_per_candidate` times
    the pool) so that a bill measured on a subset (the exact probe's) counts at full size."""
    if spec.get("equal_compute"):
        scores = spec.get("compute_of", args.scores)
        pool = len(load_candidates(args.candidates, args.candidates_split, args.max_candidates))
        seconds = scoring_seconds(scores, pool)
        if seconds == 0:
            raise ExperimentError(
                f"equal_compute arm {spec.get('name')!r}: {scores}/scoring.json holds no seconds_per_candidate, "
                "so it would get no extra steps; score with scripts/compute_influence.py (or name compute_of)"
            )
        return args.continue_steps + int(round(seconds / warmup_seconds_per_step(args.checkpoint)))
    return int(spec.get("continue_steps", args.continue_steps))


def continue_pretraining(
    args, blocks_dir, output_dir, seed: int, extra_callbacks=(), steps: int | None = None
) -> dict:
    """`steps` (default `args.continue_steps`) more steps from the checkpoint on the selected blocks."""
    steps = steps or args.continue_steps
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
        max_steps=steps,
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
        steps
        * training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps
        * world
        * seq_len_of(blocks_dir)
    )
    metrics["train_seconds"] = time.perf_counter() - start
    return metrics


def seq_len_of(blocks_dir) -> int:

    return len(load_blocks(str(blocks_dir))[0]["input_ids"])


def evaluation_arguments(args, model_dir, output_dir) -> EvaluationArguments:
    return dataclasses.replace(
        EvaluationArguments(**args.evaluation), model_name_or_path=str(model_dir), output_dir=str(output_dir)
    )


def scoring_seconds(scores_dir, pool: int | None = None) -> float:
    """Seconds spent scoring (0 when the scores carry no timing): stage 03's oracle, the influence
    callback's, or stage 05's whole bill (oracle labels + training + predicting, spread over the
    pool); for `pool` candidates when given, else for the candidates that were scored."""
    info = Path(scores_dir) / "scoring.json"
    if not info.is_file():
        return 0.0
    meta = read_json(info)
    return float(meta.get("seconds_per_candidate", 0.0)) * int(
        pool if pool is not None else meta.get("candidates", 0)
    )


def check_experiment(args) -> None:
    if not (Path(args.checkpoint) / "trainer_state.json").is_file():
        raise ExperimentError(f"warm-up checkpoint not found at {args.checkpoint}: run stage 02 first")
    names = [spec.get("name") or spec.get("strategy") for spec in args.strategies]
    if len(set(names)) != len(names):
        raise ExperimentError(f"arm names must be unique; got {names}")
    if args.continue_steps < 1:
        raise ExperimentError("continue_steps must be at least 1")

    for spec in args.strategies:
        seeds = spec.get("seeds", args.seeds)
        if not isinstance(seeds, list) or not seeds or not all(isinstance(x, int) for x in seeds):
            raise ExperimentError(
                f"arm {arm_name(spec)!r}: seeds must be a non-empty list of integers, got {seeds!r}"
            )
        check_arguments(arm_arguments(args, spec, 0, "unused"))


def cell_record(args, spec: dict | None, seed: int | None) -> dict:
    """What one cell is made from: the checkpoint, scores, pool and recipe files, and the arguments
    that shape the arm (its spec, the seed, the fraction, the steps, the evaluation). `spec` None is
    the checkpoint's own row, which trains nothing."""
    arguments = {"evaluation": args.evaluation, "seed": seed}
    inputs = {"checkpoint": args.checkpoint}
    if spec is not None:
        arguments |= {
            # baseline only labels the table; seeds says which cells exist, not what one is made of
            "spec": {k: v for k, v in spec.items() if k not in ("baseline", "seeds")},
            "fraction": args.fraction,
            "candidates_split": args.candidates_split,
            "max_candidates": args.max_candidates,
            "continue_steps": args.continue_steps,
            "pretrain_overrides": args.pretrain_overrides,
        }
        inputs |= {
            "scores": spec.get("scores", args.scores),  # an arm may select from stage 05's predictions
            "candidates": args.candidates,
            "documents": args.documents,
            "pretrain_recipe": args.pretrain_recipe,
        }
    return make_record(arguments, inputs)


def run_cell(args, spec, seed, cell: Path, candidates, documents, losses, metric, state=None) -> dict | None:
    """One arm at one seed: select, continue pretraining, evaluate; metrics.json marks it done.
    Under a multi-process launch (`state`) the main process selects, writes and evaluates; every
    process trains (DDP) on what it wrote. Returns the metrics on the main process, else None."""
    main = state is None or state.is_main_process
    barrier = state.wait_for_everyone if state is not None else (lambda: None)
    selection_args = arm_arguments(args, spec, seed, cell / "selection")
    if main:
        selection = select(selection_args, candidates, losses)
        write_selection(selection, cell / "selection", candidates, documents)
    barrier()
    steps = arm_steps(args, spec)
    train_metrics = continue_pretraining(
        args, cell / "selection" / "blocks", cell / "model", seed, steps=steps
    )
    if not main:
        barrier()
        return None
    results = evaluate_model(evaluation_arguments(args, cell / "model", cell / "evaluation"), metric=metric)
    (cell / "evaluation").mkdir(parents=True, exist_ok=True)
    write_jsonl(cell / "evaluation" / "samples.jsonl", results.pop("samples"))
    selection_seconds = selection.metadata["selection_seconds"]
    if selection_args.strategy in SCORE_STRATEGIES:
        selection_seconds += scoring_seconds(selection_args.scores)
    elif selection_args.strategy == "perplexity":
        selection_seconds += losses_seconds(cell.parent.parent)
    metrics = {
        "arm": selection.metadata["name"],
        "seed": seed,
        "kept_blocks": selection.metadata["kept_blocks"],
        "tokens_trained": train_metrics["tokens_trained"],
        "continue_steps": steps,
        "train_loss": train_metrics.get("train_loss"),
        "train_seconds": train_metrics["train_seconds"],
        "selection_seconds": selection_seconds,
        **{k: v for k, v in results.items() if k.startswith(("loss/", "pass@"))},
    }
    write_record(cell, cell_record(args, spec, seed))
    write_json(cell / "metrics.json", metrics)  # last: it marks the cell finished
    barrier()
    return metrics


def losses_seconds(output_dir) -> float:
    info = Path(output_dir) / "candidate_losses" / "timing.json"
    return float(read_json(info)["seconds"]) if info.is_file() else 0.0


def candidate_losses_cached(args, candidates, output_dir: Path):
    """The perplexity baseline's signal: recorded by stage 03 while scoring (free), else computed
    once per experiment under the checkpoint (and timed)."""
    recorded = recorded_candidate_losses(
        load_scores_dataset(args.scores), [int(b) for b in candidates["block_id"]]
    )
    if recorded is not None:
        return recorded
    start = time.perf_counter()
    cache = output_dir / "candidate_losses"
    record = make_record({}, {"checkpoint": args.checkpoint})
    if not up_to_date(cache, record, "candidate losses", "losses.parquet"):
        shutil.rmtree(cache, ignore_errors=True)
    cached = (cache / "losses.parquet").is_file()
    losses = checkpoint_candidate_losses(args.checkpoint, candidates, cache / "losses.parquet")
    if not cached:
        write_json(cache / "timing.json", {"seconds": time.perf_counter() - start})
        write_record(cache, record)
    return losses


def run_experiment(args) -> dict | None:
    """Every cell (resuming), the checkpoint's own row, then the table. Returns the table's paths
    (None on the other processes of a multi-process launch, where only the main one writes)."""
    check_experiment(args)
    state = process_state()
    main = state.is_main_process
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    candidates = load_candidates(args.candidates, args.candidates_split, args.max_candidates)
    documents = load_documents(args.documents)
    needs_losses = main and any(spec.get("strategy") == "perplexity" for spec in args.strategies)
    losses = candidate_losses_cached(args, candidates, output_dir) if needs_losses else None
    metric = pass_at_k_metric() if main and EvaluationArguments(**args.evaluation).execution_tasks else None
    row = output_dir / "checkpoint"
    if (
        main
        and args.evaluate_checkpoint
        and not up_to_date(row, cell_record(args, None, None), "checkpoint row", "metrics.json")
    ):
        shutil.rmtree(row, ignore_errors=True)
        results = evaluate_model(evaluation_arguments(args, args.checkpoint, row), metric=metric)
        results.pop("samples")
        write_record(row, cell_record(args, None, None))
        write_json(
            row / "metrics.json",
            {"arm": CHECKPOINT_ROW, "seed": None, "tokens_trained": 0, "selection_seconds": 0.0, **results},
        )
    for seed in experiment_seeds(args):
        for spec in args.strategies:
            if seed not in arm_seeds(args, spec):
                continue
            name = arm_name(spec)
            cell = output_dir / f"seed-{seed}" / name
            done = up_to_date(cell, cell_record(args, spec, seed), f"arm {name}, seed {seed}", "metrics.json")
            state.wait_for_everyone()  # every process has read the cell's state before main changes it
            if done:
                continue
            if main:
                shutil.rmtree(
                    cell, ignore_errors=True
                )  # a cell stopped halfway, or made otherwise, starts over
                logger.info("arm %s, seed %d", name, seed)
            state.wait_for_everyone()
            run_cell(args, spec, seed, cell, candidates, documents, losses, metric, state)
    paths = write_results_table(args, output_dir) if main else None
    state.wait_for_everyone()
    return paths


# ----------------------------------------------------------------------------------------------
# The results table
# ----------------------------------------------------------------------------------------------


def collect_cells(output_dir, seeds=None) -> list[dict]:
    """Every finished cell's metrics (and the checkpoint row), optionally only some seeds: a set
    for every arm, or {arm: seeds} (each arm's own; arms not named are left out)."""
    output_dir = Path(output_dir)
    rows = [read_json(p) for p in sorted(output_dir.glob("seed-*/*/metrics.json"))]
    if isinstance(seeds, dict):
        rows = [r for r in rows if r["seed"] in seeds.get(r["arm"], ())]
    elif seeds is not None:
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


def summarise(rows: list[dict], arms: list[str], tasks: list[str], baselines: dict | None = None) -> dict:
    """{arm: {key: (mean, ci)}} plus seeds, tokens and selection time, and the paired difference
    per seed for the report losses from the arm's baseline (`random`, or the one its spec names:
    the 5% arms are compared with a random 5%)."""
    keys = [key for key, _ in table_columns(tasks)] + ["tokens_trained", "selection_seconds"]
    summary = {}
    by_arm = {arm: [r for r in rows if r["arm"] == arm] for arm in arms}
    for arm, cells in by_arm.items():
        baseline = (baselines or {}).get(arm, "random")
        random_by_seed = {r["seed"]: r for r in rows if r["arm"] == baseline}
        if not cells:
            continue
        entry = {key: mean_and_ci([c.get(key) for c in cells if c.get(key) is not None]) for key in keys}
        entry["seeds"] = sorted(c["seed"] for c in cells if c["seed"] is not None)
        entry["continue_steps"] = max((c.get("continue_steps") or 0) for c in cells)
        for task in tasks:
            key = f"loss/{task}/report"
            diffs = [c[key] - random_by_seed[c["seed"]][key] for c in cells if c["seed"] in random_by_seed]
            entry[f"vs_random/{key}"] = mean_and_ci(diffs) if arm != baseline and diffs else (None, None)
        entry["baseline"] = baseline
        summary[arm] = entry
    return summary


def machine_description() -> str:
    import torch

    device = f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} CPU cores ({platform.machine()}, {platform.system()}), {device}, torch {torch.__version__}"


def seeds_sentence(counts: list[int]) -> str:
    """How many seeds the intervals rest on: one count, or each arm's own (the seeds column)."""
    if counts == [1]:
        return "- One seed: single values, no interval (`make table` runs more)"
    if len(counts) == 1:
        return f"- Mean ± 95% CI (t) over {counts[0]} seeds"
    return (
        f"- Mean ± 95% CI (t) over each arm's seeds ({counts[0]} to {counts[-1]}: the seeds column; "
        "an arm with one seed has no interval); differences pair an arm with its baseline seed by seed"
    )


def results_markdown(summary: dict, tasks: list[str], args, n_seeds: list[int]) -> str:
    columns = table_columns(tasks)
    header = ["arm", *[title for _, title in columns], *[f"{t} report loss - random" for t in tasks]]
    header += ["tokens trained", "selection time (s)", "seeds"]
    lines = [
        f"# Results: selection at equal tokens ({args.fraction:.0%} of the pool, {args.continue_steps} steps)",
        "",
        f"- Date: {date.today().isoformat()}; recipe: `{Path(args.pretrain_recipe).parent}`; "
        f"checkpoint: `{args.checkpoint}`; scores: `{args.scores}`",
        f"- Machine: {machine_description()}",
        seeds_sentence(n_seeds)
        + "; losses are mean completion-token NLL (lower is better); `report` problems were never used "
        "to choose data, `select` ones were.",
        "- Selection time counts scoring the whole pool (influence arms) and choosing; for a predicted arm "
        "(stage 05), the oracle labels, training the predictor and predicting the pool; the perplexity arm's "
        "losses come free with the scoring (else their forward pass is counted).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for arm, entry in summary.items():
        cells = [arm, *[format_interval(entry[key]) for key, _ in columns]]
        cells += [format_interval(entry[f"vs_random/loss/{t}/report"]) for t in tasks]
        tokens = entry["tokens_trained"][0]
        cells += [f"{tokens:,.0f}", f"{entry['selection_seconds'][0]:.1f}", str(len(entry["seeds"]) or "-")]
        lines.append("| " + " | ".join(cells) + " |")
    for arm, reason in args.unavailable_arms.items():
        lines.append("| " + " | ".join([arm, f"not run: {reason}", *["-"] * (len(header) - 2)]) + " |")
    others = {
        arm: entry["baseline"]
        for arm, entry in summary.items()
        if entry.get("baseline", "random") != "random"
    }
    if others:
        lines += [
            "",
            "Compared with another baseline than random: "
            + ", ".join(f"{a} with {b}" for a, b in others.items())
            + ".",
        ]
    steps = {arm: entry["continue_steps"] for arm, entry in summary.items() if entry.get("continue_steps")}
    other = {arm: n for arm, n in steps.items() if n != args.continue_steps}
    if other:
        lines += [
            "",
            "Arms trained for other than "
            + f"{args.continue_steps} steps: "
            + ", ".join(f"{a} {n}" for a, n in other.items())
            + ".",
        ]
    return "\n".join(lines) + "\n"


def write_results_table(args, output_dir) -> dict:

    output_dir = Path(output_dir)
    arms = [spec.get("name") or spec.get("strategy") for spec in args.strategies]
    if args.evaluate_checkpoint:
        arms = [CHECKPOINT_ROW, *arms]
    rows = collect_cells(
        output_dir, seeds={arm_name(spec): set(arm_seeds(args, spec)) for spec in args.strategies}
    )
    baselines = {
        spec.get("name") or spec["strategy"]: spec["baseline"]
        for spec in args.strategies
        if "baseline" in spec
    }
    summary = summarise(rows, arms, args.table_tasks, baselines)
    markdown = results_markdown(
        summary, args.table_tasks, args, sorted({len(arm_seeds(args, s)) for s in args.strategies})
    )
    paths = {
        "markdown": output_dir / "results.md",
        "png": output_dir / "results.png",
        "json": output_dir / "results.json",
        "html": output_dir / "results.html",
    }
    paths["markdown"].write_text(markdown)
    write_json(paths["json"], {"arguments": dataclasses.asdict(args), "summary": summary, "cells": rows})
    plot_results_table(summary, args.table_tasks, paths["png"])
    page = output_dir / ".results_page.md"  # the page: the figure above the table
    heading, _, rest = markdown.partition("\n")
    page.write_text(f"{heading}\n\n![Did selection beat random at equal tokens?](results.png)\n{rest}")
    write_report_page(page, paths["html"], "codesift results")
    page.unlink()
    targets, tasks, matrix = cross_task_matrix(rows, args.strategies)
    if len(targets) > 1:
        paths["cross_task"] = output_dir / "cross_task.png"
        plot_cross_task_matrix(matrix, targets, tasks, paths["cross_task"])
        write_json(
            output_dir / "cross_task.json",
            {"selected_for": targets, "judged_on": tasks, "matrix": matrix.tolist()},
        )
    return {key: str(value) for key, value in paths.items()}


def cross_task_matrix(rows: list[dict], strategies: list[dict]) -> tuple[list[str], list[str], np.ndarray]:
    """(targets, tasks, M): M[i, j] is the mean over seeds of the report loss on task j of the arm
    that selected for target i alone, minus random's at the same seed (negative: it helped)."""
    random_by_seed = {r["seed"]: r for r in rows if r["arm"] == "random"}
    arms = {
        s["tasks"][0]: s.get("name") or s["strategy"]
        for s in strategies
        if s.get("strategy") in ("top_k", "gumbel_top_k")
        and len(s.get("tasks", [])) == 1
        and not s.get("reverse")
        and "fraction" not in s
    }
    keys = sorted(
        {k for r in random_by_seed.values() for k in r if k.startswith("loss/") and k.endswith("/report")}
    )
    tasks = [k.split("/")[1] for k in keys]
    targets = [t for t in arms if any(r["arm"] == arms[t] for r in rows)]
    matrix = np.full((len(targets), len(tasks)), np.nan)
    for i, target in enumerate(targets):
        for j, key in enumerate(keys):
            diffs = [
                r[key] - random_by_seed[r["seed"]][key]
                for r in rows
                if r["arm"] == arms[target] and r["seed"] in random_by_seed and key in r
            ]
            if diffs:
                matrix[i, j] = float(np.mean(diffs))
    return targets, tasks, matrix


# ----------------------------------------------------------------------------------------------
# Choosing an arm from the results (the best one is what stage 07 publishes)
# ----------------------------------------------------------------------------------------------


def choose_arm(experiment_dir: Path, arm: str, seed: int | None) -> tuple[str, int, Path]:
    """(arm, seed, cell folder): `best` is the influence arm with the lowest mean report loss."""
    experiment_dir = Path(experiment_dir)
    if not (experiment_dir / "results.json").is_file():
        raise ExperimentError(f"experiment results (stage 06) not found at {experiment_dir / 'results.json'}")
    results = read_json(experiment_dir / "results.json")
    arguments = results["arguments"]

    if arm == "best":
        scored = [  # the influence arms proper: not reversed, not the extremes or middle band
            s.get("name") or s["strategy"]
            for s in arguments["strategies"]
            if s.get("strategy") in SCORE_STRATEGIES
            and s.get("strategy") != "middle"
            and not s.get("reverse")
            and "fraction" not in s
        ]
        keys = [f"loss/{t}/report" for t in arguments["table_tasks"]]
        ranked = [
            (sum(results["summary"][a][k][0] for k in keys) / len(keys), a)
            for a in scored
            if a in results["summary"]
        ]
        if not ranked:
            raise ExperimentError(f"no influence arm in {experiment_dir}/results.json to export")
        arm = min(ranked)[1]
    seed = seed if seed is not None else arguments["seeds"][0]
    cell = experiment_dir / f"seed-{seed}" / arm
    if not (cell / "metrics.json").is_file():
        raise ExperimentError(f"arm {arm!r} at seed {seed} has no finished cell under {experiment_dir}")
    return arm, seed, cell
