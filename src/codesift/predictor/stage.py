"""Stage 05 end to end: labels -> predictor -> held-out numbers (and a learning curve) -> the whole
pool predicted with datasets.map -> a scores-like dataset stage 04 and 06 select from, with its cost.

Output under `output_dir`:
    predictor/      the fitted predictor (ridge.npz or a Transformers model folder) + predictor.json
    predictions/    block_id, predicted_<task> (the oracle's scale), labelled; scoring.json (cost)
    metrics.json    held-out Pearson / Spearman / top-20% precision per task, timings, costs
    heldout.parquet the held-out blocks' oracle and predicted scores (for the notebook's scatter)
    plots/          learning_curve.png, predicted_vs_oracle.png
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from ..data import load_candidates
from ..plots import plot_learning_curve, plot_predicted_vs_oracle
from ..prepare.tokenizer import load_tokenizer
from ..provenance import make_record, up_to_date, write_record
from ..stats import spearman
from ..utils import atomic_directory, read_json, save_to_disk, set_seed, write_json
from .features import clear_caches
from .labels import Labels, PredictorError, Standardiser, label_count, load_labels, split_labels
from .models import FEATURE_GROUPS, PREDICTORS, make_predictor

logger = logging.getLogger(__name__)

TOP_FRACTION = 0.2


def top_precision(oracle, predicted, fraction: float = TOP_FRACTION) -> float:
    """Share of the predictor's top `fraction` that is in the oracle's top `fraction`."""
    k = max(1, int(round(fraction * len(oracle))))
    top_oracle = set(np.argsort(-np.asarray(oracle), kind="stable")[:k])
    top_predicted = np.argsort(-np.asarray(predicted), kind="stable")[:k]
    return len(top_oracle.intersection(top_predicted)) / k


def agreement(oracle: np.ndarray, predicted: np.ndarray, tasks: list[str]) -> dict:
    """{task: {pearson, spearman, top20_precision}} on the same blocks."""
    return {
        task: {
            "pearson": float(np.corrcoef(oracle[:, j], predicted[:, j])[0, 1]),
            "spearman": spearman(oracle[:, j], predicted[:, j]),
            "top20_precision": top_precision(oracle[:, j], predicted[:, j]),
        }
        for j, task in enumerate(tasks)
    }


def check_arguments(args) -> None:
    if args.predictor not in PREDICTORS:
        raise PredictorError(f"unknown predictor {args.predictor!r}; predictors: {', '.join(PREDICTORS)}")
    if args.predictor == "ridge" and (not args.features or set(args.features) - set(FEATURE_GROUPS)):
        raise PredictorError(f"ridge features must be some of {FEATURE_GROUPS}; got {args.features}")
    if not 0 < args.label_fraction <= 1:
        raise PredictorError(f"label_fraction must be in (0, 1]; got {args.label_fraction}")
    if not 0 < args.heldout_fraction < 1:
        raise PredictorError(f"heldout_fraction must be in (0, 1); got {args.heldout_fraction}")
    if not Path(args.tokenizer).exists():
        raise PredictorError(
            f"the blocks' tokenizer not found at {args.tokenizer}: run scripts/build_corpus.py first"
        )


def stage_record(args) -> dict:
    inputs = {"scores": args.scores, "candidates": args.candidates, "tokenizer": args.tokenizer}
    if args.predictor == "ridge" and args.encoder:
        inputs["encoder"] = args.encoder
    if args.predictor == "finetuned":
        inputs["model"] = args.model_name_or_path
    arguments = {k: v for k, v in dataclasses.asdict(args).items() if k != "output_dir"}
    return make_record(arguments, inputs)


class Context:
    """What every fit needs: the pool, its tokenizer, the labels and their split."""

    def __init__(self, args):
        check_arguments(args)
        self.args = args
        self.candidates = load_candidates(args.candidates, args.candidates_split, args.max_candidates)
        self.pool_ids = [int(b) for b in self.candidates["block_id"]]
        self.row_of = {b: i for i, b in enumerate(self.pool_ids)}
        self.tokenizer = load_tokenizer(args.tokenizer)
        self.labels = load_labels(args.scores, args.tasks, self.pool_ids)
        self.tasks = self.labels.tasks
        self.count = label_count(args, len(self.pool_ids), len(self.labels.block_ids))
        self.train, self.heldout = split_labels(self.labels, self.count, args.heldout_fraction, args.seed)
        self.seq_len = len(self.candidates[0]["input_ids"])
        vocab = len(self.tokenizer)
        top = max(
            max(ids) for ids in self.candidates.select(range(min(200, len(self.candidates))))["input_ids"]
        )
        if top >= vocab:
            raise PredictorError(
                f"{args.candidates}: token id {top} is outside the tokenizer at {args.tokenizer} ({vocab} ids); "
                "the blocks were made with another tokenizer"
            )

    def input_ids(self, labels: Labels) -> list[list[int]]:
        rows = [self.row_of[int(b)] for b in labels.block_ids]
        return [list(ids) for ids in self.candidates.select(rows)["input_ids"]]


@dataclasses.dataclass
class Fit:
    """One predictor fitted on training labels and judged on the held-out ones."""

    predictor: object
    standardiser: Standardiser
    heldout: dict  # {task: {pearson, spearman, top20_precision}}
    predicted: np.ndarray  # held-out predictions, on the oracle's scale
    info: dict
    train_seconds: float
    heldout_seconds: float  # predicting the held-out blocks


def fit_and_judge(context: Context, train: Labels, args=None) -> Fit:
    """Fit `args`' predictor (default: the context's) on `train`, judge it on the held-out labels."""
    args = args or context.args
    set_seed(args.seed)
    standardiser = Standardiser.fit(train.values, context.tasks)
    predictor = make_predictor(args, context.tokenizer, context.tasks, context.seq_len)
    start = time.perf_counter()
    info = predictor.fit(context.input_ids(train), standardiser.forward(train.values), args.seed)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    predicted = standardiser.inverse(predictor.predict(context.input_ids(context.heldout)))
    heldout_seconds = time.perf_counter() - start
    heldout = agreement(context.heldout.values, predicted, context.tasks)
    return Fit(predictor, standardiser, heldout, predicted, info, seconds, heldout_seconds)


def learning_curve(context: Context, sizes: list[int], args=None) -> list[dict]:
    """Held-out agreement when training on the first n training labels (a seeded order), per n,
    of the context's predictor or the one `args` describe."""
    args = args or context.args
    rng = np.random.default_rng(args.seed + 1)
    order = rng.permutation(len(context.train.block_ids))
    points = []
    for n in sorted({min(n, len(order)) for n in sizes}):
        subset = context.train.subset(np.sort(order[:n]))
        fit = fit_and_judge(context, subset, args)
        points.append({"labels": n, "train_seconds": fit.train_seconds, **fit.heldout})
        spearmans = {t: round(fit.heldout[t]["spearman"], 3) for t in context.tasks}
        logger.info("learning curve: %d labels -> Spearman %s", n, spearmans)
    return points


def predict_dataset(
    predictor, standardiser: Standardiser, blocks, tasks: list[str], batch_size: int, fingerprint: str
):
    """`blocks` with `predicted_<task>` columns (on the oracle's scale), by datasets.map(batched=True);
    every other column but block_id is dropped."""

    def predict_batch(batch):
        values = standardiser.inverse(predictor.predict(batch["input_ids"]))
        return {f"predicted_{t}": values[:, j].tolist() for j, t in enumerate(tasks)}

    return blocks.map(
        predict_batch,
        batched=True,
        batch_size=batch_size,
        remove_columns=[c for c in blocks.column_names if c != "block_id"],
        keep_in_memory=True,  # nothing is written beside the candidates
        new_fingerprint=fingerprint,  # the predictor cannot be hashed; the stage's record stands for it
        desc="predicting",
    )


def oracle_seconds_per_block(args) -> float:
    info = Path(args.oracle_timing or args.scores) / "scoring.json"
    return float(read_json(info).get("seconds_per_candidate", 0.0)) if info.is_file() else 0.0


def run_predictor_stage(args) -> dict:
    """Train on the labelled part, report on the held-out part, predict the pool; resumable."""
    context = Context(args)
    output_dir = Path(args.output_dir)
    record = stage_record(args)
    if up_to_date(output_dir, record, "predictor", "metrics.json"):
        return read_json(output_dir / "metrics.json")
    logger.info(
        "%s predictor: %d labels of %d candidates (%d train, %d held out), tasks %s",
        args.predictor, context.count, len(context.pool_ids), len(context.train.block_ids),
        len(context.heldout.block_ids), context.tasks,
    )  # fmt: skip
    with atomic_directory(output_dir) as tmp:
        clear_caches()  # the bill counts every forward pass of the fit and of the prediction
        fit = fit_and_judge(context, context.train)
        fit.predictor.save(tmp / "predictor")
        context.tokenizer.save_pretrained(str(tmp / "predictor" / "blocks_tokenizer"))  # what the ids mean
        predict_seconds = write_predictions(tmp / "predictions", context, fit, record_hash(record))
        curve = learning_curve(context, args.learning_curve) if args.learning_curve else []  # not billed
        metrics = {
            "predictor": args.predictor,
            "features": list(args.features) if args.predictor == "ridge" else None,
            "model_name_or_path": args.model_name_or_path if args.predictor == "finetuned" else None,
            "labels": labels_provenance(args, context),
            "heldout": fit.heldout,
            "fit": fit.info,
            "learning_curve": curve,
            "cost": selection_cost(args, context, fit.train_seconds, predict_seconds),
        }
        write_json(tmp / "predictions" / "scoring.json", scoring_summary(args, context, metrics))
        write_heldout(tmp / "heldout.parquet", context, fit.predicted)
        write_plots(tmp / "plots", context, fit, curve)
        write_json(
            tmp / "predictor" / "predictor.json",
            {
                **metrics,
                "arguments": dataclasses.asdict(args),
                "seq_len": context.seq_len,
                "standardiser": {
                    "mean": fit.standardiser.mean.tolist(),
                    "std": fit.standardiser.std.tolist(),
                },
            },
        )
        write_record(tmp, record)
        write_json(tmp / "metrics.json", metrics)  # last: it marks the stage finished
    return metrics


def write_predictions(folder: Path, context: Context, fit: Fit, fingerprint: str) -> float:
    """The whole pool predicted and saved (with which blocks were labelled); returns the seconds
    predicting took, the held-out blocks' included."""
    start = time.perf_counter()  # labelled blocks' forwards were billed with the fit: not run again
    predictions = predict_dataset(
        fit.predictor,
        fit.standardiser,
        context.candidates,
        context.tasks,
        context.args.batch_size,
        fingerprint,
    )
    labelled = set(context.train.block_ids.tolist()) | set(context.heldout.block_ids.tolist())
    predictions = predictions.add_column("labelled", [b in labelled for b in context.pool_ids])
    seconds = time.perf_counter() - start + fit.heldout_seconds
    save_to_disk(predictions, folder)
    return seconds


def scoring_summary(args, context: Context, metrics: dict) -> dict:
    """predictions/scoring.json: the bill, and what stage 07's cards read from a scores folder (the
    oracle's checkpoint, step and method) plus what predicted the scores and how well."""
    labels = metrics["labels"]
    return {
        **metrics["cost"],
        "method": f"{labels['method']}, predicted by a {describe(args)}",
        "step": labels["step"],
        "checkpoint": labels["checkpoint"],
        "part": labels["part"],
        "tasks": context.tasks,
        "predictor": {
            "kind": args.predictor,
            "description": describe(args),
            "output_dir": args.output_dir,
            "labels": labels,
            "heldout": metrics["heldout"],
        },
    }


def write_plots(folder: Path, context: Context, fit: Fit, curve: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if curve:
        plot_learning_curve(curve, context.tasks, folder / "learning_curve.png")
    plot_predicted_vs_oracle(
        context.heldout.values, fit.predicted, context.tasks, fit.heldout, folder / "predicted_vs_oracle.png"
    )


def describe(args) -> str:
    """The predictor in a few words, for logs and cards."""
    if args.predictor == "ridge":
        return f"ridge on {' + '.join(args.features)}"
    return f"fine-tuned regression head ({args.model_name_or_path})"


def record_hash(record: dict) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def labels_provenance(args, context: Context) -> dict:
    scoring = Path(args.scores) / "scoring.json"
    meta = read_json(scoring) if scoring.is_file() else {}
    return {
        "scores": args.scores,
        "checkpoint": meta.get("checkpoint"),
        "step": meta.get("step"),
        "method": meta.get("method"),
        "part": meta.get("part"),
        "tasks": context.tasks,
        "labelled": context.count,
        "train": len(context.train.block_ids),
        "heldout": len(context.heldout.block_ids),
        "pool": len(context.pool_ids),
    }


def selection_cost(args, context: Context, train_seconds: float, predict_seconds: float) -> dict:
    """What selecting with the predictions cost: oracle labels + training + predicting the pool. The
    `seconds` field is what stage 06's selection-time column reads."""
    per_oracle = oracle_seconds_per_block(args)
    label_seconds = per_oracle * context.count
    total = label_seconds + train_seconds + predict_seconds
    pool = len(context.pool_ids)
    return {
        "seconds": total,
        "candidates": pool,
        "seconds_per_candidate": total / pool,
        "oracle_seconds_per_block": per_oracle,
        "oracle_labels": context.count,
        "label_seconds": label_seconds,
        "train_seconds": train_seconds,
        "predict_seconds": predict_seconds,
        "predict_seconds_per_block": predict_seconds / pool,
        "oracle_pool_seconds": per_oracle * pool,
    }


def write_heldout(path: Path, context: Context, predicted: np.ndarray) -> None:
    import pandas as pd

    frame = {"block_id": context.heldout.block_ids}
    for j, task in enumerate(context.tasks):
        frame[f"influence_{task}"] = context.heldout.values[:, j]
        frame[f"predicted_{task}"] = predicted[:, j]
    pd.DataFrame(frame).to_parquet(path, index=False)
