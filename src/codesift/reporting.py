"""Numbers that runs produce, written into the docs by the run rather than retyped.

`make table` writes the headline results into README.md (between `<!-- results:start` and
`<!-- results:end -->`), the full table into docs/06_experiment.md and the figure into
docs/images/; `make notebooks` writes each notebook's run time into workshop/README.md.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from .data import not_the_table
from .errors import CodesiftError
from .intervals import format_interval, mean_and_ci


def replace_block(text: str, name: str, body: str) -> str:
    """`text` with the lines between `<!-- name:start ... -->` and `<!-- name:end -->` replaced by
    `body` (the marker lines stay). A missing or doubled marker is an error, not a silent append."""
    pattern = re.compile(rf"(<!-- {name}:start[^\n]*-->\n)(.*?)(<!-- {name}:end -->)", re.DOTALL)
    found = pattern.findall(text)
    if len(found) != 1:
        raise CodesiftError(
            f"expected one '<!-- {name}:start' ... '<!-- {name}:end -->' block, found {len(found)}"
        )
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(3), text)


def headline_table(results: dict) -> str:
    """The README's short table from results.json: each arm's paired difference to random in
    report loss per task, and its selection time."""
    summary = results["summary"]
    tasks = results["arguments"]["table_tasks"]
    header = ["arm", *[f"{task} report loss - random" for task in tasks], "selection time (s)", "seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm, entry in summary.items():
        diffs = [entry.get(f"vs_random/loss/{task}/report", (None, None)) for task in tasks]
        if all(d[0] is None for d in diffs) or entry.get("baseline", "random") != "random":
            continue  # random itself and the checkpoint have no difference; 5% arms are in docs/06
        cells = [
            arm,
            *(format_interval(d, signed=True) for d in diffs),
            f"{entry['selection_seconds'][0]:.1f}",
            str(len(entry.get("seeds") or []) or "-"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def results_settings(results: dict) -> str:
    """The recipe values the headline rests on: the share kept, the pool, the continued steps."""
    arguments = results["arguments"]
    kept = [
        c["kept_blocks"]
        for c in results.get("cells", [])
        if c.get("arm") == "random" and c.get("kept_blocks")
    ]
    pool = f" of a {round(kept[0] / arguments['fraction']):,}-block pool" if kept else " of the pool"
    return f"{arguments['fraction']:.0%}{pool}, {arguments['continue_steps']} continued steps from `{arguments['checkpoint']}`"


def results_provenance(results_markdown: str) -> str:
    """The date and machine lines of a results.md, as one sentence."""
    date = re.search(r"Date: (\d{4}-\d{2}-\d{2})", results_markdown)
    machine = re.search(r"Machine: ([^\n]+)", results_markdown)
    seeds = re.search(r"over (\d+) seed", results_markdown)
    per_arm = re.search(r"over each arm's seeds \((\d+) to (\d+)", results_markdown)
    if per_arm:
        count = f"{per_arm.group(1)} to {per_arm.group(2)} seeds, each arm's in the table's seeds column"
    else:
        count = f"{seeds.group(1) if seeds else ('1' if 'One seed' in results_markdown else '?')} seed(s)"
    return (
        f"{date.group(1) if date else 'date unknown'}; {machine.group(1) if machine else 'machine unknown'}; "
        f"{count}."
    )


def update_results_docs(experiment_dir: str | Path, root: str | Path) -> list[Path]:
    """README's headline block, docs/06_experiment.md's full table and docs/images/results.png,
    from a finished experiment folder."""
    experiment_dir, root = Path(experiment_dir), Path(root)
    results = json.loads((experiment_dir / "results.json").read_text())
    markdown = (experiment_dir / "results.md").read_text()
    readme, page = root / "README.md", root / "docs" / "06_experiment.md"
    headline = (
        f"{headline_table(results)}\n\n{results_settings(results)}; {results_provenance(markdown)} The whole "
        "table, with pass@1 and the `select` halves: [docs/06_experiment.md](docs/06_experiment.md)."
    )
    readme.write_text(replace_block(readme.read_text(), "results", headline))
    readme.write_text(replace_block(readme.read_text(), "comparisons", comparisons_table(results)))
    table = "\n".join(line for line in markdown.splitlines() if not line.startswith("# "))
    page.write_text(replace_block(page.read_text(), "results", table.strip()))
    image = root / "docs" / "images" / "results.png"
    image.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(experiment_dir / "results.png", image)
    written = [readme, page, image]
    if (experiment_dir / "cross_task.png").is_file():
        written.append(root / "docs" / "images" / "cross_task.png")
        shutil.copyfile(experiment_dir / "cross_task.png", written[-1])
    return written


# Comparisons the headline prose makes, each as a paired statistic over seeds: (arm, against it).
COMPARISONS = (
    ("predicted_mean", "influence_mean"),
    ("dsir_mean", "influence_mean"),
    ("language_matched_random", "influence_mean"),
    ("equal_compute", "influence_mean"),
    ("equal_compute_exact", "influence_mean"),
    ("reverse_mean", "influence_mean"),
)


def paired_report_losses(cells: list[dict], arm: str, task: str) -> dict[int, float]:
    key = f"loss/{task}/report"
    return {c["seed"]: c[key] for c in cells if c.get("arm") == arm and c.get(key) is not None}


def gain_ratio(cells: list[dict], arm: str, other: str, task: str, draws: int = 2000, seed: int = 0):
    """(ratio, low, high): the arm's gain over random as a share of `other`'s (gains: random's
    report loss minus the arm's, per seed), with a bootstrap interval that resamples seeds."""
    import numpy as np

    base, a, b = (paired_report_losses(cells, name, task) for name in ("random", arm, other))
    seeds = sorted(set(base) & set(a) & set(b))
    if len(seeds) < 2:
        return None
    gain_a = np.array([base[s] - a[s] for s in seeds])
    gain_b = np.array([base[s] - b[s] for s in seeds])
    ratio = gain_a.mean() / gain_b.mean() if gain_b.mean() else float("nan")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(seeds), (draws, len(seeds)))
    denominators = gain_b[picks].mean(1)
    ratios = gain_a[picks].mean(1)[denominators != 0] / denominators[denominators != 0]
    low, high = np.percentile(ratios, [2.5, 97.5]) if len(ratios) else (float("nan"), float("nan"))
    return float(ratio), float(low), float(high)


def paired_difference(cells: list[dict], arm: str, other: str, task: str):
    """(mean, half-width of the 95% t-interval, seeds) of the arm's report loss minus `other`'s, per seed."""

    a, b = paired_report_losses(cells, arm, task), paired_report_losses(cells, other, task)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    mean, ci = mean_and_ci([a[s] - b[s] for s in seeds])
    return mean, ci, len(seeds)


def comparisons_table(results: dict) -> str:
    """Each comparison the headline prose makes, as numbers with intervals: the paired difference
    in report loss (below 0: the arm is better), and the arm's gain over random as a share of the
    other's (a ratio of means, bootstrap over seeds)."""
    cells, tasks = results.get("cells", []), results["arguments"]["table_tasks"]
    arms = {c["arm"] for c in cells}
    header = ["comparison", *[f"{t}: difference" for t in tasks], *[f"{t}: share of the gain" for t in tasks]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm, other in COMPARISONS:
        if arm not in arms or other not in arms:
            continue
        differences = [paired_difference(cells, arm, other, t) for t in tasks]
        ratios = [gain_ratio(cells, arm, other, t) for t in tasks]
        row = [f"{arm} - {other}"]
        row += ["-" if d is None else format_interval((d[0], d[1]), signed=True) for d in differences]
        row += ["-" if r is None else f"{r[0]:.0%} [{r[1]:.0%}, {r[2]:.0%}]" for r in ratios]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def timings_table(timings: dict[str, float]) -> str:
    lines = ["| notebook | minutes |", "|---|---|"]
    lines += [f"| `{name}` | {seconds / 60:.1f} |" for name, seconds in timings.items()]
    lines.append(f"| all | {sum(timings.values()) / 60:.1f} |")
    return "\n".join(lines)


def update_pretrain_selected_docs(folder: str | Path, root: str | Path) -> list[Path]:
    """docs/06's pretraining-on-selected-data table and figure, and README's summary of it."""
    folder, root = Path(folder), Path(root)
    results = json.loads((folder / "results.json").read_text())
    markdown = (folder / "results.md").read_text()
    stamp = run_stamp(folder / "results.json")
    table = "\n".join(line for line in markdown.splitlines() if not line.startswith("# ")).strip()
    page, readme = root / "docs" / "06_experiment.md", root / "README.md"
    page.write_text(replace_block(page.read_text(), "pretrain_selected", f"{table}\n\n{stamp}"))
    readme.write_text(
        replace_block(readme.read_text(), "pretrain_selected", pretrain_selected_summary(results, stamp))
    )
    image = root / "docs" / "images" / "pretrain_selected.png"
    shutil.copyfile(folder / "results.png", image)
    return [page, readme, image]


def run_stamp(results_file: Path) -> str:
    """The date the results were written and the machine, as one sentence."""
    import datetime

    from .experiment import machine_description

    day = datetime.date.fromtimestamp(results_file.stat().st_mtime).isoformat()
    return f"{day}; {machine_description()}."


def pretrain_selected_summary(results: dict, stamp: str) -> str:
    """README's lines: each selected arm's final report loss against random's and the unfiltered
    corpus's, paired by seed, with intervals."""
    args, summary = results["arguments"], results["summary"]
    lines = ["| arm | " + " | ".join(f"{t} - random | {t} - full" for t in args["tasks"]) + " |",
             "|---|" + "---|---|" * len(args["tasks"])]  # fmt: skip
    for arm, entry in summary.items():
        if arm in ("random", "full"):
            continue
        cells = [
            format_interval(tuple(entry.get(f"vs_{base}/{t}", (None, None))), signed=True)
            for t in args["tasks"]
            for base in ("random", "full")
        ]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    seeds = max(len(e["seeds"]) for e in summary.values())
    return "\n".join(lines) + (
        f"\n\nReport loss after {args['steps']} steps from scratch, paired by seed (mean ± 95% t-interval over "
        f"{seeds} seeds; below 0: better). {stamp} Table and figure: [docs/06_experiment.md](docs/06_experiment.md)."
    )


def update_report_docs(report: str | Path, root: str | Path) -> Path:
    """docs/findings.md's table from a findings report (report.md), with the date it was written."""
    report = Path(report)
    lines = report.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| finding |"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    page = Path(root) / "docs" / "findings.md"
    body = "\n".join(lines[start:end]) + f"\n\n{run_stamp(report)}"
    page.write_text(replace_block(page.read_text(), "findings", body))
    return page


def update_timings_docs(timings_file: str | Path, root: str | Path) -> Path:
    """workshop/README.md's run-time block from `make notebooks`' timings.json."""
    timings = json.loads(Path(timings_file).read_text())
    plan = Path(root) / "workshop" / "README.md"
    plan.write_text(replace_block(plan.read_text(), "timings", timings_table(timings)))
    return plan


def predictor_table(bench: dict) -> str:
    """docs/05_predictor.md's measured block from benchmarks/bench_predictor.py's JSON: held-out
    agreement, training time and cost per block of each predictor next to the oracle's, the learning
    curve, and agreement with exact labels when they were there."""
    oracle = bench["oracle_seconds_per_block"]
    tasks = list(next(iter(bench["predictors"].values()))["heldout"])
    header = [
        "predictor",
        *[f"{t} Spearman / top-20%" for t in tasks],
        "train (s)",
        "ms per block",
        "x cheaper than the fast oracle",
    ]
    lines = [
        f"{bench['date']}; {bench['machine']}; labels: {bench['labels']}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for name, entry in bench["predictors"].items():
        cells = [
            f"{entry['heldout'][t]['spearman']:.3f} / {entry['heldout'][t]['top20_precision']:.2f}"
            for t in tasks
        ]
        per_block = entry["predict_seconds_per_block"]
        lines.append(
            f"| {name} | " + " | ".join(cells)
            + f" | {entry['train_seconds']:.1f} | {per_block * 1e3:.2f} | {oracle['adam_update'] / per_block:,.0f} |"
        )  # fmt: skip
    lines += [
        "",
        f"The oracle, same run: `adam_update` {oracle['adam_update'] * 1e3:.0f} ms per block, exact "
        f"{oracle['exact'] * 1e3:.0f} ms per block"
        + (
            f" (plus {oracle['adam_update_setup_seconds']:.1f} s and {oracle['exact_setup_seconds']:.1f} s once per "
            "checkpoint: the task gradients, the losses before)."
            if "adam_update_setup_seconds" in oracle
            else "."
        ),
        "",
        "| training labels | " + " | ".join(f"{t} Spearman" for t in tasks) + " |",
        "|---|" + "---|" * len(tasks),
    ]
    lines += [
        f"| {p['labels']} | " + " | ".join(f"{p[t]['spearman']:.3f}" for t in tasks) + " |"
        for p in bench["learning_curve"]
    ]
    exact = bench.get("exact_labels")
    lines.append("")
    if not exact:
        lines.append("Exact labels: not measured yet (run `make exact` before the benchmark).")
    else:
        lines += [
            "| exact-label check | blocks | " + " | ".join(f"{t} Spearman" for t in tasks) + " |",
            "|---|---|" + "---|" * len(tasks),
        ]
        lines += [
            f"| {name.replace('_', ' ')} | {entry['blocks']} | "
            + " | ".join(f"{entry[t]['spearman']:.3f}" for t in tasks)
            + " |"
            for name, entry in exact.items()
        ]
    return "\n".join(lines)


def influence_bench_table(bench: dict) -> str:
    """docs/03_influence.md's benchmark block from benchmarks/bench_influence.py's JSON: the exact
    probe's overheads, each fast variant's time (after its one-time setup) and fidelity, the goals."""
    exact = bench["exact_seconds_per_candidate"]
    tasks = list(bench["variants"][0]["spearman"])
    lines = [
        f"{bench['date']}; {bench['machine']}; {bench['candidates']} candidates (the recipe's exact subset), "
        f"checkpoint {bench['step']}, one run (`benchmarks/bench_influence.py`).",
        "",
        f"Exact: {exact:.3f} s per candidate, {bench['exact_floor_ratio']:.3f} of its floor (its own step and one "
        f"batched validation forward; goal <= 1.2), {bench['exact_restore_share']:.2%} of it restoring weights and "
        f"optimizer state (goal <= 5%); a MATES-style loop (reload from disk per candidate, batch-32 full-logit "
        f"validation) {bench['mates_style_seconds_per_candidate']:.2f} s per candidate. A training step costs "
        f"{bench['training_seconds_per_block']:.3f} s per block (batch 16).",
        "",
        f"| variant | s per candidate | setup (s, once) | x a trained block | speed-up vs exact | "
        f"Spearman ({' / '.join(tasks)}) | top-20% Jaccard |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in bench["variants"]:
        lines.append(
            f"| `{v['variant']}` | {v['seconds_per_candidate']:.3f} | {v['setup_seconds']:.1f} | "
            f"{v['x_training_cost']:.2f} | {v['speedup']:.1f}x | "
            + " / ".join(f"{v['spearman'][t]:.3f}" for t in tasks) + " | "
            + " / ".join(f"{v['top20_jaccard'][t]:.2f}" for t in tasks) + " |"
        )  # fmt: skip
    by_name = {v["variant"]: v for v in bench["variants"]}
    lines.append("")
    for key, threshold, goal in (("cheapest_at_0.95", 0.95, 50), ("best_at_0.98", 0.98, 20)):
        found = by_name.get(bench[key])
        lines.append(
            f"Goal: the fastest variant at Spearman >= {threshold} on every task is "
            + (f"`{found['variant']}`, {found['speedup']:.1f}x faster than exact" if found else "none")
            + f" (goal >= {goal}x: {'met' if found and found['speedup'] >= goal else 'not met'})."
        )
    return "\n".join(lines)


def update_predictor_docs(bench_file: str | Path, root: str | Path) -> Path:
    """docs/05_predictor.md's measured block from the predictor benchmark's JSON."""
    page = Path(root) / "docs" / "05_predictor.md"
    bench = json.loads(Path(bench_file).read_text())
    page.write_text(replace_block(page.read_text(), "predictor", predictor_table(bench)))
    return page


def update_influence_bench_docs(bench_file: str | Path, root: str | Path) -> Path:
    """docs/03_influence.md's benchmark block from the influence benchmark's JSON."""
    page = Path(root) / "docs" / "03_influence.md"
    bench = json.loads(Path(bench_file).read_text())
    page.write_text(replace_block(page.read_text(), "influence_bench", influence_bench_table(bench)))
    return page


def influence_numbers(influence_dir: str | Path, step: int) -> dict:
    """Stage 03's measured numbers at one checkpoint: each method's seconds per candidate and
    candidates, fast against exact (Spearman per task on the blocks both scored), and how alike the
    tasks' fast scores rank the pool (Spearman of every pair)."""
    from scipy.stats import spearmanr

    from .data import load_scores
    from .stats import score_tasks

    found = load_scores(influence_dir)
    methods = {m: found[(s, m)] for s, m in found if s == step}
    if "adam_update" not in methods:
        raise CodesiftError(f"no adam_update scores at step {step} under {influence_dir}: run make demo")
    numbers = {"step": step, "methods": {}}
    for method in methods:
        meta = json.loads((Path(influence_dir) / f"step-{step}" / method / "scoring.json").read_text())
        numbers["methods"][method] = {
            "seconds_per_candidate": meta.get("seconds_per_candidate"),
            "candidates": meta.get("candidates"),
        }
    fast = methods["adam_update"]
    tasks = score_tasks(fast)
    by_task = {t: dict(zip(fast["block_id"], fast[f"influence_{t}"], strict=True)) for t in tasks}
    numbers["tasks"] = {
        f"{a} / {b}": float(
            spearmanr([by_task[a][k] for k in by_task[a]], [by_task[b][k] for k in by_task[a]])[0]
        )
        for i, a in enumerate(tasks)
        for b in tasks[i + 1 :]
    }
    if "exact" in methods:
        exact = methods["exact"]
        numbers["fast_vs_exact"] = {
            t: float(spearmanr([by_task[t][k] for k in exact["block_id"]], exact[f"influence_{t}"])[0])
            for t in score_tasks(exact)
        }
    return numbers


def influence_block(numbers: dict, stamp: str) -> str:
    lines = []
    for method, info in numbers["methods"].items():
        per = info["seconds_per_candidate"]
        if per is None:
            continue
        lines.append(
            f"- `{method}` at step {numbers['step']}: {per:.3f} s per candidate, {info['candidates']:,} "
            f"candidates, {per * info['candidates']:.0f} s in all."
        )
    if "fast_vs_exact" in numbers:
        pairs = ", ".join(f"{t} {r:.3f}" for t, r in numbers["fast_vs_exact"].items())
        lines.append(f"- `adam_update` against `exact` on the blocks both scored, Spearman: {pairs}.")
    else:
        lines.append("- `adam_update` against `exact`: not measured yet (`make exact`).")
    pairs = "; ".join(f"{pair} {r:.2f}" for pair, r in numbers["tasks"].items())
    lines.append(f"- How alike the tasks' fast scores rank the pool (Spearman): {pairs}.")
    return "\n".join(lines) + f"\n\n{stamp}"


def update_influence_docs(influence_dir: str | Path, root: str | Path, step: int = 300) -> Path:
    """docs/03_influence.md's measured block from stage 03's scores (make demo, make exact)."""
    numbers = influence_numbers(influence_dir, step)
    stamp = run_stamp(Path(influence_dir) / f"step-{step}" / "adam_update" / "scoring.json")
    page = Path(root) / "docs" / "03_influence.md"
    page.write_text(replace_block(page.read_text(), "influence", influence_block(numbers, stamp)))
    return page


def update_stage_table(root: str | Path) -> Path:
    """README's stage table from the stage registry (codesift.stages)."""
    from .stages import stage_table

    readme = Path(root) / "README.md"
    readme.write_text(replace_block(readme.read_text(), "stages", stage_table()))
    return readme


def update_all_docs(outputs: str | Path, root: str | Path) -> list[str]:
    """Every generated block whose run's outputs exist under `outputs` (outputs/tiny), in one go:
    `make docs`. Returns a line per block: what was written, or which run would write it."""
    outputs = Path(outputs)
    steps = [
        ("influence", outputs / "influence" / "step-300" / "adam_update" / "scoring.json", "make demo",
         lambda: [update_influence_docs(outputs / "influence", root)]),
        ("results", outputs / "experiment" / "results.json", "make table",
         lambda: update_results_docs(outputs / "experiment", root)),
        ("pretrain_selected", outputs / "pretrain_selected" / "results.json", "make pretrain_selected",
         lambda: update_pretrain_selected_docs(outputs / "pretrain_selected", root)),
        ("findings", outputs / "report.md", "make report", lambda: [update_report_docs(outputs / "report.md", root)]),
        ("timings", outputs.parent / "notebooks" / "timings.json", "make notebooks",
         lambda: [update_timings_docs(outputs.parent / "notebooks" / "timings.json", root)]),
    ]  # fmt: skip
    lines = [f"wrote {update_stage_table(root)} (stages)"]
    for name, needs, run, write in steps:
        if not needs.is_file():
            lines.append(f"skipped {name}: {needs} not found ({run} writes it)")
        elif name == "results" and (other := not_the_table(needs, Path(root) / "recipes" / outputs.name)):
            lines.append(f"skipped {name}: {needs} {other} ({run} writes the headline's)")
        else:
            lines += [f"wrote {path} ({name})" for path in write()]
    return lines
