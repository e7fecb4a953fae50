"""Figures, one function each, shared by the scripts, the demo and the notebooks.

Every function returns the matplotlib Figure (a notebook shows it inline) and, given a path,
saves it there as a PNG and closes it (a script writes it under outputs/).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt  # headless, matplotlib falls back to Agg by itself
import numpy as np
from matplotlib.ticker import NullFormatter

# Imported inside the functions that use them (heavy or optional): IPython.


# A legend right of the axes: it never covers the data (histograms fill the whole panel).
LEGEND_BESIDE = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "frameon": False}


def _save(fig, path):
    """Save to `path` and close (a script's figure must not pile up or pop up in a notebook);
    with no path, leave it open for the notebook to show."""
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
    return fig


def plot_task_sizes(metadata: dict, path=None):
    """Problems per task: available, sampled, and the select/report parts."""
    tasks = list(metadata["tasks"])
    info = metadata["tasks"]
    x = range(len(tasks))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(tasks)), 3.5))
    width = 0.2
    for offset, key in zip((-1.5, -0.5, 0.5, 1.5), ("available", "sampled", "select", "report"), strict=True):
        ax.bar([i + offset * width for i in x], [info[t][key] for t in tasks], width, label=key)
    ax.set_xticks(list(x), tasks, rotation=20, ha="right")
    ax.set_ylabel("problems")
    mode = (
        "paper mode: select = report"
        if metadata["select_fraction"] == 0
        else (f"select fraction {metadata['select_fraction']}")
    )
    ax.set_title(f"Validation sets per task ({mode}, seed {metadata['seed']})")
    ax.legend(fontsize=8, **LEGEND_BESIDE)
    return _save(fig, path)


def plot_validation_lengths(tokenized_sets, tasks: list[str] | None = None, path=None):
    """Prompt and completion lengths in tokens, per task (`tasks`: the whole-task splits to show;
    default every split)."""
    tasks = list(tokenized_sets) if tasks is None else tasks
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
    for task in tasks:
        labels = tokenized_sets[task]["labels"]
        completion = [sum(t != -100 for t in row) for row in labels]
        prompt = [len(row) - c for row, c in zip(labels, completion, strict=True)]
        axes[0].hist(prompt, bins=30, histtype="step", label=task)
        axes[1].hist(completion, bins=30, histtype="step", label=task)
    axes[0].set(title="prompt tokens (masked, -100)", xlabel="tokens", ylabel="problems")
    axes[1].set(title="completion tokens (the loss)", xlabel="tokens")
    axes[1].legend(fontsize=7, **LEGEND_BESIDE)
    return _save(fig, path)


def plot_corpus_lengths(document_tokens, blocks, seq_len: int, path=None):
    """Document lengths in tokens (log scale) and how many documents each block spans."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    lengths = np.asarray(document_tokens)
    axes[0].hist(lengths, bins=np.logspace(0, np.log10(max(2, lengths.max())), 40))
    axes[0].set_xscale("log")
    axes[0].axvline(seq_len, color="k", linestyle="--", label=f"block = {seq_len} tokens")
    axes[0].set(title=f"{len(lengths)} documents", xlabel="tokens per document", ylabel="documents")
    axes[0].legend(fontsize=8, loc="upper right")  # a log-scale histogram: its right end is sparse
    spans = [len(ids) for ids in blocks["doc_ids"]]
    axes[1].hist(spans, bins=range(1, max(spans) + 2), align="left")
    axes[1].set(
        title=f"{len(spans)} blocks of {seq_len} tokens", xlabel="documents in a block", ylabel="blocks"
    )
    return _save(fig, path)


def plot_dropped(manifest: dict, path=None):
    """Documents dropped per reason by the corpus filters."""
    dropped = manifest["documents"]["dropped"]
    reasons = sorted(dropped, key=lambda r: -dropped[r]["documents"])
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.barh(reasons, [dropped[r]["documents"] for r in reasons])
    ax.invert_yaxis()
    kept = manifest["documents"]["documents_kept"]
    ax.set(
        title=f"Corpus filters: {kept} documents kept of {manifest['documents']['documents_read']}",
        xlabel="documents dropped",
    )
    return _save(fig, path)


def read_log_history(run_dir) -> list[dict]:
    """The Trainer's log history of a run folder (its final trainer_state.json, else the newest
    checkpoint's)."""
    run_dir = Path(run_dir)
    states = [run_dir / "trainer_state.json"] + sorted(
        run_dir.glob("checkpoint-*/trainer_state.json"), key=lambda p: -int(p.parent.name.split("-")[1])
    )
    state = next((p for p in states if p.is_file()), None)
    if state is None:
        raise FileNotFoundError(f"no trainer_state.json in {run_dir} or its checkpoints")
    return json.loads(state.read_text())["log_history"]


def plot_training_curves(log_history: list[dict], path=None):
    """Training loss, and each task's validation loss (completion tokens only), over steps."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    train = [(log["step"], log["loss"]) for log in log_history if "loss" in log]
    if train:
        axes[0].plot(*zip(*train, strict=True))
    axes[0].set(title="training loss", xlabel="step", ylabel="loss (nats/token)")
    tasks = sorted(
        {k[5:-5] for log in log_history for k in log if k.startswith("eval_") and k.endswith("_loss")}
    )
    for task in tasks:
        points = [
            (log["step"], log[f"eval_{task}_loss"]) for log in log_history if f"eval_{task}_loss" in log
        ]
        axes[1].plot(*zip(*points, strict=True), marker="o", label=task)
    axes[1].set(title="validation loss per task", xlabel="step", ylabel="loss on completion tokens")
    if tasks:
        axes[1].legend(fontsize=7)
    return _save(fig, path)


def plot_score_distributions(scores, title: str = "", path=None):
    """Histogram of each task's influence scores (loss before - after one step; > 0 helps)."""
    tasks = [c.removeprefix("influence_") for c in scores.column_names if c.startswith("influence_")]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for task in tasks:
        ax.hist(scores[f"influence_{task}"], bins=40, histtype="step", label=task)
    ax.axvline(0, color="k", linewidth=0.8)
    ax.set(
        title=title or "influence scores",
        xlabel="validation loss before - after one step",
        ylabel="candidates",
    )
    ax.legend(fontsize=8, **LEGEND_BESIDE)
    return _save(fig, path)


def plot_correlation_heatmap(matrix, labels, title: str, path=None):
    """Spearman correlations as a heatmap with the values written in."""
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 2, 1.0 * len(labels) + 1.5))
    image = ax.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ink = "white" if abs(matrix[i][j]) > 0.6 else "black"  # readable on the dark cells
            ax.text(j, i, f"{matrix[i][j]:.2f}", ha="center", va="center", fontsize=8, color=ink)
    fig.colorbar(image, ax=ax, label="Spearman")
    ax.set_title(title)
    return _save(fig, path)


def plot_fast_vs_exact(exact_values, fast_values, task: str, method: str, rho: float, path=None):
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.scatter(exact_values, fast_values, s=10)
    ax.set(
        title=f"{task}: {method} vs exact (Spearman {rho:.3f})",
        xlabel="exact score",
        ylabel=f"{method} estimate",
    )
    return _save(fig, path)


def plot_feature_effects(features, score_column: str, path=None):
    """How the score varies with a block's comment share and the package it comes from."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    axes[0].scatter(features["comment_share"], features[score_column], s=8)
    axes[0].set(title="comments and docstrings", xlabel="share of characters", ylabel=score_column)
    by_package = features.groupby("package")[score_column].agg(["mean", "count"])
    by_package = by_package[by_package["count"] >= 5].sort_values("mean").tail(15)
    axes[1].barh(by_package.index, by_package["mean"])
    axes[1].set(title="mean score by package (>= 5 blocks)", xlabel=score_column)
    fig.tight_layout()  # the package names need their room, left of their own panel
    return _save(fig, path)


def plot_selection_histogram(values, kept, name: str, path=None):
    """The value every candidate was ranked by, all candidates vs the kept ones, the cut marked."""
    values = np.asarray(values)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    bins = np.histogram_bin_edges(values, bins=50)
    ax.hist(values, bins=bins, color="0.75", label=f"all candidates ({len(values)})")
    ax.hist(values[kept], bins=bins, color="C0", alpha=0.8, label=f"kept ({len(kept)})")
    if 0 < len(kept) < len(values):
        cut = values[kept].min()
        ax.axvline(cut, color="C3", linestyle="--", label=f"lowest kept value {cut:.3g}")
    ax.set(xlabel="selection value", ylabel="blocks", title=f"Selection: {name}")
    ax.legend(fontsize=8, **LEGEND_BESIDE)
    return _save(fig, path)


def plot_package_shares(rows: list[dict], path=None, top: int = 15):
    """Share of each package's candidate blocks that was kept (the largest packages)."""
    rows = rows[:top]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(rows) + 1.2))
    ax.barh([r["package"] for r in rows][::-1], [r["share_kept"] for r in rows][::-1], color="C0")
    total = sum(r["kept"] for r in rows) / max(1, sum(r["candidates"] for r in rows))
    ax.axvline(total, color="C3", linestyle="--", label=f"overall {total:.0%}")
    ax.set(xlabel="share of the package's candidate blocks kept", xlim=(0, 1))
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_results_table(summary: dict, tasks: list[str], path=None):
    """Did selection beat random at equal tokens? One panel per task: each arm's paired difference
    to random in `report` loss, with the zero line; below zero is better than random. With two or
    more seeds, the mean and its 95% interval, green where the interval lies below 0, red above,
    grey where it holds 0; with one seed there is no interval, and every bar is grey. Arms without
    a difference (random itself, the checkpoint) are left out."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    keys = [f"vs_random/loss/{task}/report" for task in tasks]
    arms = [a for a in summary if any(summary[a].get(k, (None,))[0] is not None for k in keys)]
    counts = {a: len(summary[a].get("seeds") or [None]) for a in arms}
    seeds = sorted(set(counts.values())) or [1]
    with_interval = seeds[-1] >= 2  # some arm has an interval; an arm with one seed draws none
    # among arms with intervals, a one-seed arm (a dear one, e.g. an hour-long cell) would set the
    # scale with a single number and no interval: it stays in the table, out of the figure
    left_out = [a for a in arms if with_interval and counts[a] < 2]
    arms = [a for a in arms if a not in left_out]
    counts = {a: counts[a] for a in arms}
    seeds = sorted(set(counts.values())) or [1]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 0.5 * len(arms) + 2.3), sharey=True)
    for ax, key in zip(np.atleast_1d(axes), keys, strict=True):
        means = np.array([summary[a][key][0] for a in arms], dtype=float)
        cis = np.array([_interval(summary[a][key][1]) if counts[a] >= 2 else 0.0 for a in arms])
        colors = [_verdict_colour(m, c, counts[a] >= 2) for a, m, c in zip(arms, means, cis, strict=True)]
        ax.barh(range(len(arms)), means, xerr=cis if with_interval else None, color=colors, capsize=3)
        ax.axvline(0, color="black", linewidth=0.8)
        reach = float(np.nanmax(np.abs(np.concatenate([means - cis, means + cis])))) or 1.0
        ax.set_xlim(
            min(0.0, np.nanmin(means - cis)) - 0.15 * reach, max(0.0, np.nanmax(means + cis)) + 0.15 * reach
        )
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))  # a narrow panel: few ticks, never touching
        ax.set_title(f"{key.split('/')[2]}: report loss minus random's", fontsize=9)
        ax.set_xlabel("nats (below 0: better; a named baseline in its place)", fontsize=8)
    first = np.atleast_1d(axes)[0]
    labels = [  # an arm compared with another baseline (the 5% arms: a random 5%) says so
        arm
        if summary[arm].get("baseline", "random") == "random"
        else f"{arm} (vs {summary[arm]['baseline']})"
        for arm in arms
    ]
    if with_interval:  # an arm without an interval among arms with one says why
        labels = [
            f"{label} (1 seed)" if counts[a] < 2 else label for a, label in zip(arms, labels, strict=True)
        ]
    first.set_yticks(range(len(arms)), labels, fontsize=8)
    first.invert_yaxis()
    several = [n for n in seeds if n >= 2]
    count = f"{seeds[0]}" if len(seeds) == 1 else f"{several[0]}-{several[-1]}" if several else "1"
    how = (
        f"{count} seeds paired with random: mean and 95% t-interval"
        if with_interval
        else f"{count} seed: no interval, a single paired difference"
    )
    if left_out:
        how += f"; one seed, in the table only: {', '.join(left_out)}"
    fig.suptitle(f"Did selection beat random at equal tokens? ({how})", fontsize=10)
    legend = [Patch(color="C7", label="interval holds 0" if with_interval else "no interval (1 seed)")]
    if with_interval:
        legend = [
            Patch(color="C2", label="interval below 0"),
            Patch(color="C3", label="interval above 0"),
            *legend,
        ]
    fig.legend(handles=legend, loc="lower center", ncol=len(legend), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return _save(fig, path)


def _interval(half_width) -> float:
    return 0.0 if half_width is None or not np.isfinite(half_width) else float(half_width)


def _verdict_colour(mean: float, half_width: float, with_interval: bool) -> str:
    """Green or red only where an interval exists and excludes 0."""
    if not with_interval:
        return "C7"
    return "C2" if mean + half_width < 0 else "C3" if mean - half_width > 0 else "C7"


def plot_learning_curve(curve: list[dict], tasks: list[str], path=None):
    """Held-out Spearman and top-20% precision against the number of training labels."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    labels = [point["labels"] for point in curve]
    for task in tasks:
        axes[0].plot(labels, [p[task]["spearman"] for p in curve], marker="o", label=task)
        axes[1].plot(labels, [p[task]["top20_precision"] for p in curve], marker="o", label=task)
    axes[0].set(
        xlabel="training labels (oracle-scored blocks)", ylabel="held-out Spearman", title="rank agreement"
    )
    axes[1].set(
        xlabel="training labels (oracle-scored blocks)",
        ylabel="held-out top-20% precision",
        title="top 20% found",
    )
    axes[1].axhline(0.2, color="grey", lw=0.8, ls="--", label="chance")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(labels, [str(n) for n in labels])  # the label counts themselves, not 3x10^2
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def plot_predictor_comparison(results: dict, tasks: list[str], path=None):
    """Held-out Spearman with the oracle per predictor (bars) and task (groups)."""
    names = list(results)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(names)), 3.6))
    width = 0.8 / len(tasks)
    for j, task in enumerate(tasks):
        ax.bar(
            np.arange(len(names)) + j * width,
            [results[n][task]["spearman"] for n in names],
            width,
            label=task,
        )
    ax.set_xticks(np.arange(len(names)) + width * (len(tasks) - 1) / 2, names, rotation=20, ha="right")
    ax.set(ylabel="held-out Spearman with the oracle", ylim=(min(0.0, ax.get_ylim()[0]), 1.0))
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def plot_selection_cost(cost: dict, path=None):
    """What choosing the data cost: the predictor's oracle labels, training and predicting, stacked,
    beside the oracle scoring the whole pool (stage 05's `cost`, seconds)."""
    fig, ax = plt.subplots(figsize=(7, 2.6))
    parts = [("oracle labels", cost["label_seconds"]), ("training", cost["train_seconds"]),
             ("predicting", cost["predict_seconds"])]  # fmt: skip
    left = 0.0
    for label, seconds in parts:
        ax.barh(["predictor"], [seconds], left=left, label=label)
        left += seconds
    ax.barh(["oracle on the whole pool"], [cost["oracle_pool_seconds"]], color="grey")
    ax.set(xlabel="seconds", title="What scoring the pool costs")
    ax.legend(fontsize=8, **LEGEND_BESIDE)
    return _save(fig, path)


def plot_predicted_vs_oracle(oracle, predicted, tasks: list[str], agreement: dict, path=None):
    """Held-out blocks: the predictor's score against the oracle's, one panel per task."""
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 4), squeeze=False)
    for j, (ax, task) in enumerate(zip(axes[0], tasks, strict=True)):
        ax.scatter(oracle[:, j], predicted[:, j], s=10, alpha=0.7)
        low, high = (
            float(min(oracle[:, j].min(), predicted[:, j].min())),
            float(max(oracle[:, j].max(), predicted[:, j].max())),
        )
        ax.plot([low, high], [low, high], color="grey", lw=0.8, ls="--")
        stats = agreement[task]
        ax.set(
            title=f"{task}: Spearman {stats['spearman']:.2f}, top-20% {stats['top20_precision']:.2f}",
            xlabel="oracle score (held out)",
            ylabel="predicted score",
        )
    fig.tight_layout()
    return _save(fig, path)


def caption(text: str):
    """A figure's caption under it in a notebook: what to look for, and what this run showed
    (the caller formats the run's own numbers into `text`)."""
    from IPython.display import Markdown, display

    display(Markdown(f"*Figure.* {text}"))
    return text


def plot_effect_intervals(effects: dict, title: str, xlabel: str = "Spearman with the score", path=None):
    """One row per item: its point estimate and interval ((point, low, high) per name)."""
    names = list(effects)
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(names) + 1.4))
    for row, name in enumerate(names):
        point, low, high = effects[name]
        ax.plot([low, high], [row, row], color="tab:blue")
        ax.plot(point, row, "o", color="tab:blue")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(range(len(names)), names)
    ax.set(title=title, xlabel=xlabel)
    return _save(fig, path)


def plot_cross_task_matrix(matrix, targets: list[str], tasks: list[str], path=None):
    """Selected for (rows) x judged on (columns): report loss minus random's (blue: helped)."""
    rows = [f"selected for {t}" for t in targets]
    title = "Cross-task transfer: selected for one task, judged on every task"
    return plot_group_heatmap(matrix, rows, tasks, title, path, label="report loss - random (lower: helped)")


def plot_group_heatmap(
    matrix, rows: list[str], columns: list[str], title: str, path=None, label="mean z-score"
):
    """A rows x columns table of means as a heatmap centred on 0, values written in."""
    matrix = np.asarray(matrix, dtype=np.float64)
    limit = float(np.nanmax(np.abs(matrix))) if np.isfinite(matrix).any() else 1.0
    fig, ax = plt.subplots(figsize=(1.2 * len(columns) + 2.5, 0.6 * len(rows) + 2))
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_xticks(range(len(columns)), columns, rotation=35, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for i in range(len(rows)):
        for j in range(len(columns)):
            ink = "white" if abs(matrix[i, j]) > 0.6 * limit else "black"  # readable on the dark cells
            ax.text(j, i, f"{matrix[i, j]:+.2f}", ha="center", va="center", fontsize=8, color=ink)
    fig.colorbar(image, ax=ax, label=label)
    ax.set_title(title)
    return _save(fig, path)


def plot_loss_over_training(cells: list[dict], tasks: list[str], arms: list[str], path=None):
    """Pretraining on selected data: each arm's report-half loss over training steps (mean over
    seeds, and the band of the 95% t-interval with two or more seeds), one panel per task; a last
    panel puts the first task's curve against total compute, training plus selection seconds."""
    from .intervals import mean_and_ci

    fig, axes = plt.subplots(1, len(tasks) + 1, figsize=(4.4 * (len(tasks) + 1), 3.8))
    seeds = max(len({c["seed"] for c in cells if c["arm"] == a}) for a in arms)
    for colour, arm in enumerate(arms):
        runs = [c for c in cells if c["arm"] == arm and c["curve"]]
        steps = [point["step"] for point in runs[0]["curve"]]
        for ax, task in zip(axes, tasks, strict=False):
            values = np.array([[p[task] for p in run["curve"]] for run in runs])
            stats = np.array([mean_and_ci(values[:, j]) for j in range(values.shape[1])])
            ax.plot(steps, stats[:, 0], marker="o", markersize=3, color=f"C{colour}", label=arm)
            if seeds > 1:
                ax.fill_between(
                    steps,
                    stats[:, 0] - stats[:, 1],
                    stats[:, 0] + stats[:, 1],
                    color=f"C{colour}",
                    alpha=0.15,
                )
        first = np.mean([[p[tasks[0]] for p in run["curve"]] for run in runs], axis=0)
        compute = np.mean([compute_at(run, steps) for run in runs], axis=0)
        axes[-1].plot(compute / 60, first, marker="o", markersize=3, color=f"C{colour}", label=arm)
    for ax, task in zip(axes, tasks, strict=False):
        ax.set(title=f"{task}: report loss over training", xlabel="step", ylabel="loss (nats/token)")
    axes[-1].set(
        title=f"{tasks[0]}: against total compute",
        xlabel="minutes (training + selection)",
        ylabel="loss (nats/token)",
    )
    axes[-1].legend(fontsize=8, **LEGEND_BESIDE)
    band = f"mean of {seeds} seeds, band: 95% t-interval" if seeds > 1 else "1 seed: no band"
    fig.suptitle(f"Pretraining from scratch on selected data ({band})", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def compute_at(run: dict, steps: list[int]) -> np.ndarray:
    """Seconds spent by each step: training as it goes, and selection when it was paid (a staged
    run's bills at their stage boundaries, a one-shot selection up front)."""
    steps = np.asarray(steps, dtype=np.float64)
    spent = run["train_seconds"] * steps / steps.max()
    stages = (run.get("selection_bill") or {}).get("stages")
    if not stages:
        return spent + run["selection_seconds"]
    for bill in stages:
        paid = bill["label_seconds"] + bill["fit_seconds"] + bill["predict_seconds"]
        spent = spent + paid * (steps > bill["step"])
    return spent


def plot_arm_training_losses(losses: dict[str, dict[int, float]], seed: int, path=None):
    """Each arm's training loss on its own selection over its steps ({arm: {step: loss}})."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for arm, points in losses.items():
        steps = sorted(points)
        ax.plot(steps, [points[s] for s in steps], label=arm)
    ax.set(
        title=f"Training loss of each arm on its own selection (seed {seed})", xlabel="step", ylabel="loss"
    )
    ax.legend(fontsize=8, **LEGEND_BESIDE)
    return _save(fig, path)
