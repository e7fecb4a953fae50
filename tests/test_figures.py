"""Every figure the kit writes, rendered at its real size with data shaped like the tiny recipe's
(six tasks, thirteen arms, long names), and checked for what a person would notice: tick labels
that run into each other, an empty panel, a legend over the data, a title promising intervals that
are not drawn. The checks themselves are shown to fire on broken figures."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from datasets import Dataset  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402

from codesift import plots  # noqa: E402
from codesift.figure_checks import figure_problems  # noqa: E402

TASKS = ["humaneval", "mbpp", "humaneval_x_cpp", "humaneval_x_java", "humaneval_x_js", "humaneval_x_python"]
ARMS = ["perplexity_low", "full_pool_aa_check", "influence_humaneval", "influence_mbpp", "influence_mean",
        "predicted_mean", "influence_humaneval_x_cpp", "influence_humaneval_x_java", "influence_humaneval_x_js",
        "reverse_mean", "dsir_mean", "equal_compute", "random5"]  # fmt: skip
RNG = np.random.default_rng(0)


def results_summary(seeds: int, tasks=("humaneval", "mbpp")) -> dict:
    summary = {
        "random": {**{f"vs_random/loss/{t}/report": (None, None) for t in tasks}, "seeds": list(range(seeds))}
    }
    for arm in ARMS:
        entry = {"seeds": list(range(seeds))}
        for task in tasks:
            mean = float(RNG.normal(-0.1, 0.12))
            entry[f"vs_random/loss/{task}/report"] = (
                mean,
                float(RNG.uniform(0.005, 0.1)) if seeds > 1 else None,
            )
        summary[arm] = entry
    return summary


def log_history() -> list[dict]:
    logs = [{"step": s, "loss": 6 - np.log1p(s) / 2} for s in range(1, 301, 10)]
    logs += [
        {"step": s, **{f"eval_{t}_loss": 5 - s / 300 + i / 10 for i, t in enumerate(TASKS)}}
        for s in (100, 200, 300)
    ]
    return logs


def scores_dataset() -> Dataset:
    return Dataset.from_dict(
        {"block_id": list(range(2000)), **{f"influence_{t}": RNG.normal(0, 0.01, 2000) for t in TASKS}}
    )


def features_frame() -> pd.DataFrame:
    packages = [f"package_with_a_long_name_{i % 20}" for i in range(600)]
    return pd.DataFrame(
        {"comment_share": RNG.uniform(0, 0.6, 600), "z": RNG.normal(size=600), "package": packages}
    )


def pretrain_selected_cells(seeds: int) -> list[dict]:
    cells = []
    for seed in range(seeds):
        for offset, arm in enumerate(["full", "random", "filtered", "mates"]):
            curve = [{"step": s, "humaneval": 6 - s / 100 - offset * 0.05 + RNG.normal(0, 0.02),
                      "mbpp": 6.2 - s / 110 - offset * 0.03} for s in range(50, 301, 50)]  # fmt: skip
            cell = {
                "arm": arm,
                "seed": seed,
                "curve": curve,
                "train_seconds": 240.0,
                "selection_seconds": 0.0,
            }
            if arm == "mates":
                stages = [
                    {"step": s, "label_seconds": 18.0, "fit_seconds": 2.0, "predict_seconds": 9.0}
                    for s in (100, 200)
                ]
                cell.update(selection_seconds=58.0, selection_bill={"stages": stages})
            if arm == "filtered":
                cell["selection_seconds"] = 31.0
            cells.append(cell)
    return cells


FIGURES = {
    "task_sizes": lambda: plots.plot_task_sizes(
        {
            "tasks": {t: {"available": 164, "sampled": 164, "select": 82, "report": 82} for t in TASKS},
            "select_fraction": 0.5,
            "seed": 42,
        }  # fmt: skip
    ),
    "validation_lengths": lambda: plots.plot_validation_lengths(
        {
            t: {"labels": [[-100] * int(n) + [1] * int(m) for n, m in RNG.integers(20, 200, (80, 2))]}
            for t in TASKS
        }
    ),
    "corpus_lengths": lambda: plots.plot_corpus_lengths(
        RNG.lognormal(7, 1.5, 900).astype(int) + 1,
        {"doc_ids": [[1] * int(k) for k in RNG.integers(1, 6, 500)]},
        256,
    ),
    "dropped": lambda: plots.plot_dropped(
        {
            "documents": {
                "documents_kept": 931,
                "documents_read": 2169,
                "dropped": {
                    r: {"documents": int(n)}
                    for r, n in zip(
                        [
                            "quality",
                            "exact_duplicate",
                            "near_duplicate",
                            "readable",
                            "contaminated",
                            "bad_row",
                        ],
                        [900, 200, 41, 90, 0, 7],
                        strict=True,
                    )
                },
            }
        }  # fmt: skip
    ),
    "training_curves": lambda: plots.plot_training_curves(log_history()),
    "score_distributions": lambda: plots.plot_score_distributions(
        scores_dataset(), "adam_update scores at step 300"
    ),
    "correlation_heatmap": lambda: plots.plot_correlation_heatmap(
        np.corrcoef(RNG.normal(size=(6, 50))), TASKS, "between tasks (adam_update, step 300)"
    ),
    "fast_vs_exact": lambda: plots.plot_fast_vs_exact(
        RNG.normal(size=100), RNG.normal(size=100), "humaneval", "adam_update", 0.977
    ),
    "feature_effects": lambda: plots.plot_feature_effects(features_frame(), "z"),
    "selection_histogram": lambda: plots.plot_selection_histogram(
        RNG.normal(size=2000), np.argsort(RNG.normal(size=2000))[:400], "influence_mean (gumbel_top_k)"
    ),
    "package_shares": lambda: plots.plot_package_shares(
        [
            {
                "package": f"pkg_{i}_with_a_long_name",
                "share_kept": float(RNG.uniform()),
                "kept": 10,
                "candidates": 50,
            }
            for i in range(15)
        ]  # fmt: skip
    ),
    "results_1_seed": lambda: plots.plot_results_table(results_summary(1), ["humaneval", "mbpp"]),
    "results_3_seeds": lambda: plots.plot_results_table(results_summary(3), ["humaneval", "mbpp"]),
    "results_5_seeds_3_tasks": lambda: plots.plot_results_table(results_summary(5, TASKS[:3]), TASKS[:3]),
    "learning_curve": lambda: plots.plot_learning_curve(
        [
            {
                "labels": n,
                **{
                    t: {"spearman": 0.3 + np.log(n) / 20, "top20_precision": 0.25 + np.log(n) / 30}
                    for t in TASKS[:2]
                },
            }
            for n in (50, 100, 250, 500)
        ],
        TASKS[:2],  # fmt: skip
    ),
    "predictor_comparison": lambda: plots.plot_predictor_comparison(
        {
            n: {t: {"spearman": float(RNG.uniform(0.2, 0.8))} for t in TASKS[:2]}
            for n in ("ngram_ridge", "embedding_ridge", "combined_ridge", "finetuned_head")
        },
        TASKS[:2],  # fmt: skip
    ),
    "predicted_vs_oracle": lambda: plots.plot_predicted_vs_oracle(
        RNG.normal(size=(300, 2)),
        RNG.normal(size=(300, 2)),
        TASKS[:2],
        {t: {"spearman": 0.78, "top20_precision": 0.6} for t in TASKS[:2]},  # fmt: skip
    ),
    "selection_cost": lambda: plots.plot_selection_cost(
        {"label_seconds": 45.2, "train_seconds": 12.0, "predict_seconds": 6.2, "oracle_pool_seconds": 180.9}
    ),
    "loss_over_training_1_seed": lambda: plots.plot_loss_over_training(
        pretrain_selected_cells(1), ["humaneval", "mbpp"], ["full", "random", "filtered", "mates"]
    ),
    "loss_over_training_3_seeds": lambda: plots.plot_loss_over_training(
        pretrain_selected_cells(3), ["humaneval", "mbpp"], ["full", "random", "filtered", "mates"]
    ),
    "arm_training_losses": lambda: plots.plot_arm_training_losses(
        {arm: {s: 5 - s / 60 + i / 20 for s in range(310, 326, 1)} for i, arm in enumerate(ARMS[:8])}, 42
    ),
    "effect_intervals": lambda: plots.plot_effect_intervals(
        {f"{t}: step 100 vs 300": (0.36, 0.30, 0.41) for t in TASKS}, "Spearman between checkpoints"
    ),
    "cross_task_matrix": lambda: plots.plot_cross_task_matrix(RNG.normal(0, 0.1, (4, 6)), TASKS[:4], TASKS),
    "group_heatmap": lambda: plots.plot_group_heatmap(
        RNG.normal(0, 0.3, (4, 6)),
        ["python (1667)", "cpp (257)", "c (65)", "javascript (11)"],
        TASKS,
        "mean z-score by block language",  # fmt: skip
    ),
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_every_kit_figure_reads_cleanly_at_its_real_size(name):
    fig = FIGURES[name]()
    try:
        assert figure_problems(fig) == []
    finally:
        plt.close(fig)


def test_the_results_figure_says_one_seed_has_no_interval_and_colours_nothing():
    fig = plots.plot_results_table(results_summary(1), ["humaneval", "mbpp"])
    title = fig._suptitle.get_text()
    assert "1 seed: no interval" in title and "95%" not in title
    colours = {tuple(np.round(p.get_facecolor(), 3)) for ax in fig.axes for p in ax.patches}
    grey = tuple(np.round(matplotlib.colors.to_rgba("C7"), 3))
    assert colours == {grey}
    plt.close(fig)
    fig = plots.plot_results_table(results_summary(3), ["humaneval", "mbpp"])
    assert "3 seeds" in fig._suptitle.get_text() and "95%" in fig._suptitle.get_text()
    assert any(isinstance(c, ErrorbarContainer) for ax in fig.axes for c in ax.containers)
    plt.close(fig)


def test_a_one_seed_arm_among_arms_with_intervals_stays_in_the_table_only():
    """An hour-long arm run at one seed would set the scale with one bar and no interval."""
    summary = results_summary(3)
    summary["dear_arm"] = {
        "seeds": [42],
        **{f"vs_random/loss/{t}/report": (1.7, None) for t in ("humaneval", "mbpp")},
    }
    fig = plots.plot_results_table(summary, ["humaneval", "mbpp"])
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "dear_arm" not in " ".join(labels) and "in the table only: dear_arm" in fig._suptitle.get_text()
    assert fig.axes[0].get_xlim()[1] < 1.0  # the scale is the other arms'
    assert figure_problems(fig) == []
    plt.close(fig)


def test_zero_sits_inside_the_results_axis_with_a_margin():
    summary = {"random": {"vs_random/loss/humaneval/report": (None, None), "seeds": [1, 2, 3]},
               "worse": {"vs_random/loss/humaneval/report": (0.2, 0.01), "seeds": [1, 2, 3]}}  # fmt: skip
    fig = plots.plot_results_table(summary, ["humaneval"])
    low, high = fig.axes[0].get_xlim()
    assert low < 0 < high and -low > 0.01 * (high - low)
    plt.close(fig)


# the checks fire: a figure broken in each way a person would notice


def test_the_overlap_check_fires_on_crowded_ticks():
    fig, ax = plt.subplots(figsize=(2.2, 2))
    ax.barh([0, 1], [-0.0251, 0.0012])
    ax.set_xticks(np.linspace(-0.03, 0.005, 8))  # the "-0.0250.000" of an earlier results figure
    assert any("overlap" in p for p in figure_problems(fig))
    plt.close(fig)


def test_the_empty_panel_check_fires():
    fig, axes = plt.subplots(1, 2)
    axes[0].plot([0, 1], [1, 0])
    axes[1].axvline(0)
    axes[1].set_title("pass@1")
    assert figure_problems(fig) == ["pass@1: the panel is empty"]
    plt.close(fig)


def test_the_legend_check_fires_when_it_covers_points():
    fig, ax = plt.subplots(figsize=(4, 3))
    x = np.linspace(0, 1, 200)
    ax.scatter(x, np.ones_like(x), label="a row of points right under the legend")
    ax.legend(loc="center")
    assert any("legend covers" in p for p in figure_problems(fig))
    plt.close(fig)


def test_the_title_check_fires_when_no_interval_is_drawn():
    fig, ax = plt.subplots()
    ax.barh([0, 1], [-0.1, 0.2], xerr=[0, 0])
    fig.suptitle("Did selection beat random? (mean and 95% CI)")
    assert any("promises intervals" in p for p in figure_problems(fig))
    plt.close(fig)


def test_the_title_overlap_check_fires():
    fig, axes = plt.subplots(1, 2, figsize=(6, 2))
    for ax in axes:
        ax.plot([0, 1], [0, 1])
        ax.set_title("a title far too long for its narrow panel, running into the next one")
    assert any("titles" in p and "overlap" in p for p in figure_problems(fig))
    plt.close(fig)
