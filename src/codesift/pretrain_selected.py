"""Stage 06, the paper's design: pretrain fresh models ON selected data.

The continued-pretraining table (`codesift.experiment`) asks whether a few steps on selected blocks
beat the same steps on random ones. The paper trains a model from scratch on an influence-filtered
corpus, and MATES selects during pretraining, stage by stage. Both run here at small scale, from
scratch, at equal steps and tokens, over seeds, with the report halves' losses logged over training:

- `full`: the whole corpus, unfiltered (shuffled by the seed);
- `random`: a random `keep_fraction` of the corpus;
- `filtered`: the top `keep_fraction` by a reference predictor's scores (stage 05's, fitted on oracle
  labels at the warm-up's checkpoint), kept with `datasets.filter`;
- `mates`: MATES's loop. Stage 0 trains on random blocks; at each stage boundary the oracle (stage
  03's scorer) labels `label_sample` blocks at the current checkpoint, a model-free predictor is
  refitted on them, the corpus is predicted, and the next stage's blocks are drawn by Gumbel top-k
  (blocks already trained on are left out); training goes on from the checkpoint (weights, AdamW
  moments and the learning-rate schedule carried over). Its selection costs (labels, fit, predict)
  are recorded beside the training seconds.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from .configs import InfluenceArguments, PredictorArguments, load_configs, stage_arguments
from .data import load_blocks, load_scores_dataset
from .errors import CodesiftError
from .influence.scoring import run_influence_stage, scores_folder
from .intervals import format_interval, mean_and_ci
from .plots import plot_loss_over_training
from .predictor.labels import Standardiser
from .predictor.models import load_saved_predictor, make_predictor
from .predictor.stage import predict_dataset
from .provenance import make_record, up_to_date, write_record
from .selection import gumbel_top_k, random_k, top_k, zscore
from .training import run_pretraining
from .utils import read_json, save_to_disk, write_json

logger = logging.getLogger(__name__)

ARMS = ("full", "random", "filtered", "mates")


class PretrainSelectedError(CodesiftError):
    pass


def check_arguments(args) -> None:
    unknown = sorted(set(args.arms) - set(ARMS))
    if unknown or not args.arms:
        raise PretrainSelectedError(f"arms must be some of {', '.join(ARMS)}; got {args.arms}")
    if not 0 < args.keep_fraction <= 1:
        raise PretrainSelectedError(f"keep_fraction must be in (0, 1], got {args.keep_fraction}")
    if "mates" in args.arms and (args.stage_steps < 1 or args.steps % args.stage_steps):
        raise PretrainSelectedError(
            f"steps ({args.steps}) must be a multiple of stage_steps ({args.stage_steps})"
        )
    if "filtered" in args.arms and not Path(args.reference_predictor).is_dir():
        raise PretrainSelectedError(
            f"the filtered arm needs a stage-05 predictor at {args.reference_predictor}: run scripts/train_predictor.py"
        )


def run_pretrain_selected(args) -> dict:
    """Every arm at every seed (finished cells are kept), then the results table and figure."""
    check_arguments(args)
    corpus = load_corpus(args)
    output_dir = Path(args.output_dir)
    cells = []
    for seed in args.seeds:
        for arm in args.arms:
            cells.append(run_cell(args, arm, seed, corpus, output_dir / f"seed-{seed}" / arm))
    return write_results(args, cells, output_dir)


def load_corpus(args):
    corpus = load_blocks(args.blocks, args.blocks_split)
    if args.max_blocks is not None:
        corpus = corpus.select(range(min(args.max_blocks, len(corpus))))
    return corpus


def cell_record(args, arm: str, seed: int) -> dict:
    arguments = {
        k: v for k, v in dataclasses.asdict(args).items() if k not in ("arms", "seeds", "output_dir")
    }
    inputs = {"blocks": args.blocks, "recipe": args.pretrain_recipe}
    if arm == "filtered":
        inputs["predictor"] = args.reference_predictor
    return make_record({**arguments, "arm": arm, "seed": seed}, inputs)


def run_cell(args, arm: str, seed: int, corpus, folder: Path) -> dict:
    record = cell_record(args, arm, seed)
    if up_to_date(folder, record, f"{arm}, seed {seed}", "metrics.json"):
        return read_json(folder / "metrics.json")
    shutil.rmtree(folder, ignore_errors=True)  # a cell stopped halfway, or made otherwise, starts over
    folder.mkdir(parents=True)
    logger.info("pretraining on selected data: arm %s, seed %d", arm, seed)
    if arm == "mates":
        metrics = run_mates(args, seed, corpus, folder)
    else:
        start = time.perf_counter()
        blocks, split = arm_blocks(args, arm, seed, corpus, folder)
        selection_seconds = time.perf_counter() - start + reference_seconds(args, arm, corpus)
        metrics = train_stage(args, blocks, split, folder / "model", seed, args.steps)
        metrics["selection_seconds"] = selection_seconds
    metrics.update(arm=arm, seed=seed)
    write_record(folder, record)
    write_json(folder / "metrics.json", metrics)  # last: it marks the cell finished
    return metrics


# ----------------------------------------------------------------------------------------------
# The data of the one-shot arms
# ----------------------------------------------------------------------------------------------


def arm_blocks(args, arm: str, seed: int, corpus, folder: Path) -> tuple[str, str]:
    """(blocks folder, split) the arm trains on: the corpus itself, or a subset kept with datasets.filter."""
    if arm == "full":
        return args.blocks, args.blocks_split
    k = max(1, int(round(args.keep_fraction * len(corpus))))
    if arm == "random":
        kept = random_k(len(corpus), k, seed)
    else:
        kept = top_k(mean_z(reference_scores(args, corpus), args.tasks), k)
    wanted = {int(b) for b in np.asarray(corpus["block_id"])[kept]}
    subset = corpus.filter(
        lambda block: block in wanted, input_columns="block_id", desc=f"keeping {arm} blocks"
    )
    save_to_disk(subset, folder / "blocks")
    return str(folder / "blocks"), "train"


def reference_scores(args, corpus) -> dict:
    """The reference predictor's scores of every corpus block, computed once and cached (with the
    seconds they took) in the experiment's folder."""
    cache = Path(args.output_dir) / "reference_scores"
    record = make_record({"blocks_split": args.blocks_split, "max_blocks": args.max_blocks},
                         {"predictor": args.reference_predictor, "blocks": args.blocks})  # fmt: skip
    if not up_to_date(cache, record, "reference scores of the corpus", "timing.json"):
        shutil.rmtree(cache, ignore_errors=True)
        start = time.perf_counter()
        predictor, standardiser, tasks = load_saved_predictor(args.reference_predictor)
        predicted = predict_dataset(predictor, standardiser, corpus, tasks, 64, "reference-scores")
        save_to_disk(predicted, cache / "scores")
        write_record(cache, record)
        write_json(cache / "timing.json", {"seconds": time.perf_counter() - start, "blocks": len(corpus)})
    return prediction_table(load_scores_dataset(str(cache / "scores")))


def reference_seconds(args, arm: str, corpus) -> float:
    """What scoring the corpus cost the filtered arm (predicting every block; the reference
    predictor's own labels and fit are stage 05's bill, named in the results)."""
    if arm != "filtered":
        return 0.0
    reference_scores(args, corpus)
    return float(read_json(Path(args.output_dir) / "reference_scores" / "timing.json")["seconds"])


def prediction_table(predicted) -> dict:
    return {c.removeprefix("predicted_"): np.asarray(predicted[c], dtype=np.float64)
            for c in predicted.column_names if c.startswith("predicted_")}  # fmt: skip


def mean_z(table: dict, tasks: list[str]) -> np.ndarray:
    missing = [t for t in tasks if t not in table]
    if missing:
        raise PretrainSelectedError(f"the predictor scores no task(s) {missing}; it scores {sorted(table)}")
    return np.mean([zscore(table[t]) for t in tasks], axis=0)


# ----------------------------------------------------------------------------------------------
# Training from scratch, or on from a stage's checkpoint
# ----------------------------------------------------------------------------------------------


def train_stage(
    args, blocks: str, split: str, output_dir: Path, seed: int, steps: int, continue_from=None
) -> dict:
    """`steps` steps on `blocks` (from scratch, or on from `continue_from`), the report halves
    evaluated every `eval_steps`; returns the tokens it trained on (its curve and seconds are read
    from its log when the results are written)."""
    configs = stage_configs(args, blocks, split, output_dir, seed, steps, continue_from)
    run_pretraining(*configs)
    training = configs[2]
    return {
        "tokens_trained": steps * training.per_device_train_batch_size * training.gradient_accumulation_steps
        * max(1, training.world_size) * len(load_blocks(blocks, split)[0]["input_ids"]),
    }  # fmt: skip


def stage_configs(args, blocks, split, output_dir, seed, steps, continue_from):
    return load_configs(
        stage_arguments("pretrain"),
        args.pretrain_recipe,
        tokenizer_name_or_path=args.tokenizer,
        blocks=str(blocks),
        blocks_split=split,
        blocks_streaming=False,
        validation_sets=args.validation_sets,
        eval_tasks=list(args.tasks),
        eval_part="report",
        continue_from=str(continue_from) if continue_from else None,
        auto_resume=False,
        schedule_total_steps=None if continue_from else args.steps,  # one schedule over every stage
        callbacks=["log_history"],
        callback_kwargs={},
        output_dir=str(output_dir),
        max_steps=steps,
        seed=seed,
        data_seed=seed,
        eval_strategy="steps",
        eval_steps=args.eval_steps,
        save_strategy="steps",
        save_steps=steps,  # the stage's last step: the next stage goes on from it
        disable_tqdm=True,
        **args.pretrain_overrides,
    )


def run_curve(run_dirs: list[Path], tasks: list[str]) -> list[dict]:
    """[{step, <task>: report loss}] from the runs' Trainer logs. An evaluation of several datasets
    logs each task on its own line, so lines are merged by step; a stage that goes on from a
    checkpoint inherits that checkpoint's log, whose steps are kept as first seen."""
    merged: dict[int, dict] = {}
    for run in run_dirs:
        for log in read_json(Path(run) / "trainer_state.json")["log_history"]:
            for task in tasks:
                if f"eval_{task}_loss" in log:  # the eval datasets are the report halves, named by task
                    merged.setdefault(log["step"], {}).setdefault(task, log[f"eval_{task}_loss"])
    return [{"step": step, **losses} for step, losses in sorted(merged.items()) if len(losses) == len(tasks)]


def cell_runs(folder: Path) -> list[Path]:
    """A cell's training runs: its one run, or MATES's stages in order."""
    if (folder / "model").is_dir():
        return [folder / "model"]
    return sorted(folder.glob("stage-*/model"), key=lambda p: int(p.parent.name.split("-")[1]))


def cell_curve(folder: Path, tasks: list[str]) -> list[dict]:
    return run_curve(cell_runs(folder), tasks)


def run_train_seconds(run: Path) -> float:
    """A run's training seconds: its `train_runtime` less its own evaluations (a stage's log also
    holds the evaluations of the stages before it, which are not its time)."""
    history = read_json(Path(run) / "trainer_state.json")["log_history"]
    runtime = next(log["train_runtime"] for log in reversed(history) if "train_runtime" in log)
    start = run_start_step(run)
    evaluating = sum(
        value for log in history if log.get("step", 0) > start
        for key, value in log.items() if key.startswith("eval_") and key.endswith("_runtime")
    )  # fmt: skip
    return max(0.0, float(runtime) - evaluating)


def run_start_step(run: Path) -> int:
    """The step a run started from: 0, or that of the checkpoint a stage went on from (its record says)."""
    source = read_json(Path(run) / "provenance.json")["arguments"]["pretrain"].get("continue_from")
    return int(Path(source).name.split("-")[1]) if source else 0


# ----------------------------------------------------------------------------------------------
# MATES's loop
# ----------------------------------------------------------------------------------------------


def run_mates(args, seed: int, corpus, folder: Path) -> dict:
    """Stage by stage: train, label a sample at the checkpoint, refit, predict, select, go on."""
    per_stage = stage_blocks(args)
    used: set[int] = set()
    blocks = random_stage_blocks(corpus, per_stage, seed, folder / "stage-0")
    bills, tokens, checkpoint = [], 0, None
    for stage in range(args.steps // args.stage_steps):
        used |= {int(b) for b in load_blocks(blocks, "train")["block_id"]}
        run = train_stage(
            args, blocks, "train", folder / f"stage-{stage}" / "model", seed, args.stage_steps, checkpoint
        )
        tokens += run["tokens_trained"]
        checkpoint = last_checkpoint_of(folder / f"stage-{stage}" / "model")
        if stage + 1 < args.steps // args.stage_steps:
            blocks, bill = reselect(
                args, seed + stage, corpus, used, checkpoint, per_stage, folder / f"stage-{stage + 1}"
            )
            bills.append(bill)
    selection = {
        key: sum(b[key] for b in bills) for key in ("label_seconds", "fit_seconds", "predict_seconds")
    }
    return {
        "tokens_trained": tokens,
        "selection_seconds": sum(selection.values()),
        "selection_bill": {**selection, "stages": bills},
    }


def stage_blocks(args) -> int:
    """Blocks a stage trains on: each seen once, as in the other arms."""
    configs = stage_configs(
        args, args.blocks, args.blocks_split, Path(args.output_dir), 0, args.stage_steps, None
    )
    training = configs[2]
    return args.stage_steps * training.per_device_train_batch_size * training.gradient_accumulation_steps


def random_stage_blocks(corpus, count: int, seed: int, folder: Path) -> str:
    kept = random_k(len(corpus), min(count, len(corpus)), seed)
    save_to_disk(corpus.select(kept), folder / "blocks")
    return str(folder / "blocks")


def last_checkpoint_of(run_dir: Path) -> Path:
    checkpoints = sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if not checkpoints:
        raise PretrainSelectedError(f"no checkpoint in {run_dir}: the stage did not save")
    return checkpoints[-1]


def reselect(args, seed: int, corpus, used: set[int], checkpoint: Path, count: int, folder: Path):
    """Oracle labels on a sample at `checkpoint`, a refitted predictor, the corpus predicted, and the
    next stage's blocks by Gumbel top-k among the blocks not yet trained on. Returns (blocks, bill)."""
    fresh = np.flatnonzero([int(b) not in used for b in corpus["block_id"]])
    if len(fresh) < count:
        raise PretrainSelectedError(
            f"only {len(fresh)} unseen blocks left for a stage of {count}; use a larger corpus"
        )
    sample = np.sort(
        np.random.default_rng(seed).choice(fresh, size=min(args.label_sample, len(fresh)), replace=False)
    )
    save_to_disk(corpus.select(sample), folder / "label_sample")
    start = time.perf_counter()
    labels = oracle_labels(args, checkpoint, folder)
    label_seconds = time.perf_counter() - start
    start = time.perf_counter()
    predictor, standardiser = fit_predictor(args, corpus.select(sample), labels)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    pool = corpus.select(fresh)
    table = prediction_table(
        predict_dataset(predictor, standardiser, pool, list(args.tasks), 256, f"mates-{seed}")
    )
    kept = fresh[gumbel_top_k(mean_z(table, args.tasks), count, args.temperature, seed)]
    predict_seconds = time.perf_counter() - start
    save_to_disk(corpus.select(np.sort(kept)), folder / "blocks")
    bill = {"step": int(checkpoint.name.split("-")[1]), "labels": len(sample), "label_seconds": label_seconds,
            "fit_seconds": fit_seconds, "predict_seconds": predict_seconds}  # fmt: skip
    return str(folder / "blocks"), bill


def oracle_labels(args, checkpoint: Path, folder: Path) -> np.ndarray:
    """Stage 03's scorer on the sample at the checkpoint: (blocks x tasks) scores."""
    influence = InfluenceArguments(
        checkpoint=[str(checkpoint)],
        candidates=str(folder / "label_sample"),
        candidates_split="train",
        validation_sets=args.validation_sets,
        tasks=list(args.tasks),
        part=args.label_part,
        methods=[args.label_method],
        output_dir=str(folder / "labels"),
    )
    run_influence_stage(influence)
    step = int(checkpoint.name.split("-")[1])
    scores = load_scores_dataset(str(scores_folder(folder / "labels", step, args.label_method)))
    return np.stack([np.asarray(scores[f"influence_{t}"], dtype=np.float64) for t in args.tasks], axis=1)


def fit_predictor(args, sample, labels: np.ndarray):
    """The model-free predictor refitted on this stage's labels (standardised per task)."""
    from .prepare.tokenizer import load_tokenizer

    settings = PredictorArguments(
        features=list(args.predictor_features), encoder=None, tokenizer=args.tokenizer
    )
    standardiser = Standardiser.fit(labels, list(args.tasks))
    predictor = make_predictor(
        settings, load_tokenizer(args.tokenizer), list(args.tasks), len(sample[0]["input_ids"])
    )
    predictor.fit([list(ids) for ids in sample["input_ids"]], standardiser.forward(labels), 0)
    return predictor, standardiser


# ----------------------------------------------------------------------------------------------
# The results: final report losses (paired with random, with intervals over seeds), the figure
# ----------------------------------------------------------------------------------------------


def write_results(args, cells: list[dict], output_dir: Path) -> dict:
    for cell in cells:  # from the runs' own logs, so that a kept cell is read the same way
        folder = output_dir / f"seed-{cell['seed']}" / cell["arm"]
        cell["curve"] = cell_curve(folder, args.tasks)
        cell["train_seconds"] = sum(run_train_seconds(run) for run in cell_runs(folder))
    arms = [a for a in args.arms if any(c["arm"] == a for c in cells)]
    final = {a: {c["seed"]: c["curve"][-1] for c in cells if c["arm"] == a and c["curve"]} for a in arms}
    summary = {}
    for arm in arms:
        entry = {"seeds": sorted(final[arm]), "train_seconds": mean_and_ci([c["train_seconds"] for c in cells if c["arm"] == arm]),
                 "selection_seconds": mean_and_ci([c["selection_seconds"] for c in cells if c["arm"] == arm]),
                 "tokens_trained": mean_and_ci([c["tokens_trained"] for c in cells if c["arm"] == arm])}  # fmt: skip
        for task in args.tasks:
            entry[f"loss/{task}"] = mean_and_ci([final[arm][s][task] for s in final[arm]])
            for base in ("random", "full"):
                if base in final and base != arm:
                    paired = [
                        final[arm][s][task] - final[base][s][task] for s in final[arm] if s in final[base]
                    ]
                    entry[f"vs_{base}/{task}"] = mean_and_ci(paired)
        summary[arm] = entry
    write_json(
        output_dir / "results.json",
        {"arguments": dataclasses.asdict(args), "summary": summary, "cells": cells},
    )
    (output_dir / "results.md").write_text(results_markdown(args, summary))
    plot_loss_over_training(cells, list(args.tasks), arms, output_dir / "results.png")
    return summary


def results_markdown(args, summary: dict) -> str:
    seeds = max(len(e["seeds"]) for e in summary.values())
    lines = [
        f"# Pretraining on selected data: {args.steps} steps from scratch, {seeds} seed(s)",
        "",
        f"Report-half loss at step {args.steps} (mean ± 95% t-interval over seeds; paired differences with the "
        f"random and the unfiltered arm at the same seed; below 0 is better). filtered and random keep "
        f"{args.keep_fraction:.0%} of the corpus; mates reselects every {args.stage_steps} steps from "
        f"{args.label_sample} oracle labels ({args.label_method}).",
        "",
        "| arm | "
        + " | ".join(f"{t} loss | {t} - random | {t} - full" for t in args.tasks)
        + " | training (s) | selection (s) |",
        "|---|" + "---|---|---|" * len(args.tasks) + "---|---|",
    ]
    for arm, entry in summary.items():
        row = [arm]
        for task in args.tasks:
            row += [f"{entry[f'loss/{task}'][0]:.3f}", *(format_interval(entry[k], signed=True) if k in entry else "-"
                    for k in (f"vs_random/{task}", f"vs_full/{task}"))]  # fmt: skip
        row += [f"{entry['train_seconds'][0]:.0f}", f"{entry['selection_seconds'][0]:.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
