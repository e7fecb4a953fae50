"""The findings report (`make report`): what the scores say about the paper's second question,
how beneficial data vary across training stages, tasks and languages, with every number's interval,
its figure and the paper's claim beside it. Numbers come from `codesift.findings`; this module
loads the stage-03 scores, draws, and writes `report.md`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .findings import (
    agreement,
    agrees,
    aligned,
    bootstrap,
    extreme_overlaps,
    feature_effects,
    findings_table,
    spearman,
    top_set,
)
from .influence.stats import load_scores, score_tasks
from .plots import plot_correlation_heatmap, plot_effect_intervals
from .utils import atomic_directory, write_json

# Imported inside the functions that use them (heavy or optional): datasets, transformers.

logger = logging.getLogger(__name__)

VARIES_BELOW = 0.9  # "the rankings differ" when a Spearman interval lies entirely below this


@dataclass
class Report:
    rows: list[dict] = field(default_factory=list)  # the findings table
    sections: list[str] = field(default_factory=list)  # markdown, figures included
    numbers: dict = field(default_factory=dict)  # everything, for report.json


def interval(point, low, high) -> str:
    return f"{point:.2f} [{low:.2f}, {high:.2f}]"


def varies(rho) -> str:
    """'yes' when a Spearman interval lies below VARIES_BELOW, 'no' above it, else 'unclear'."""
    return "yes" if rho[2] < VARIES_BELOW else ("no" if rho[1] >= VARIES_BELOW else "unclear")


def score_map(scores, task: str) -> dict:
    return dict(zip(scores["block_id"], scores[f"influence_{task}"], strict=True))


def figure(report: Report, path: Path, root: Path, text: str) -> None:
    report.sections.append(f"![{text}]({path.relative_to(root).as_posix()})\n\n*Figure.* {text}\n")


def training_stages(report: Report, found: dict, method: str, args, root: Path) -> None:
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
        report.numbers[f"stages_{task}"] = {"spearman_first_last": rho, "top_overlap_first_last": top}
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
                "measured": f"Spearman {interval(*rho)}, top-{args.top_share:.0%} overlap {top:.2f}",
                "agrees": varies(rho),
            }
        )


def tasks_and_languages(report: Report, scores, documents, candidates, args, root: Path) -> None:
    tasks = score_tasks(scores)
    report.sections.append("## Tasks and languages\n")
    if len(tasks) > 1:
        maps = {task: score_map(scores, task) for task in tasks}
        matrix = agreement(maps, args.top_share)
        path = root / "figures" / "tasks.png"
        plot_correlation_heatmap(matrix["spearman"], tasks, "Spearman between tasks' scores", path)
        a, b, _ = aligned(maps[tasks[0]], maps[tasks[1]])
        rho = bootstrap(spearman, a, b, n=args.bootstrap, seed=args.seed)
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
                "measured": f"Spearman {interval(*rho)}",
                "agrees": varies(rho),
            }
        )
    languages = sorted(set(documents["language"])) if documents is not None else []
    if len(languages) < 2:
        report.rows.append(
            {
                "finding": "data in a task's language help it more",
                "paper": "beneficial data vary across languages",
                "measured": f"not measurable: the corpus holds {', '.join(languages) or 'no'} documents only",
                "agrees": "-",
            }
        )


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
        task = score_tasks(first)[0]
        a, b, _ = aligned(score_map(first, task), score_map(second, task))

        share = args.extreme_share if len(a) * args.extreme_share >= 5 else 5 / len(a)  # >= 5 blocks

        def margin(x, y, share=share):
            found = extreme_overlaps(x, y, share)
            return (found["top"] + found["bottom"]) / 2 - found["middle"]

        overlaps = extreme_overlaps(a, b, share)
        effect = bootstrap(margin, a, b, n=args.bootstrap, seed=args.seed)
        effects[f"{task}, {label}"] = effect
        report.numbers[f"extremes {task}, {label}"] = {**overlaps, "margin": effect}
        report.rows.append(
            {
                "finding": f"extreme scores are stable ({task}, {label})",
                "paper": "extreme-scoring samples consistently influence the model",
                "measured": f"top {overlaps['top']:.2f}, bottom {overlaps['bottom']:.2f} kept vs middle "
                f"{overlaps['middle']:.2f} (chance {overlaps['chance']:.2f}); margin {interval(*effect)}",
                "agrees": agrees("positive", effect[1], effect[2]),
            }
        )
    path = root / "figures" / "extremes.png"
    plot_effect_intervals(
        effects, "extremes kept minus middle kept", "share kept, extremes minus middle", path
    )
    figure(
        report,
        path,
        root,
        f"How much more of the top and bottom {args.extreme_share:.0%} stays in place than of a middle band of "
        "the same size, between checkpoints and between methods (above 0: the extremes are the stable part).",
    )


def beneficial_blocks(report: Report, scores, candidates, documents, tokenizer, args, root: Path) -> None:
    from .influence.stats import block_features

    frame = block_features(candidates, documents, tokenizer)
    if "candidate_loss" in scores.column_names:
        frame["own_loss"] = frame.index.map(
            dict(zip(scores["block_id"], scores["candidate_loss"], strict=True))
        )
    frame["line_length"] = [np.mean([len(x) for x in t.splitlines()] or [0]) for t in frame["text"]]
    frame["test_code"] = [float("assert" in t or "def test" in t) for t in frame["text"]]
    columns = ["comment_share", "newline_share", "documents", "line_length", "test_code", "own_loss"]
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


def run_analysis_stage(args) -> Path:
    """Write `report.md`, `report.json` and `figures/` into args.output_dir (whole or not at all)."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    from .influence.scoring import load_candidates

    stages = load_scores(args.stages_dir)
    scored = load_scores(args.influence_dir)
    method_scores = {k: v for k, v in scored.items() if k[1] == args.method}
    if not method_scores:
        raise ValueError(
            f"no {args.method} scores under {args.influence_dir}: run scripts/compute_influence.py"
        )
    last = max(method_scores)
    candidates = load_candidates(args.candidates, args.candidates_split, None)
    documents = load_from_disk(args.documents) if args.documents else None
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    with atomic_directory(args.output_dir) as root:
        report = Report()
        training_stages(report, stages or scored, args.method, args, root)
        stage_last = max((k for k in stages if k[1] == args.method), default=None)
        tasks_and_languages(
            report, stages[stage_last] if stage_last else scored[last], documents, candidates, args, root
        )
        extremes(
            report,
            {**stages, **{k: v for k, v in scored.items() if k[1] == "exact"}},
            args.method,
            args,
            root,
        )
        beneficial_blocks(report, scored[last], candidates, documents, tokenizer, args, root)
        text = "\n".join(
            [
                "# Findings on the tiny recipe\n",
                "Each of the paper's findings as a number with its 95% bootstrap interval over blocks. "
                f'A ranking "varies" when its Spearman interval lies below {VARIES_BELOW}; extremes are '
                '"stable" when more of the top and bottom stays in place than of the middle.\n',
                findings_table(report.rows),
                "",
                *report.sections,
            ]
        )
        (root / "report.md").write_text(text)
        write_json(root / "report.json", {"rows": report.rows, "numbers": report.numbers})
    logger.info("findings report: %s/report.md", args.output_dir)
    return Path(args.output_dir) / "report.md"
