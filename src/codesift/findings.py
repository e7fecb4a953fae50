"""The paper's findings as numbers with intervals: agreement of scores across training stages,
methods and tasks, the stability of extreme scores, and what beneficial blocks look like.

Every function takes plain arrays (or {block_id: score} maps) and returns numbers, so the same
functions serve the report script, the notebook and the tests; the figures draw what they return.
Intervals are percentile bootstraps over blocks, seeded.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .stats import ranks, spearman


def top_set(values, share: float) -> set[int]:
    """Positions of the `share` highest values (at least one)."""
    k = max(1, int(round(share * len(values))))
    return set(np.argsort(-np.asarray(values), kind="stable")[:k].tolist())


def bottom_set(values, share: float) -> set[int]:
    return top_set(-np.asarray(values, dtype=np.float64), share)


def overlap(a: set, b: set) -> float:
    """|a & b| / |a|: the share of a's members that b also holds."""
    return len(a & b) / len(a) if a else float("nan")


def aligned(first: dict, second: dict) -> tuple[np.ndarray, np.ndarray, list]:
    """The two score maps on the blocks both hold, in block order."""
    blocks = sorted(set(first) & set(second))
    return (
        np.array([first[b] for b in blocks], dtype=np.float64),
        np.array([second[b] for b in blocks], dtype=np.float64),
        blocks,
    )


def bootstrap(statistic: Callable, *arrays, n: int = 1000, seed: int = 0, level: float = 0.95, clusters=None):
    """(point, low, high): the statistic on the arrays, and a percentile interval from resampling
    their rows together; with `clusters` (a label per row: the block's document or package), whole
    clusters are resampled, since blocks of one file are not independent draws. Hand-written, not
    `scipy.stats.bootstrap`: scipy resamples rows only (no clusters) and returns a NaN interval when
    any draw is undefined (a resample of all-tied feature values), where this one drops such draws."""
    arrays = [np.asarray(a) for a in arrays]
    point = statistic(*arrays)
    rng = np.random.default_rng(seed)
    size = len(arrays[0])
    members = cluster_members(clusters) if clusters is not None else None
    draws = []
    for _ in range(n):
        if members is None:
            rows = rng.integers(0, size, size)
        else:
            rows = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        value = statistic(*[a[rows] for a in arrays])
        if np.isfinite(value):
            draws.append(value)
    if not draws:
        return float(point), float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(point), float(low), float(high)


def cluster_members(clusters) -> list[np.ndarray]:
    """The row positions of each cluster label, in first-seen order."""
    labels = np.asarray(clusters)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    return [np.flatnonzero(inverse == k) for k in order]


def agreement(score_sets: dict[str, dict], share: float = 0.2) -> dict:
    """Every pair of score sets (checkpoints, methods or tasks) on their common blocks: Spearman and
    the overlap of their top `share`. Returns {"labels", "spearman", "top_overlap"} (matrices)."""
    labels = list(score_sets)
    size = len(labels)
    rho, top = np.eye(size), np.eye(size)
    for i in range(size):
        for j in range(i + 1, size):
            a, b, _ = aligned(score_sets[labels[i]], score_sets[labels[j]])
            rho[i, j] = rho[j, i] = spearman(a, b)
            top[i, j] = top[j, i] = overlap(top_set(a, share), top_set(b, share))
    return {"labels": labels, "spearman": rho, "top_overlap": top}


def rank_changes(first: dict, second: dict, count: int = 10) -> list[dict]:
    """The blocks whose rank moves most between two score sets (rank as a share of the pool: 0 is
    the lowest score, 1 the highest)."""
    a, b, blocks = aligned(first, second)
    scale = max(1, len(blocks) - 1)
    moved = (ranks(b) - ranks(a)) / scale
    order = np.argsort(-np.abs(moved), kind="stable")[:count]
    return [
        {
            "block_id": blocks[i],
            "rank_first": ranks(a)[i] / scale,
            "rank_second": ranks(b)[i] / scale,
            "moved": moved[i],
        }
        for i in order
    ]


def extreme_overlaps(a, b, share: float = 0.05) -> dict:
    """Do the extremes of one ranking stay extreme in another (arrays over the same blocks)? The
    share of a's top (and bottom) `share` that is also in b's, next to the same for the middle
    band of that size and to chance (`share`)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    k = max(1, int(round(share * len(a))))
    start = (len(a) - k) // 2
    middle_a = set(np.argsort(a, kind="stable")[start : start + k].tolist())
    middle_b = set(np.argsort(b, kind="stable")[start : start + k].tolist())
    return {
        "top": overlap(top_set(a, share), top_set(b, share)),
        "bottom": overlap(bottom_set(a, share), bottom_set(b, share)),
        "middle": overlap(middle_a, middle_b),
        "chance": k / len(a),
    }


def copula_null_extremes(spearman_rho: float, size: int, share: float, draws: int = 500, seed: int = 0):
    """What correlation alone predicts for the extremes: the share of the top and bottom `share`
    kept (their mean) between two score sets drawn from a Gaussian copula with the same Spearman
    (Pearson r = 2 sin(pi rho / 6)) and no tail structure of its own, `draws` times."""
    r = float(np.clip(2 * np.sin(np.pi * spearman_rho / 6), -0.999999, 0.999999))
    rng = np.random.default_rng(seed)
    k = max(1, int(round(share * size)))
    kept = np.empty(draws)
    for i in range(draws):
        x = rng.standard_normal(size)
        y = r * x + np.sqrt(1 - r * r) * rng.standard_normal(size)
        kept[i] = (_kept(x, y, k) + _kept(-x, -y, k)) / 2
    return kept


def _kept(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """Share of x's top k that is in y's top k."""
    return np.intersect1d(np.argpartition(-x, k - 1)[:k], np.argpartition(-y, k - 1)[:k]).size / k


def extremes_beyond_correlation(a, b, share: float = 0.05, draws: int = 500, seed: int = 0) -> dict:
    """Are the extremes stable beyond what the rank correlation predicts? The observed share of the
    top and bottom `share` kept, against its distribution under a Gaussian copula with the same
    Spearman. `stable` is "yes" when fewer than 5% of null draws keep as much (one-sided), else
    "no": correlation alone explains the overlap. (A middle-band control cannot say this: any
    positive correlation keeps the extremes more than the middle.)"""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    found = extreme_overlaps(a, b, share)
    observed = (found["top"] + found["bottom"]) / 2
    rho = spearman(a, b)
    null = copula_null_extremes(rho, len(a), share, draws, seed)
    p_value = float((1 + np.sum(null >= observed)) / (1 + draws))
    low, high = np.percentile(null, [2.5, 97.5])
    return {
        **found,
        "extremes": observed,
        "spearman": rho,
        "null_mean": float(null.mean()),
        "null_low": float(low),
        "null_high": float(high),
        "p_value": p_value,
        "stable": "yes" if p_value < 0.05 else "no",
    }


def extreme_stability(first: dict, second: dict, share: float = 0.05) -> dict:
    """extreme_overlaps of two {block_id: score} maps on the blocks both hold."""
    a, b, _ = aligned(first, second)
    return extreme_overlaps(a, b, share)


def group_means(values, groups, n: int = 1000, seed: int = 0) -> dict:
    """{group: (mean, low, high)} of the values of each group (e.g. z-scores by block language)."""
    values, groups = np.asarray(values, dtype=np.float64), np.asarray(groups)
    return {
        str(group): bootstrap(np.mean, values[groups == group], n=n, seed=seed)
        for group in sorted(set(groups.tolist()))
    }


def top_shares(values, groups, share: float = 0.2) -> dict:
    """{group: (share of the top `share` that the group holds, share of the pool it holds)}."""
    groups = np.asarray(groups)
    top = np.array(sorted(top_set(values, share)))
    return {
        str(group): (float(np.mean(groups[top] == group)), float(np.mean(groups == group)))
        for group in sorted(set(groups.tolist()))
    }


def group_difference(values, groups, first: str, second: str, n: int = 1000, seed: int = 0, clusters=None):
    """(point, low, high) of mean(values of `first`) - mean(values of `second`), blocks resampled,
    or whole clusters (documents, packages) when `clusters` labels each block."""

    def difference(v, g):
        a, b = v[g == first], v[g == second]
        return float(np.mean(a) - np.mean(b)) if len(a) and len(b) else float("nan")

    return bootstrap(
        difference,
        np.asarray(values, dtype=np.float64),
        np.asarray(groups),
        n=n,
        seed=seed,
        clusters=clusters,
    )


def language_by_task(z_by_task: dict[str, np.ndarray], languages) -> tuple[list[str], list[str], np.ndarray]:
    """(block languages, tasks, M): M[i, j] is the mean z-score on task j of the blocks of language i."""
    languages = np.asarray(languages)
    rows = sorted(set(languages.tolist()))
    tasks = list(z_by_task)
    matrix = np.array([[float(np.mean(z_by_task[t][languages == lang])) for t in tasks] for lang in rows])
    return rows, tasks, matrix


def task_language(task: str) -> str:
    """The language a task's problems are written in, as blocks name it (HumanEval-X's js is javascript)."""
    if task.startswith("humaneval_x_"):
        language = task.removeprefix("humaneval_x_")
        return {"js": "javascript"}.get(language, language)
    return "python"


def feature_effects(features: dict[str, np.ndarray], score, n: int = 1000, seed: int = 0) -> dict:
    """{feature: (Spearman with the score, low, high)}: effect sizes with intervals."""
    return {name: bootstrap(spearman, values, score, n=n, seed=seed) for name, values in features.items()}


# "As alike as two runs": a gap to the run-to-run ceiling whose whole interval stays below this.
SAME_WITHIN = 0.1


def aligned_many(*maps: dict) -> list[np.ndarray]:
    """Arrays of each {block_id: score} map over the blocks all of them hold, in block order."""
    ids = sorted(set.intersection(*(set(m) for m in maps)))
    return [np.asarray([m[b] for b in ids], dtype=np.float64) for m in maps]


def varies_beyond_runs(pair, replicates, n: int = 1000, seed: int = 0, within: float = SAME_WITHIN) -> dict:
    """Do two score sets rank blocks less alike than two independently seeded runs rank the same
    quantity? `pair` is (a, b); each of `replicates` is (x, y), one score set from two warm-ups that
    differ only in their seed; all arrays are aligned by block. The ceiling is the lowest replicate
    Spearman, the gap the ceiling minus the pair's; its interval resamples blocks (every array
    together). 'yes' when the gap's interval lies above 0 (they differ more than runs do), 'no' when
    it lies below `within` (as alike as two runs, give or take that), else 'unclear'. A fixed
    threshold cannot say "no": two noisy runs of one setting already disagree."""
    if not replicates:
        raise ValueError("varies_beyond_runs needs at least one replicate pair: the run-to-run ceiling")
    arrays = [*pair, *(a for xy in replicates for a in xy)]

    def gap(a, b, *rest):
        ceiling = min(spearman(rest[i], rest[i + 1]) for i in range(0, len(rest), 2))
        return ceiling - spearman(a, b)

    point, low, high = bootstrap(gap, *arrays, n=n, seed=seed)
    verdict = "yes" if low > 0 else ("no" if high < within else "unclear")
    return {
        "spearman": spearman(*pair),
        "ceiling": min(spearman(x, y) for x, y in replicates),
        "gap": (point, low, high),
        "varies": verdict,
    }


def agrees(claim: str, low: float, high: float) -> str:
    """'yes' / 'no' / 'unclear' for a claim about a number's sign, given its interval."""
    if claim == "positive":
        return "yes" if low > 0 else ("no" if high < 0 else "unclear")
    if claim == "negative":
        return "yes" if high < 0 else ("no" if low > 0 else "unclear")
    raise ValueError(f"unknown claim {claim!r}; positive or negative")


def findings_table(rows: list[dict]) -> str:
    """Markdown: finding | paper | tiny run | agrees?"""
    lines = ["| finding | paper | tiny run | agrees? |", "|---|---|---|---|"]
    lines += [f"| {r['finding']} | {r['paper']} | {r['measured']} | {r['agrees']} |" for r in rows]
    return "\n".join(lines)
