"""Reading scores back: every (step, method) under an output folder, correlations, block features."""

from __future__ import annotations

import re

import numpy as np

# Imported inside the functions that use them (heavy or optional): datasets, pandas.


def score_tasks(scores) -> list[str]:
    return [c.removeprefix("influence_") for c in scores.column_names if c.startswith("influence_")]


def ranks(values) -> np.ndarray:
    """0-based ranks; tied values share their average rank (so Spearman does not depend on the
    order of tied blocks, e.g. a feature that is 1 for most of them): scipy's `rankdata`."""
    from scipy.stats import rankdata

    return rankdata(np.asarray(values, dtype=np.float64), method="average") - 1.0


def spearman(a, b) -> float:
    """scipy's Spearman; NaN where either side is constant (no ranking to compare)."""
    import warnings

    from scipy.stats import ConstantInputWarning, spearmanr

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        return float(spearmanr(a, b).statistic)


def top_overlap(a, b, fraction: float = 0.2) -> float:
    """Jaccard overlap of the top `fraction` by each score."""
    k = max(1, int(round(fraction * len(a))))
    top_a, top_b = set(np.argsort(-np.asarray(a))[:k]), set(np.argsort(-np.asarray(b))[:k])
    return len(top_a & top_b) / len(top_a | top_b)


def common_blocks(first, second):
    """The two score sets restricted to the blocks both scored, in the same order."""
    shared = set(first["block_id"]) & set(second["block_id"])

    def pick(scores):
        rows = sorted((b, i) for i, b in enumerate(scores["block_id"]) if b in shared)
        return scores.select([i for _, i in rows])

    return pick(first), pick(second)


def task_correlations(scores) -> tuple[list[str], np.ndarray]:
    tasks = score_tasks(scores)
    matrix = np.array(
        [[spearman(scores[f"influence_{a}"], scores[f"influence_{b}"]) for b in tasks] for a in tasks]
    )
    return tasks, matrix


def fidelity(exact, fast) -> dict[str, dict[str, float]]:
    """Spearman and top-20% Jaccard of a fast method against the exact scores, per task."""
    exact, fast = common_blocks(exact, fast)
    return {
        task: {
            "spearman": spearman(exact[f"influence_{task}"], fast[f"influence_{task}"]),
            "top20_jaccard": top_overlap(exact[f"influence_{task}"], fast[f"influence_{task}"]),
            "candidates": len(exact),
        }
        for task in score_tasks(exact)
    }


DOCSTRING_RE = re.compile(r'("""|\'\'\')(.*?)(\1|$)', re.DOTALL)


def comment_share(text: str) -> float:
    """Share of characters in comments and docstrings (a block is a fragment, so approximate)."""
    if not text:
        return 0.0
    prose = sum(len(m.group(0)) for m in DOCSTRING_RE.finditer(text))
    without = DOCSTRING_RE.sub("", text)
    prose += sum(len(line) - len(line.split("#", 1)[0]) for line in without.splitlines() if "#" in line)
    return prose / len(text)


def block_features(candidates, documents, tokenizer):
    """A pandas frame per candidate block: text, its first document's package, source and language,
    the number of documents it spans, its comment/docstring share."""
    import pandas as pd

    meta = {
        d: (p, s, lang)
        for d, p, s, lang in zip(
            documents["doc_id"], documents["package"], documents["source"], documents["language"], strict=True
        )
    }
    rows = []
    for block_id, ids, doc_ids in zip(
        candidates["block_id"], candidates["input_ids"], candidates["doc_ids"], strict=True
    ):
        text = tokenizer.decode(ids)
        package, source, language = meta.get(doc_ids[0], ("?", "?", "?"))
        rows.append(
            {
                "block_id": block_id,
                "text": text,
                "package": package,
                "source": source,
                "language": language,
                "documents": len(doc_ids),
                "comment_share": comment_share(text),
                "newline_share": text.count("\n") / max(1, len(text)),
            }
        )
    return pd.DataFrame(rows).set_index("block_id")
