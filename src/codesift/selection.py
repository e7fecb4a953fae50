"""Stage 04: keep the best candidate blocks with `datasets.filter`.

A strategy turns one value per candidate into a set of kept `block_id`s; the candidates (joined
to their influence scores) are then filtered on that set. Strategies:
- `top_k`: the `fraction` with the highest value; the value is one task's influence score, or an
  aggregate over tasks (mean of per-task z-scores, their min, max, or a weighted sum);
- `gumbel_top_k`: top-k of z(value) / temperature + Gumbel noise, as MATES selects (its "k lowest
  post-step losses" are our k highest scores); temperature -> 0 is top-k;
- `threshold`: every block whose value is at least `threshold`;
- `quantile`: the top `fraction` for a pool too large to sort: the cut is the (1 - fraction)
  quantile of a random sample of `quantile_sample` scores (and the z-scores use the sample's mean
  and spread), then the scores are filtered in batches (`datasets.filter`), never sorted;
- `middle`: the `fraction` around the median score (with top_k and `reverse`, the extremes arms);
- baselines of the same size: `random`; `perplexity`, the candidate's own loss under a checkpoint
  (band `low`, `middle` or `high`), as the usual perplexity filters; `dsir`, importance resampling
  towards the tasks' n-grams (Xie et al. 2023, model-free; codesift.dsir); `full`, the whole pool;
  and `reverse: true` on top_k / gumbel_top_k keeps the lowest scores (a sanity arm that must lose
  to random if the score carries signal); `rater`, a Hub LM or classifier's rating of each block
  (codesift.raters).
With `push_shards_to`, each parquet shard of the kept blocks is uploaded as soon as it is written.
Everything is seeded; the strategy and its parameters are written to `selection.json`.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .data import load_candidates, load_scores_dataset
from .dsir import importance_log_weights, resample
from .errors import CodesiftError
from .plots import plot_package_shares, plot_selection_histogram
from .utils import atomic_directory, save_to_disk, set_seed, write_json

# Imported inside the functions that use them (heavy or optional): datasets, pandas, torch, transformers.

logger = logging.getLogger(__name__)

AGGREGATES = ("mean_z", "min", "max", "weighted")
PERPLEXITY_BANDS = ("low", "middle", "high")


class SelectionError(CodesiftError):
    """A selection input that cannot work; raised before anything is written."""


# ----------------------------------------------------------------------------------------------
# Values per candidate
# ----------------------------------------------------------------------------------------------


def zscore(values) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    spread = values.std()
    return (values - values.mean()) / spread if spread > 0 else np.zeros_like(values)


def score_rows_of(scores, block_ids: list[int]) -> tuple[np.ndarray, list[int]]:
    """(row of each candidate in the scores, in `block_ids` order; the block ids with no row)."""
    position = {int(b): i for i, b in enumerate(scores["block_id"])}
    missing = [b for b in block_ids if b not in position]
    return np.array([position.get(b, -1) for b in block_ids], dtype=np.int64), missing


SCORE_PREFIXES = ("influence_", "predicted_")


def score_prefix(scores) -> str | None:
    """`influence_` for stage 03's oracle scores, else `predicted_` for stage 05's predictions."""
    return next((p for p in SCORE_PREFIXES if any(c.startswith(p) for c in scores.column_names)), None)


def scores_for_candidates(scores, block_ids: list[int], source: str = "scores") -> dict[str, np.ndarray]:
    """{task: influence score of each candidate, in `block_ids` order}. Every candidate must be
    scored and every score finite."""
    prefix = score_prefix(scores)
    columns = [c for c in scores.column_names if prefix and c.startswith(prefix)]
    if "block_id" not in scores.column_names or not columns:
        raise SelectionError(
            f"{source}: a scores dataset needs block_id and influence_<task> (or predicted_<task>) columns; "
            f"has {scores.column_names}"
        )
    rows, missing = score_rows_of(scores, block_ids)
    if missing:
        raise SelectionError(
            f"{source}: {len(missing)} of {len(block_ids)} candidates have no score (block_id "
            f"{missing[:5]}...); score the whole pool or set max_candidates to the scored part"
        )
    table = {}
    for column in columns:
        values = np.asarray(scores[column], dtype=np.float64)[rows]
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise SelectionError(
                f"{source}: {len(bad)} non-finite value(s) in {column}, first at block_id "
                f"{block_ids[bad[0]]} ({values[bad[0]]})"
            )
        table[column.removeprefix(prefix)] = values
    return table


def aggregate_scores(table: dict[str, np.ndarray], tasks: list[str], how: str, weights: dict) -> np.ndarray:
    """One value per candidate: a task's raw score, or an aggregate of per-task z-scores (the tasks'
    scores live on different scales, so they are standardised first)."""
    tasks = tasks or list(table)
    unknown = [t for t in tasks if t not in table]
    if unknown:
        raise SelectionError(f"task(s) {unknown} not in the scores; scored tasks: {list(table)}")
    if len(tasks) == 1:
        return table[tasks[0]]
    if how not in AGGREGATES:
        raise SelectionError(f"unknown aggregate {how!r}; choose one of {AGGREGATES}")
    z = np.stack([zscore(table[t]) for t in tasks])
    if how == "mean_z":
        return z.mean(0)
    if how == "min":
        return z.min(0)
    if how == "max":
        return z.max(0)
    missing = [t for t in tasks if t not in weights]
    if missing:
        raise SelectionError(f"aggregate 'weighted' needs a weight for every task; missing {missing}")
    return np.tensordot(np.array([float(weights[t]) for t in tasks]), z, axes=1)


# ----------------------------------------------------------------------------------------------
# Strategies: values -> indices of the kept candidates
# ----------------------------------------------------------------------------------------------


def top_k(values, k: int) -> np.ndarray:
    """Indices of the k highest values; ties go to the earlier candidate."""
    return np.sort(np.argsort(-np.asarray(values), kind="stable")[:k])


def gumbel_top_k(values, k: int, temperature: float, seed: int) -> np.ndarray:
    """Sampling k without replacement with probabilities softmax(z / temperature) (Gumbel-top-k)."""
    if temperature < 0:
        raise SelectionError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return top_k(values, k)
    noise = np.random.default_rng(seed).gumbel(size=len(values))
    return top_k(zscore(values) / temperature + noise, k)


def language_matched(candidates, reference: np.ndarray, seed: int) -> np.ndarray:
    """Random blocks with the language mix of `reference` (the influence arm's choice at the same
    seed): as many of each language, drawn at random among that language's candidates. What the
    influence arm gains over this is not reweighting languages."""
    if "language" not in candidates.column_names:
        raise SelectionError(
            "language_matched_random needs blocks with a `language` column (stage 01 writes it)"
        )
    languages = np.asarray(candidates["language"])
    rng = np.random.default_rng(seed + 1)
    kept = []
    for language, count in zip(*np.unique(languages[reference], return_counts=True), strict=True):
        pool = np.flatnonzero(languages == language)
        kept.append(rng.choice(pool, size=count, replace=False))
    return np.sort(np.concatenate(kept))


def random_k(n: int, k: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def band_k(losses, k: int, band: str) -> np.ndarray:
    """A perplexity filter: the k lowest, middle or highest losses."""
    order = np.argsort(np.asarray(losses), kind="stable")
    if band == "low":
        return np.sort(order[:k])
    if band == "high":
        return np.sort(order[-k:])
    if band == "middle":
        start = (len(order) - k) // 2
        return np.sort(order[start : start + k])
    raise SelectionError(f"unknown perplexity band {band!r}; choose {', '.join(PERPLEXITY_BANDS)}")


def kept_count(fraction: float, n: int) -> int:
    if not (0 < fraction <= 1) or math.isnan(fraction):
        raise SelectionError(f"fraction must be in (0, 1], got {fraction}")
    return max(1, int(round(fraction * n)))


# ----------------------------------------------------------------------------------------------
# Candidate losses (the perplexity baseline's signal)
# ----------------------------------------------------------------------------------------------


def candidate_losses(model, candidates, batch_size: int = 32) -> np.ndarray:
    """Each block's mean next-token loss under `model` (no dropout, no gradient)."""
    import torch

    from .modeling import block_losses

    model.eval()
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for start in tqdm(range(0, len(candidates), batch_size), desc="candidate losses", unit="batch"):
            ids = torch.as_tensor(candidates[start : start + batch_size]["input_ids"], device=device)
            out.append(block_losses(model(input_ids=ids).logits, ids).double().cpu())
    return torch.cat(out).numpy()


def recorded_candidate_losses(scores, block_ids: list[int]) -> np.ndarray | None:
    """The candidates' own losses recorded by stage 03 (column `candidate_loss`), if it has them
    for every candidate."""
    if "candidate_loss" not in scores.column_names:
        return None
    rows, missing = score_rows_of(scores, block_ids)
    return None if missing else np.asarray(scores["candidate_loss"], dtype=np.float64)[rows]


def checkpoint_candidate_losses(checkpoint: str, candidates, cache: str | Path | None = None) -> np.ndarray:
    """Candidate losses under a checkpoint, read from (or written to) a parquet cache."""
    import pandas as pd

    block_ids = np.asarray(candidates["block_id"])
    if cache is not None and Path(cache).is_file():
        frame = pd.read_parquet(cache)
        if set(block_ids) <= set(frame["block_id"]):
            return frame.set_index("block_id").loc[block_ids, "loss"].to_numpy()
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    losses = candidate_losses(model, candidates)
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"block_id": block_ids, "loss": losses}).to_parquet(cache)
    return losses


# ----------------------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------------------


@dataclass
class Selection:
    """What a strategy chose: the kept blocks (a filtered Dataset) and how they were chosen."""

    blocks: object
    values: np.ndarray | None  # the value each candidate was ranked by (None for random/full)
    kept: np.ndarray  # indices into the candidates
    metadata: dict


@dataclass
class Pool:
    """What a strategy chooses from: the candidates, their scores (when given) and how many to keep."""

    args: object  # SelectionArguments
    candidates: object
    block_ids: list[int]
    k: int
    scores: object | None  # the scores Dataset
    table: dict[str, np.ndarray]  # {task: score of each candidate}
    losses: np.ndarray | None  # the candidates' own losses, when passed in

    @cached_property
    def values(self) -> np.ndarray:
        """One score per candidate: the task's, or the tasks' aggregate."""
        return aggregate_scores(self.table, self.args.tasks, self.args.aggregate, self.args.weights)

    @property
    def ranked(self) -> np.ndarray:
        """The values, negated with `reverse` (the lowest first)."""
        return -self.values if self.args.reverse else self.values


@dataclass(frozen=True)
class Strategy:
    """A way to choose blocks: `choose(pool) -> (kept indices, the value each candidate was ranked
    by or None)`; `parameters` are the arguments that define it (its metadata and cards); `check`
    returns what is missing from the arguments, or None."""

    name: str
    choose: Callable[[Pool], tuple[np.ndarray, np.ndarray | None]]
    needs_scores: bool
    description: str
    parameters: tuple[str, ...] = ()
    check: Callable[[object], str | None] | None = None


def choose_top_k(pool: Pool):
    return top_k(pool.ranked, pool.k), pool.values


def choose_gumbel_top_k(pool: Pool):
    return gumbel_top_k(pool.ranked, pool.k, pool.args.temperature, pool.args.seed), pool.values


def choose_threshold(pool: Pool):
    values = pool.values
    kept = np.flatnonzero(values >= pool.args.threshold)
    if len(kept) == 0:
        raise SelectionError(f"threshold {pool.args.threshold} keeps no block (max value {values.max():.4g})")
    return kept, values


def choose_quantile(pool: Pool):
    _, kept_ids = quantile_selection(pool.scores, pool.args)
    where = {b: i for i, b in enumerate(pool.block_ids)}
    return np.sort(np.asarray([where[b] for b in kept_ids if b in where], dtype=np.int64)), None


def choose_middle(pool: Pool):
    values = pool.values
    return band_k(values, pool.k, "middle"), values


def choose_language_matched_random(pool: Pool):
    influence = gumbel_top_k(pool.ranked, pool.k, pool.args.temperature, pool.args.seed)
    return language_matched(pool.candidates, influence, pool.args.seed), pool.values


def choose_random(pool: Pool):
    return random_k(len(pool.block_ids), pool.k, pool.args.seed), None


def choose_perplexity(pool: Pool):
    losses = pool.losses
    if losses is None and pool.scores is not None:
        losses = recorded_candidate_losses(pool.scores, pool.block_ids)
    if losses is None:
        losses = checkpoint_candidate_losses(pool.args.perplexity_checkpoint, pool.candidates)
    values = np.asarray(losses)
    return band_k(values, pool.k, pool.args.perplexity_band), values


def choose_dsir(pool: Pool):
    values = dsir_log_weights(pool.args, pool.candidates)
    return resample(values, pool.k, pool.args.seed), values


def choose_rater(pool: Pool):
    values = rater_values(pool.args, pool.candidates)
    return top_k(values, pool.k), values


def choose_full(pool: Pool):
    return np.arange(len(pool.block_ids)), None


def needs(field: str, what: str):
    """A check: the strategy needs `field` set."""
    return lambda args: None if getattr(args, field) not in (None, "", []) else f"needs `{field}` ({what})"


def quantile_check(args) -> str | None:
    if args.aggregate not in ("mean_z", "weighted") and len(args.tasks) != 1:
        return "aggregates tasks by mean_z or weighted, or ranks one task"
    return None


def perplexity_check(args) -> str | None:
    if not (args.perplexity_checkpoint or args.scores):
        return "needs `perplexity_checkpoint` or scores with candidate_loss"
    return None


RANKING = ("tasks", "aggregate", "weights")
STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("top_k", choose_top_k, True, "the `fraction` with the highest score", (*RANKING, "reverse")),
        Strategy(
            "gumbel_top_k",
            choose_gumbel_top_k,
            True,
            "top-k of z(score) / temperature + Gumbel noise, as MATES selects",
            (*RANKING, "temperature", "reverse"),
        ),
        Strategy(
            "threshold",
            choose_threshold,
            True,
            "every block scoring at least `threshold`",
            (*RANKING, "threshold"),
            needs("threshold", "the lowest score kept"),
        ),
        Strategy(
            "quantile",
            choose_quantile,
            True,
            "the top `fraction` of a pool too large to sort, by a sampled quantile cut",
            (*RANKING, "quantile_sample"),
            quantile_check,
        ),
        Strategy("middle", choose_middle, True, "the `fraction` around the median score", RANKING),
        Strategy(
            "language_matched_random",
            choose_language_matched_random,
            True,
            "random blocks with the language mix of the influence choice at the same seed",
            (*RANKING, "temperature"),
        ),
        Strategy("random", choose_random, False, "a seeded random `fraction` of the pool"),
        Strategy(
            "perplexity",
            choose_perplexity,
            False,
            "the candidates' own loss under a checkpoint, in a band (low, middle, high)",
            ("perplexity_checkpoint", "perplexity_band"),
            perplexity_check,
        ),
        Strategy(
            "dsir",
            choose_dsir,
            False,
            "importance resampling towards the tasks' n-grams (Xie et al. 2023)",
            ("tasks", "target_sets", "dsir_hash_bits"),
            needs("target_sets", "stage 01's tokenized validation sets"),
        ),
        Strategy(
            "rater",
            choose_rater,
            False,
            "a Hub LM or classifier's rating of each block",
            ("rater_model", "rater_kind", "rater_tokenizer", "rater_max_length"),
            needs("rater_model", "a Hub id or folder of an LM or classifier"),
        ),
        Strategy("full", choose_full, False, "the whole pool"),
    )
}
SCORE_STRATEGIES = tuple(name for name, strategy in STRATEGIES.items() if strategy.needs_scores)
REVERSIBLE = ("top_k", "gumbel_top_k")


def describe(args) -> dict:
    """The arguments that define a selection, for its metadata and cards."""
    keys = ["strategy", "fraction", "seed", "scores", "candidates", "candidates_split", "max_candidates"]
    keys += STRATEGIES[args.strategy].parameters if args.strategy in STRATEGIES else ()
    return {key: value for key, value in asdict(args).items() if key in keys}


def check_arguments(args) -> None:
    if args.strategy not in STRATEGIES:
        raise SelectionError(f"unknown strategy {args.strategy!r}; strategies: {', '.join(STRATEGIES)}")
    strategy = STRATEGIES[args.strategy]
    kept_count(args.fraction, 1)
    if strategy.needs_scores and not args.scores:
        raise SelectionError(f"strategy {args.strategy!r} needs `scores` (a stage-03 scores folder)")
    if args.reverse and args.strategy not in REVERSIBLE:
        raise SelectionError(f"reverse applies to {' and '.join(REVERSIBLE)}, not {args.strategy!r}")
    problem = strategy.check(args) if strategy.check else None
    if problem:
        raise SelectionError(f"strategy {args.strategy!r} {problem}")


def select(args, candidates=None, losses=None) -> Selection:
    """Choose blocks as `args` (SelectionArguments) says. Everything is checked before any choice;
    `candidates` and `losses` may be passed in to reuse them across strategies."""
    check_arguments(args)
    start = time.perf_counter()
    if candidates is None:
        candidates = load_candidates(args.candidates, args.candidates_split, args.max_candidates)
    block_ids = [int(b) for b in candidates["block_id"]]
    k = kept_count(args.fraction, len(block_ids))
    scores = load_scores_dataset(args.scores) if args.scores else None
    table = scores_for_candidates(scores, block_ids, args.scores) if scores is not None else {}
    pool = Pool(args, candidates, block_ids, k, scores, table, losses)
    kept, values = STRATEGIES[args.strategy].choose(pool)
    prefix = (score_prefix(scores) if scores is not None else None) or "influence_"
    blocks = filter_blocks(candidates, table, {block_ids[i] for i in kept}, prefix)
    metadata = {
        "name": args.name or args.strategy,
        **describe(args),
        "candidates_total": len(block_ids),
        "kept_blocks": len(blocks),
        "kept_tokens": int(sum(len(ids) for ids in blocks["input_ids"])),
        "selection_seconds": time.perf_counter() - start,
    }
    return Selection(blocks, values, kept, metadata)


def rater_values(args, candidates) -> np.ndarray:
    from .prepare.tokenizer import load_tokenizer
    from .raters import RaterError, rate_blocks

    try:
        return rate_blocks(
            candidates["input_ids"],
            load_tokenizer(args.rater_tokenizer),
            args.rater_model,
            kind=args.rater_kind,
            max_length=args.rater_max_length,
        )
    except (RaterError, OSError) as error:
        raise SelectionError(f"rater {args.rater_model}: {error}") from error


# ----------------------------------------------------------------------------------------------
# A global top fraction without a sort: the cut from a sample, then a batched filter
# ----------------------------------------------------------------------------------------------


def score_columns(scores, tasks: list[str]) -> list[str]:
    prefix = score_prefix(scores) or "influence_"
    columns = [c for c in scores.column_names if c.startswith(prefix)]
    wanted = [f"{prefix}{t}" for t in tasks] if tasks else columns
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise SelectionError(f"scores have no column(s) {missing}; they have {columns}")
    return wanted


def quantile_cut(scores, args) -> tuple[float, dict]:
    """The (1 - fraction) quantile of the aggregated value on a seeded random sample of rows, and the
    per-column (mean, std) from the same sample (what mean_z standardizes with)."""
    columns = score_columns(scores, args.tasks)
    n = len(scores)
    size = min(n, args.quantile_sample)
    rows = np.sort(np.random.default_rng(args.seed).choice(n, size=size, replace=False))
    sample = scores.select(rows).select_columns(columns).with_format("numpy")[:]
    moments = {c: (float(np.mean(sample[c])), float(np.std(sample[c])) or 1.0) for c in columns}
    values = combine(sample, columns, moments, args)
    return float(np.quantile(values, 1 - args.fraction)), moments


def combine(batch: dict, columns: list[str], moments: dict, args) -> np.ndarray:
    """mean_z (or weighted z) with the sample's moments; one column alone is its raw score."""
    if len(columns) == 1:
        return np.asarray(batch[columns[0]], dtype=np.float64)
    prefix = columns[0][: columns[0].index("_") + 1]
    weights = {c: float(args.weights.get(c.removeprefix(prefix), 1.0)) for c in columns}
    if args.aggregate == "mean_z":
        weights = dict.fromkeys(columns, 1.0 / len(columns))
    return sum(
        weights[c] * (np.asarray(batch[c], dtype=np.float64) - moments[c][0]) / moments[c][1] for c in columns
    )


def quantile_selection(scores, args) -> tuple[float, list[int]]:
    """(the cut, the block ids at or above it), read in batches from the (memory-mapped) scores."""
    cut, moments = quantile_cut(scores, args)
    columns = score_columns(scores, args.tasks)

    def above(batch):
        return (combine(batch, columns, moments, args) >= cut).tolist()

    kept = (
        scores.select_columns(["block_id", *columns])
        .with_format("numpy")
        .filter(above, batched=True, batch_size=10_000, desc="keeping scores above the sampled cut")
    )
    return cut, [int(b) for b in kept["block_id"]]


def dsir_log_weights(args, candidates) -> np.ndarray:
    """DSIR's log importance weight of every candidate towards the tasks' select halves."""
    from .data import DataError, load_eval_datasets

    try:
        targets = load_eval_datasets(args.target_sets, args.tasks, "select")
    except (DataError, FileNotFoundError) as error:
        raise SelectionError(f"dsir: cannot read target_sets {args.target_sets}: {error}") from error
    if not targets:
        raise SelectionError(f"dsir: no task's select half in {args.target_sets}")
    target_ids = [ids for dataset in targets.values() for ids in dataset["input_ids"]]
    return importance_log_weights(candidates["input_ids"], target_ids, hash_bits=args.dsir_hash_bits)


def filter_blocks(candidates, table: dict[str, np.ndarray], keep: set[int], prefix: str = "influence_"):
    """The candidates with their scores as columns (`influence_<task>`, or `predicted_<task>` when
    they are stage 05's predictions), filtered to `keep` by `datasets.filter`."""
    for task, values in table.items():
        candidates = candidates.add_column(f"{prefix}{task}", values.tolist())
    return candidates.filter(
        lambda ids: [int(b) in keep for b in ids], input_columns="block_id", batched=True, desc="selecting"
    )


def shares_kept(candidates, kept: np.ndarray, documents, column: str = "package") -> list[dict]:
    """Per value of a document column (package, source) of a block's first document: candidates,
    kept, and the share kept."""
    value_of = dict(zip(documents["doc_id"], documents[column], strict=True))
    values = [value_of.get(doc_ids[0], "?") for doc_ids in candidates["doc_ids"]]
    total = Counter(values)
    kept_counts = Counter(values[i] for i in kept)
    rows = [
        {column: v, "candidates": total[v], "kept": kept_counts[v], "share_kept": kept_counts[v] / total[v]}
        for v in total
    ]
    return sorted(rows, key=lambda r: -r["candidates"])


MAX_SHARD_BYTES = 500 * 1024**2  # the Hub's advice for parquet files


def write_parquet_shards(
    blocks, folder: Path, max_shard_bytes: int = MAX_SHARD_BYTES, on_shard=None
) -> list[Path]:
    """`train-XXXXX-of-NNNNN.parquet` files of at most about `max_shard_bytes` each, contiguous
    and in order, written one at a time (each a memory-mapped slice of the kept blocks);
    `on_shard(path)` runs as each one is finished (e.g. uploads it)."""
    folder.mkdir(parents=True, exist_ok=True)
    # a filtered Dataset maps indices into its whole table: its own share of the table's bytes
    size = max(1, blocks.data.nbytes * len(blocks) // max(1, blocks.data.num_rows))
    n_shards = max(1, math.ceil(size / max_shard_bytes)) if len(blocks) else 1
    n_shards = min(n_shards, max(1, len(blocks)))
    paths = []
    for index in range(n_shards):
        path = folder / f"train-{index:05d}-of-{n_shards:05d}.parquet"
        blocks.shard(num_shards=n_shards, index=index, contiguous=True).to_parquet(str(path))
        paths.append(path)
        if on_shard is not None:
            on_shard(path)
    return paths


def shard_uploader(repo_id: str, revision: str | None = None):
    """Uploads one finished shard to `data/` of a Hub dataset repo (created if needed), so a long
    selection publishes as it goes; the card comes later with stage 07's export."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", exist_ok=True)

    def upload(path: Path) -> None:
        api.upload_file(
            path_or_fileobj=str(path),
            path_in_repo=f"data/{path.name}",
            repo_id=repo_id,
            repo_type="dataset",
            revision=revision,
            commit_message=f"codesift: selected blocks, {path.name}",
        )
        logger.info("uploaded %s to %s", path.name, repo_id)

    return upload


def write_selection(
    selection: Selection,
    output_dir,
    candidates=None,
    documents=None,
    max_shard_bytes: int = MAX_SHARD_BYTES,
    on_shard=None,
) -> dict:
    """The kept blocks (`save_to_disk` under blocks/, and parquet shards under data/ for publishing),
    the metadata, the per-package shares and plots; written whole or not at all. Returns the report."""
    with atomic_directory(output_dir) as tmp:
        save_to_disk(selection.blocks, tmp / "blocks")
        write_parquet_shards(selection.blocks, tmp / "data", max_shard_bytes, on_shard)
        report = dict(selection.metadata)
        if documents is not None and candidates is not None and "doc_ids" in candidates.column_names:
            report["sources"] = shares_kept(candidates, selection.kept, documents, "source")
            report["packages"] = shares_kept(candidates, selection.kept, documents, "package")
            plot_package_shares(report["packages"], tmp / "plots" / "kept_by_package.png")
        if selection.values is not None:
            plot_selection_histogram(
                selection.values, selection.kept, report["name"], tmp / "plots" / "score_histogram.png"
            )
        write_json(tmp / "selection.json", report)
    return report


def load_documents(path: str | None):
    if not path:
        return None
    from datasets import load_from_disk

    if not (Path(path) / "dataset_info.json").is_file():
        logger.warning("no documents at %s: the per-package report is skipped", path)
        return None
    return load_from_disk(str(path))


def run_selection_stage(args) -> dict:
    """Select as the recipe says and write the result to `args.output_dir`; returns the report
    (selection.json's content)."""
    set_seed(args.seed)
    check_arguments(args)
    candidates = load_candidates(args.candidates, args.candidates_split, args.max_candidates)
    selection = select(args, candidates)
    on_shard = shard_uploader(args.push_shards_to, args.push_revision) if args.push_shards_to else None
    report = write_selection(
        selection, args.output_dir, candidates, load_documents(args.documents), on_shard=on_shard
    )
    logger.info(
        "%s kept %d of %d blocks (%d tokens) -> %s",
        selection.metadata["name"],
        selection.metadata["kept_blocks"],
        selection.metadata["candidates_total"],
        selection.metadata["kept_tokens"],
        args.output_dir,
    )
    return report
