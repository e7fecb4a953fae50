"""The predictor's labels: stage-03 scores of a seeded sample of the pool, checked, split and z-scored.

The labelled part is what an oracle budget buys (MATES labels a sample, predicts the rest); a seeded
held-out part of it is never trained on, and every number the stage reports is measured on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CodesiftError

# Imported inside the functions that use them (heavy or optional): datasets.

MIN_HELDOUT = 5  # fewer held-out labels give no usable Spearman
MIN_TRAIN = 5


class PredictorError(CodesiftError):
    """Stage 05 input that cannot work; raised before anything is written."""


@dataclass
class Labels:
    """Oracle scores of labelled blocks: `values[i, j]` is block `block_ids[i]`'s score on `tasks[j]`."""

    block_ids: np.ndarray
    values: np.ndarray
    tasks: list[str]

    def subset(self, rows) -> Labels:
        return Labels(self.block_ids[rows], self.values[rows], self.tasks)


def load_labels(scores_path: str, tasks: list[str], pool_block_ids: list[int]) -> Labels:
    """Every finite score in `scores_path` for `tasks` (empty: all its tasks), in pool order.
    Labels must name pool blocks, once each, with finite values."""
    from datasets import load_from_disk

    if not (Path(scores_path) / "dataset_info.json").is_file():
        raise PredictorError(f"no scores dataset at {scores_path}: run scripts/compute_influence.py first")
    scores = load_from_disk(str(scores_path))
    present = [c.removeprefix("influence_") for c in scores.column_names if c.startswith("influence_")]
    if "block_id" not in scores.column_names or not present:
        raise PredictorError(f"{scores_path}: labels need block_id and influence_<task> columns")
    tasks = list(tasks) or present
    missing = [t for t in tasks if t not in present]
    if missing:
        raise PredictorError(f"{scores_path}: no labels for task(s) {missing}; labelled tasks: {present}")
    ids = np.asarray(scores["block_id"], dtype=np.int64)
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise PredictorError(
            f"{scores_path}: block_id {int(unique[counts > 1][0])} is labelled more than once"
        )
    position = {int(b): i for i, b in enumerate(pool_block_ids)}
    strangers = [int(b) for b in ids if int(b) not in position]
    if strangers:
        raise PredictorError(
            f"{scores_path}: {len(strangers)} labelled block_id(s) are not in the candidate pool "
            f"(first {strangers[0]}); the labels were scored on other candidates"
        )
    values = np.stack([np.asarray(scores[f"influence_{t}"], dtype=np.float64) for t in tasks], axis=1)
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        row, col = bad[0]
        raise PredictorError(
            f"{scores_path}: {len(bad)} non-finite label(s), first block_id {int(ids[row])} task "
            f"{tasks[col]} ({values[row, col]})"
        )
    order = np.argsort([position[int(b)] for b in ids], kind="stable")
    return Labels(ids[order], values[order], tasks)


def label_count(args, pool_size: int, available: int) -> int:
    wanted = args.num_labels if args.num_labels is not None else int(round(args.label_fraction * pool_size))
    if wanted > available:
        raise PredictorError(
            f"{wanted} labels asked for ({args.label_fraction:.0%} of {pool_size} or num_labels) but the "
            f"scores hold {available}; score more of the pool or ask for fewer"
        )
    return wanted


def split_labels(labels: Labels, count: int, heldout_fraction: float, seed: int) -> tuple[Labels, Labels]:
    """(train, held-out): a seeded sample of `count` labelled blocks, a seeded share of it held out."""
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.permutation(len(labels.block_ids))[:count])
    n_heldout = int(round(heldout_fraction * count))
    if n_heldout < MIN_HELDOUT or count - n_heldout < MIN_TRAIN:
        raise PredictorError(
            f"{count} labels with heldout_fraction {heldout_fraction} leave {n_heldout} held out and "
            f"{count - n_heldout} to train on; need at least {MIN_HELDOUT} and {MIN_TRAIN}"
        )
    shuffled = rng.permutation(chosen)
    return labels.subset(np.sort(shuffled[n_heldout:])), labels.subset(np.sort(shuffled[:n_heldout]))


@dataclass
class Standardiser:
    """Per-task z-scores with the training labels' mean and spread (scores of different tasks live
    on different scales; the z-scale is what selection ranks anyway)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray, tasks: list[str]) -> Standardiser:
        std = values.std(axis=0)
        flat = [t for t, s in zip(tasks, std, strict=True) if not s > 0]
        if flat:
            raise PredictorError(f"the training labels of task(s) {flat} are all equal; nothing to learn")
        return cls(values.mean(axis=0), std)

    def forward(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return z * self.std + self.mean
