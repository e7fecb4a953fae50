"""The findings report (`make report`): what the scores say about the paper's second question,
how beneficial data vary across training stages, tasks and languages, with every number's interval,
its figure and the paper's claim beside it. Numbers come from `codesift.findings`; this module
loads the stage-03 scores, draws, and writes `report.md` (beside its figures' folder).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import load_candidates, load_scores, not_the_table
from .errors import CodesiftError
from .findings import (
    SAME_WITHIN,
    agreement,
    agrees,
    aligned,
    aligned_many,
    bootstrap,
    extremes_beyond_correlation,
    feature_effects,
    findings_table,
    group_difference,
    language_by_task,
    spearman,
    task_language,
    top_set,
    top_shares,
    varies_beyond_runs,
)
from .plots import plot_correlation_heatmap, plot_effect_intervals, plot_group_heatmap
from .prepare.filters import code_tokens
from .report_page import write_report_page
from .stats import DOCSTRING_RE, score_tasks
from .utils import atomic_directory, project_root, write_json

# Imported inside the functions that use them (heavy or optional): datasets, transformers.

logger = logging.getLogger(__name__)

# A bootstrap over fewer packages than this has a handful of distinct draws: its interval is no
# interval, so a language finding resting on so few packages is "unclear" whatever it shows.
MIN_CLUSTERS = 5


@dataclass
class Report:
    rows: list[dict] = field(default_factory=list)  # the findings table
    sections: list[str] = field(default_factory=list)  # markdown, figures included
    numbers: dict = field(default_factory=dict)  # everything, for report.json
    link_prefix: str = ""  # report.md sits beside the figures' folder: links start with its name


def interval(point, low, high) -> str:
    return f"{point:.2f} [{low:.2f}, {high:.2f}]"


def varies_row(pair: tuple, replicates: list, args) -> tuple[str, str]:
    """(measured, verdict) for "these two rankings differ": against the run-to-run ceiling when a
    second warm-up's scores exist, else unclear (no fixed threshold stands in for it)."""
    if not replicates:
        return "no run-to-run ceiling (make report's second warm-up)", "unclear"
    found = varies_beyond_runs(pair, replicates, n=args.bootstrap, seed=args.seed)
    point, low, high = found["gap"]
    return (
        f"two seeds of the warm-up agree at {found['ceiling']:.2f}; gap to it {interval(point, low, high)}",
        found["varies"],
    )


def score_map(scores, task: str) -> dict:
    return dict(zip(scores["block_id"], scores[f"influence_{task}"], strict=True))


def figure(report: Report, path: Path, root: Path, text: str) -> None:
    link = report.link_prefix + path.relative_to(root).as_posix()
    report.sections.append(f"![{text}]({link})\n\n*Figure.* {text}\n")


def training_stages(report: Report, found: dict, method: str, args, root: Path, replicate=None) -> None:
    """Scores at the first and last checkpoints against each other; `replicate`: the last step's
    scores from a second warm-up seeded apart (the ceiling "varies" is tested against)."""
    steps = sorted(step for step, m in found if m == method)
    if len(steps) < 2:
        report.rows.append(
            {
                "finding": "beneficial data change across training stages",
                "paper": "they vary across training stages",
                "measured": f"not measured: {method} scores at {len(steps)} checkpoint(s)",
                "agrees": "-",
            }
        )
        return
    tasks = score_tasks(found[(steps[0], method)])
    report.sections.append("## Training stages\n")
    for task in tasks:
        maps = {f"step {s}": score_map(found[(s, method)], task) for s in steps}
        matrix = agreement(maps, args.top_share)
        path = root / "figures" / f"stages_{task}.png"
        plot_correlation_heatmap(
            matrix["spearman"], matrix["labels"], f"{task}: {method} across checkpoints", path
        )
        a, b, _ = aligned(maps[f"step {steps[0]}"], maps[f"step {steps[-1]}"])
        rho = bootstrap(spearman, a, b, n=args.bootstrap, seed=args.seed)
        top = matrix["top_overlap"][0][-1]
        first, last = maps[f"step {steps[0]}"], maps[f"step {steps[-1]}"]
        if replicate is not None:
            first, last, again = aligned_many(first, last, score_map(replicate, task))
            measured, verdict = varies_row((first, last), [(last, again)], args)
        else:
            measured, verdict = varies_row((a, b), [], args)
        report.numbers[f"stages_{task}"] = {
            "spearman_first_last": rho,
            "top_overlap_first_last": top,
            "against_runs": measured,
        }
        figure(
            report,
            path,
            root,
            f"{task}: Spearman between the {method} scores of every pair of checkpoints ({len(a)} blocks). "
            f"Step {steps[0]} against step {steps[-1]}: {interval(*rho)}; "
            f"{top:.0%} of one's top {args.top_share:.0%} is in the other's.",
        )
        report.rows.append(
            {
                "finding": f"beneficial data change across training stages ({task}, step {steps[0]} vs {steps[-1]})",
                "paper": "they vary across training stages",
                "measured": f"Spearman {interval(*rho)}, top-{args.top_share:.0%} overlap {top:.2f}; {measured}",
                "agrees": verdict,
            }
        )


def tasks_and_languages(
    report: Report, scores, pool_scores, candidates, args, root: Path, clusters=None, replicate=None
) -> None:
    """`scores`: the last checkpoint's scores against every task (the task x task matrix);
    `pool_scores`: the recipe's own scores of the whole pool (every language's blocks);
    `replicate`: `scores` again from a second warm-up seeded apart (the run-to-run ceiling)."""
    tasks = score_tasks(scores)
    report.sections.append("## Tasks and languages\n")
    if len(tasks) > 1:
        maps = {task: score_map(scores, task) for task in tasks}
        matrix = agreement(maps, args.top_share)
        path = root / "figures" / "tasks.png"
        plot_correlation_heatmap(matrix["spearman"], tasks, "Spearman between tasks' scores", path)
        a, b, _ = aligned(maps[tasks[0]], maps[tasks[1]])
        rho = bootstrap(spearman, a, b, n=args.bootstrap, seed=args.seed)
        if replicate is not None:  # each task's ranking against itself in the other run
            one, two, one_again, two_again = aligned_many(
                maps[tasks[0]], maps[tasks[1]], score_map(replicate, tasks[0]), score_map(replicate, tasks[1])
            )
            measured, verdict = varies_row((one, two), [(one, one_again), (two, two_again)], args)
        else:
            measured, verdict = varies_row((a, b), [], args)
        report.numbers["tasks"] = {
            "labels": tasks,
            "spearman": matrix["spearman"].tolist(),
            "first_pair": rho,
        }
        figure(
            report,
            path,
            root,
            f"Spearman between every pair of tasks' scores ({len(a)} blocks); {tasks[0]} against {tasks[1]}: "
            f"{interval(*rho)}.",
        )
        report.rows.append(
            {
                "finding": f"beneficial data differ by task ({tasks[0]} vs {tasks[1]})",
                "paper": "they vary across tasks",
                "measured": f"Spearman {interval(*rho)}; {measured}",
                "agrees": verdict,
            }
        )
    block_languages = block_language_map(candidates)
    languages = sorted(set(block_languages.values()))
    if len(languages) >= 2:
        languages_section(report, pool_scores, block_languages, args, root, clusters or {})
        return
    if len(languages) < 2:
        report.rows.append(
            {
                "finding": "data in a task's language help it more",
                "paper": "beneficial data vary across languages",
                "measured": f"not measurable: the corpus holds {', '.join(languages) or 'no'} documents only",
                "agrees": "-",
            }
        )


def block_packages(candidates, documents) -> dict:
    """{block_id: the package of its first document} (the cluster a block's interval resamples);
    without documents, the first document itself."""
    if "doc_ids" not in candidates.column_names:
        return {}
    first = {
        b: ids[0] if ids else f"block {b}"
        for b, ids in zip(candidates["block_id"], candidates["doc_ids"], strict=True)
    }
    if documents is None or "package" not in documents.column_names:
        return first
    package = dict(zip(documents["doc_id"], documents["package"], strict=True))
    return {b: package.get(doc, doc) for b, doc in first.items()}


def block_language_map(candidates) -> dict:
    if "language" not in candidates.column_names:
        return {}
    return dict(zip(candidates["block_id"], candidates["language"], strict=True))


def languages_section(
    report: Report, scores, block_languages: dict, args, root: Path, clusters: dict
) -> None:
    """Mean z-score by block language x task, each language's share of every task's top, and for
    each task whose language the pool holds: its own language's blocks against Python's, with an
    interval that resamples whole packages (`clusters`: block -> package), since a language's blocks
    may come from a handful of packages."""
    tasks = score_tasks(scores)
    ids = [b for b in scores["block_id"] if b in block_languages]
    groups = np.asarray([block_languages[b] for b in ids])
    maps = {t: score_map(scores, t) for t in tasks}  # once per task: a map per block would be quadratic
    z = {t: zscores(np.asarray([maps[t][b] for b in ids], dtype=np.float64)) for t in tasks}
    rows, columns, matrix = language_by_task(z, groups)
    counts = {lang: int(np.sum(groups == lang)) for lang in rows}
    report.numbers["languages"] = {"blocks": counts, "tasks": columns, "mean_z": matrix.tolist()}
    path = root / "figures" / "languages.png"
    plot_group_heatmap(
        matrix, [f"{lang} ({counts[lang]})" for lang in rows], columns, "mean z-score by block language", path
    )
    figure(
        report,
        path,
        root,
        "Mean z-score of each task's scores over the blocks of each language (blocks in brackets): a "
        "row above 0 in a column means that language's blocks help that task more than the average block.",
    )
    shares = {t: top_shares(z[t], groups, args.top_share) for t in tasks}
    report.numbers["language_top_shares"] = shares
    header = "| task | " + " | ".join(f"{lang} top / pool" for lang in rows) + " |"
    lines = [header, "|" + "---|" * (len(rows) + 1)]
    for task in tasks:
        lines.append(
            f"| {task} | "
            + " | ".join(f"{shares[task][lang][0]:.2f} / {shares[task][lang][1]:.2f}" for lang in rows)
            + " |"
        )
    report.sections.append(
        f"Share of each language in each task's top {args.top_share:.0%} against its share of the pool:\n\n"
        + "\n".join(lines)
        + "\n"
    )
    for task in tasks:
        own = task_language(task)
        if own == "python" or counts.get(own, 0) < 5 or counts.get("python", 0) < 5:
            continue
        labels = np.asarray([clusters.get(b, f"block {b}") for b in ids])
        effect = group_difference(
            z[task], groups, own, "python", n=args.bootstrap, seed=args.seed, clusters=labels
        )
        packages = {lang: len(set(labels[groups == lang].tolist())) for lang in (own, "python")}
        report.numbers[f"own_language {task}"] = {"effect": effect, "clusters": packages}
        report.rows.append(
            {
                "finding": f"{own} blocks help {task} more than Python blocks do",
                "paper": "beneficial data vary across languages (assumed here: a task's own language helps it most)",
                "measured": f"mean z, {own} minus python: {interval(*effect)} ({counts[own]} vs {counts['python']} "
                f"blocks from {packages[own]} vs {packages['python']} packages; interval over packages)",
                "agrees": agrees("positive", effect[1], effect[2])
                if min(packages.values()) >= MIN_CLUSTERS
                else "unclear",
            }
        )
    missing = [t for t in tasks if task_language(t) != "python" and counts.get(task_language(t), 0) < 5]
    for task in missing:
        report.rows.append(
            {
                "finding": f"{task_language(task)} blocks help {task} more than Python blocks do",
                "paper": "beneficial data vary across languages",
                "measured": f"not measurable: {counts.get(task_language(task), 0)} {task_language(task)} blocks in the pool",
                "agrees": "-",
            }
        )


def zscores(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / (values.std() or 1.0)


def extremes(report: Report, found: dict, method: str, args, root: Path) -> None:
    """Extremes across checkpoints (first vs last) and across methods (fast vs exact)."""
    pairs = []
    steps = sorted(step for step, m in found if m == method)
    if len(steps) > 1:
        pairs.append(
            (f"step {steps[0]} vs {steps[-1]}", found[(steps[0], method)], found[(steps[-1], method)])
        )
    exact_steps = [s for s, m in found if m == "exact"]
    for step in exact_steps:
        if (step, method) in found:
            pairs.append((f"{method} vs exact, step {step}", found[(step, method)], found[(step, "exact")]))
    if not pairs:
        report.rows.append(
            {
                "finding": "extreme scores are stable",
                "paper": "extreme-scoring samples consistently influence the model",
                "measured": "not measured: needs two checkpoints or exact scores",
                "agrees": "-",
            }
        )
        return
    report.sections.append("## Extreme scores\n")
    effects = {}
    for label, first, second in pairs:
        for task in score_tasks(first):  # every task: one task's extremes say nothing of another's
            if task not in score_tasks(second):
                continue
            a, b, _ = aligned(score_map(first, task), score_map(second, task))
            share = args.extreme_share if len(a) * args.extreme_share >= 5 else 5 / len(a)  # >= 5 blocks
            found = extremes_beyond_correlation(a, b, share, draws=args.bootstrap, seed=args.seed)
            effects[f"{task}, {label}"] = (
                found["extremes"] - found["null_mean"],
                found["null_low"] - found["null_mean"],
                found["null_high"] - found["null_mean"],
            )
            report.numbers[f"extremes {task}, {label}"] = found
            report.rows.append(
                {
                    "finding": f"extreme scores are stable ({task}, {label})",
                    "paper": "extreme-scoring samples consistently influence the model",
                    "measured": f"top {found['top']:.2f}, bottom {found['bottom']:.2f} kept; a Gaussian copula at "
                    f"the same Spearman ({found['spearman']:.2f}) keeps {found['null_mean']:.2f} "
                    f"[{found['null_low']:.2f}, {found['null_high']:.2f}]; p = {found['p_value']:.3f}",
                    "agrees": found["stable"],
                }
            )
    path = root / "figures" / "extremes.png"
    plot_effect_intervals(
        effects,
        "extremes kept beyond what the rank correlation predicts",
        "share kept, observed minus the copula null (bar: the null's 95% range)",
        path,
    )
    figure(
        report,
        path,
        root,
        f"For the top and bottom {args.extreme_share:.0%} of each task's scores, the share that stays in place "
        "between checkpoints and between methods, minus what a Gaussian copula with the same Spearman keeps; "
        "the bar is the copula's 95% range. A dot right of its bar: the extremes are more stable than "
        "correlation alone makes them.",
    )


def beneficial_blocks(report: Report, scores, candidates, documents, tokenizer, args, root: Path) -> None:
    from .stats import block_features

    frame = block_features(candidates, documents, tokenizer)
    if "candidate_loss" in scores.column_names:
        frame["own_loss"] = frame.index.map(
            dict(zip(scores["block_id"], scores["candidate_loss"], strict=True))
        )
    frame["line_length"] = [np.mean([len(x) for x in t.splitlines()] or [0]) for t in frame["text"]]
    frame["test_code"] = [float("assert" in t or "def test" in t) for t in frame["text"]]
    frame["docstring_share"] = [docstring_share(t) for t in frame["text"]]
    frame["identifier_share"] = [identifier_share(t) for t in frame["text"]]
    frame["repeated_lines"] = [repeated_lines(t) for t in frame["text"]]
    columns = [
        "comment_share",
        "docstring_share",
        "identifier_share",
        "repeated_lines",
        "newline_share",
        "documents",
        "line_length",
        "test_code",
        "own_loss",
    ]
    columns = [c for c in columns if c in frame.columns]
    report.sections.append("## What beneficial blocks look like\n")
    for task in score_tasks(scores):
        values = frame.index.map(score_map(scores, task)).to_numpy(dtype=np.float64)
        effects = feature_effects(
            {c: frame[c].to_numpy(dtype=np.float64) for c in columns},
            values,
            n=args.bootstrap,
            seed=args.seed,
        )
        report.numbers[f"features {task}"] = effects
        path = root / "figures" / f"features_{task}.png"
        plot_effect_intervals(effects, f"{task}: block features against the score", path=path)
        name, best = max(effects.items(), key=lambda item: abs(item[1][0]))
        figure(
            report,
            path,
            root,
            f"{task}: Spearman between each block feature and its score, with 95% intervals over blocks; the "
            f"largest is {name} at {interval(*best)}.",
        )
        report.rows.append(
            {
                "finding": f"what high-scoring blocks look like ({task})",
                "paper": "characteristics of beneficial data (not itemised in the available summary)",
                "measured": f"strongest: {name} {interval(*best)}",
                "agrees": "-",
            }
        )
        top = sorted(top_set(values, 0.01))
        report.sections.append(
            f"Highest-scoring blocks for {task} (first 200 characters):\n\n"
            + "\n".join(f"```python\n{frame['text'].iloc[i][:200]}\n```" for i in top[:3])
            + "\n"
        )


def paired(cells: list[dict], arm: str, reference: str, key: str) -> tuple[float, float, int]:
    """Mean and 95% t half-width over seeds of arm minus reference on `key`, and the seed count."""
    from .intervals import mean_and_ci

    by_seed = {c["seed"]: c for c in cells if c["arm"] == reference and key in c}
    diffs = [
        c[key] - by_seed[c["seed"]][key]
        for c in cells
        if c["arm"] == arm and c["seed"] in by_seed and key in c
    ]
    mean, half = mean_and_ci(diffs)
    return mean, half, len(diffs)


def arm_rows(report: Report, cells: list[dict], tasks: list[str]) -> None:
    """The stage-06 arms that answer a finding: extremes against a random 5%, the sanity arm, and
    the compute spent on scoring spent on training instead."""
    questions = [
        (
            "top5_mean",
            "random5",
            "negative",
            "training on the top 5% beats a random 5%",
            "extreme-scoring samples consistently influence the model",
        ),
        (
            "bottom5_mean",
            "random5",
            "positive",
            "training on the bottom 5% is worse than a random 5%",
            "extreme-scoring samples consistently influence the model",
        ),
        (
            "middle5_mean",
            "random5",
            "none",
            "the middle 5% is like a random 5%",
            "(the control for the extremes)",
        ),
        (
            "reverse_mean",
            "random",
            "positive",
            "the lowest 20% by influence is worse than random",
            "(sanity: the score carries signal)",
        ),
        (
            "influence_mean",
            "equal_compute",
            "negative",
            "selection beats spending its scoring compute on more training",
            "(not in the available summary; the arm that says whether selection pays for itself)",
        ),
        (
            "influence_mean",
            "equal_compute_exact",
            "negative",
            "selection beats spending the exact probe's scoring compute on more training",
            "(not in the available summary; the exact one-step probe's bill, MATES's oracle)",
        ),
    ]
    arms = {c["arm"] for c in cells}
    for arm, reference, claim, finding, paper in questions:
        if arm not in arms or reference not in arms:
            continue
        for task in tasks:
            mean, half, seeds = paired(cells, arm, reference, f"loss/{task}/report")
            low, high = mean - half, mean + half
            if claim == "none":
                verdict = "yes" if low <= 0 <= high else "no"
            else:
                verdict = agrees(claim, low, high) if np.isfinite(half) else "unclear"
            report.numbers[f"arm {arm} - {reference} {task}"] = (mean, low, high, seeds)
            report.rows.append(
                {
                    "finding": f"{finding} ({task})",
                    "paper": paper,
                    "measured": f"report loss, {arm} minus {reference}: {mean:+.3f} "
                    + (
                        f"[{low:+.3f}, {high:+.3f}] over {seeds} seeds"
                        if np.isfinite(half)
                        else f"({seeds} seed: no interval)"
                    ),
                    "agrees": verdict,
                }
            )


def experiment_findings(report: Report, experiment_dir: Path, root: Path) -> None:
    """Rows from stage 06's cells (make table), and its cross-task figure, when they exist."""
    import json
    import shutil

    results = Path(experiment_dir) / "results.json"
    if not results.is_file():
        report.rows.append(
            {
                "finding": "extremes, baselines and cross-task transfer at equal tokens",
                "paper": "extreme-scoring samples consistently influence the model",
                "measured": f"not measured: no stage-06 results at {experiment_dir} (make table)",
                "agrees": "-",
            }
        )
        return
    other = not_the_table(results, project_root() / "recipes" / Path(experiment_dir).parent.name)
    if other:  # `make demo` or notebook 06 ran last: its shorter table, not the arms the findings read
        report.rows.append(
            {
                "finding": "extremes, baselines and cross-task transfer at equal tokens",
                "paper": "extreme-scoring samples consistently influence the model",
                "measured": f"not measured: {results} {other} (make table writes it)",
                "agrees": "-",
            }
        )
        return
    saved = json.loads(results.read_text())
    report.sections.append("## Arms trained at equal tokens (stage 06)\n")
    arm_rows(report, saved["cells"], saved["arguments"]["table_tasks"])
    matrix = Path(experiment_dir) / "cross_task.json"
    if matrix.is_file():
        cross = json.loads(matrix.read_text())
        path = root / "figures" / "cross_task.png"
        shutil.copyfile(Path(experiment_dir) / "cross_task.png", path)
        values = np.asarray(cross["matrix"], dtype=np.float64)
        report.numbers["cross_task"] = cross
        own = [
            values[i, cross["judged_on"].index(t)]
            for i, t in enumerate(cross["selected_for"])
            if t in cross["judged_on"]
        ]
        figure(
            report,
            path,
            root,
            "Selected for one task (rows), judged on every task's report half (columns): mean report loss "
            f"minus random's over seeds (blue: helped). On its own task an arm moves the loss by {np.mean(own):+.3f} "
            f"on average; on all tasks by {np.nanmean(values):+.3f}.",
        )


IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def docstring_share(text: str) -> float:
    """Share of the characters inside triple-quoted strings (docstrings, mostly)."""
    return sum(len(m.group(0)) for m in DOCSTRING_RE.finditer(text)) / max(1, len(text))


def identifier_share(text: str) -> float:
    """Share of the code tokens that are names (identifiers and keywords) rather than punctuation or numbers."""
    tokens = code_tokens(text)
    return sum(bool(IDENTIFIER.fullmatch(t)) for t in tokens) / max(1, len(tokens))


def repeated_lines(text: str) -> float:
    """Share of the non-blank lines that repeat an earlier line of the block (duplication within it)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (len(lines) - len(set(lines))) / max(1, len(lines))


def run_analysis_stage(args) -> Path:
    """Write `report.json` and `figures/` into args.output_dir (whole or not at all) and `report.md`
    beside that folder (outputs/tiny/report.md), its figures linked into it. Returns report.md's path."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    stages = load_scores(args.stages_dir)
    scored = load_scores(args.influence_dir)
    method_scores = {k: v for k, v in scored.items() if k[1] == args.method}
    if not method_scores:
        raise CodesiftError(
            f"no {args.method} scores under {args.influence_dir}: run scripts/compute_influence.py"
        )
    last = max(method_scores)
    candidates = load_candidates(args.candidates, args.candidates_split, None)
    documents = load_from_disk(args.documents) if args.documents else None
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    with atomic_directory(args.output_dir) as root:
        report = Report(link_prefix=f"{Path(args.output_dir).name}/")
        stage_last = max((k for k in stages if k[1] == args.method), default=None)
        replicate = replicate_scores(args, stage_last)
        training_stages(report, stages or scored, args.method, args, root, replicate)
        tasks_and_languages(
            report,
            stages[stage_last] if stage_last else scored[last],
            scored[last],
            candidates,
            args,
            root,
            block_packages(candidates, documents),
            replicate,
        )
        extremes(
            report,
            {**stages, **{k: v for k, v in scored.items() if k[1] == "exact"}},
            args.method,
            args,
            root,
        )
        beneficial_blocks(report, scored[last], candidates, documents, tokenizer, args, root)
        experiment_findings(report, Path(args.experiment_dir), root)
        text = "\n".join(
            [
                "# Findings on the tiny recipe\n",
                "Each of the paper's findings as a number with its 95% bootstrap interval over blocks. "
                'Two rankings "vary" when they agree less than the same scores from two warm-ups that differ '
                "only in their seed (the run-to-run ceiling; the gap's interval above 0), and are as alike as two "
                f'runs ("no") when the gap\'s interval lies below {SAME_WITHIN}; extremes are '
                '"stable" when more of the top and bottom stays in place than a Gaussian copula with the same '
                "Spearman keeps (p < 0.05).\n",
                findings_table(report.rows),
                "",
                *report.sections,
            ]
        )
        write_json(root / "report.json", {"rows": report.rows, "numbers": report.numbers})
    path = report_path(args)
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(text)
    partial.replace(path)  # whole or not at all, like the folder
    page = write_report_page(path)
    logger.info("findings report: %s and %s (figures under %s)", path, page, args.output_dir)
    return path


def replicate_scores(args, key):
    """The second warm-up's scores at the stages' last (step, method), or None (no ceiling)."""
    if not args.replicate_dir or key is None:
        return None
    found = load_scores(args.replicate_dir) if Path(args.replicate_dir).is_dir() else {}
    if key not in found:
        logger.warning(
            "no %s scores at step %d under %s: 'varies' findings are unclear",
            key[1],
            key[0],
            args.replicate_dir,
        )
        return None
    return found[key]


def report_path(args) -> Path:
    output = Path(args.output_dir)
    return output.with_name(f"{output.name}.md")
