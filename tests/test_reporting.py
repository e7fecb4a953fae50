"""The numbers written into the docs come from a run's files, and only the marked blocks change."""

import json

import pytest

from codesift.reporting import headline_table, replace_block, timings_table, update_results_docs


def test_replace_block_changes_only_the_block():
    text = "before\n<!-- results:start note -->\nold\nlines\n<!-- results:end -->\nafter\n"
    assert (
        replace_block(text, "results", "new")
        == "before\n<!-- results:start note -->\nnew\n<!-- results:end -->\nafter\n"
    )
    with pytest.raises(ValueError, match="found 0"):
        replace_block("no markers", "results", "new")
    with pytest.raises(ValueError, match="found 2"):
        replace_block(text + text, "results", "new")


def results_json(tmp_path):
    summary = {
        "checkpoint (no continued training)": {
            "vs_random/loss/humaneval/report": [None, None],
            "selection_seconds": [0.0, None],
        },
        "random": {"vs_random/loss/humaneval/report": [None, None], "selection_seconds": [0.3, 0.01]},
        "influence_x": {
            "vs_random/loss/humaneval/report": [-0.1234, 0.02],
            "selection_seconds": [160.04, 0.0],
        },
    }
    experiment = tmp_path / "experiment"
    experiment.mkdir()
    (experiment / "results.json").write_text(
        json.dumps(
            {
                "summary": summary,
                "arguments": {
                    "table_tasks": ["humaneval"],
                    "fraction": 0.2,
                    "continue_steps": 25,
                    "checkpoint": "ckpt",
                },
                "cells": [{"arm": "random", "kept_blocks": 400}],
            }
        )
    )
    (experiment / "results.md").write_text(
        "# Results\n\n- Date: 2030-01-02; recipe\n- Machine: 2 CPU cores\n- Mean ± 95% CI (t) over 3 seed(s)\n\n| a |\n"
    )
    (experiment / "results.png").write_bytes(b"\x89PNG fake")
    return experiment


def test_headline_table_lists_arms_with_a_difference(tmp_path):
    table = headline_table(json.loads((results_json(tmp_path) / "results.json").read_text()))
    assert table.splitlines()[2] == "| influence_x | -0.123 ± 0.020 | 160.0 | - |"  # no seeds listed: -
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:]] == ["influence_x"]


def test_update_results_docs_writes_readme_page_and_image(tmp_path):
    experiment = results_json(tmp_path)
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    marker = "x\n<!-- results:start -->\nold\n<!-- results:end -->\ny\n"
    (root / "README.md").write_text(marker + "<!-- comparisons:start -->\nold\n<!-- comparisons:end -->\n")
    (root / "docs" / "06_experiment.md").write_text(marker)
    update_results_docs(experiment, root)
    readme = (root / "README.md").read_text()
    assert "| influence_x | -0.123 ± 0.020 | 160.0 |" in readme and "old" not in readme
    assert (
        "20% of a 2,000-block pool, 25 continued steps from `ckpt`; 2030-01-02; 2 CPU cores; 3 seed(s)."
        in readme
    )
    assert "| a |" in (root / "docs" / "06_experiment.md").read_text()
    assert (root / "docs" / "images" / "results.png").read_bytes() == b"\x89PNG fake"


def test_timings_table_sums_minutes():
    assert timings_table({"01_a": 60.0, "02_b": 90.0}).splitlines()[-1] == "| all | 2.5 |"


def test_predictor_table_reports_each_predictor_against_the_oracle(tmp_path):
    from codesift.reporting import predictor_table, update_predictor_docs

    stats = {"spearman": 0.75, "pearson": 0.7, "top20_precision": 0.6}
    bench = {
        "date": "2026-01-02",
        "machine": "2 cores",
        "labels": "`s`, 8 train / 2 held out",
        "oracle_seconds_per_block": {"adam_update": 0.08, "exact": 1.6},
        "predictors": {
            "ngram ridge": {
                "heldout": {"a": stats},
                "train_seconds": 1.25,
                "predict_seconds_per_block": 0.0001,
            }
        },
        "learning_curve": [{"labels": 100, "a": {**stats, "spearman": 0.5}}],
        "exact_labels": None,
    }
    table = predictor_table(bench)
    assert "| ngram ridge | 0.750 / 0.60 | 1.2 | 0.10 | 800 |" in table
    assert "| 100 | 0.500 |" in table and "`adam_update` 80 ms per block, exact 1600 ms" in table
    assert "Exact labels: not measured yet" in table
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "05_predictor.md").write_text(
        "x\n<!-- predictor:start -->\nold\n<!-- predictor:end -->\n"
    )
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    page = update_predictor_docs(tmp_path / "bench.json", tmp_path).read_text()
    assert "old" not in page and "2026-01-02; 2 cores" in page


def test_comparisons_are_paired_over_seeds_with_intervals():
    from codesift.reporting import comparisons_table, gain_ratio, paired_difference

    losses = {
        "random": [5.0, 5.1, 4.9],
        "influence_mean": [4.8, 4.9, 4.7],
        "predicted_mean": [4.9, 4.95, 4.8],
    }
    cells = [{"arm": arm, "seed": seed, "loss/humaneval/report": value}
             for arm, values in losses.items() for seed, value in zip((1, 2, 3), values, strict=True)]  # fmt: skip
    mean, ci, seeds = paired_difference(cells, "predicted_mean", "influence_mean", "humaneval")
    assert seeds == 3 and mean == pytest.approx(0.0833, abs=1e-3) and ci > 0
    ratio, low, high = gain_ratio(cells, "predicted_mean", "influence_mean", "humaneval")
    assert ratio == pytest.approx((0.1 + 0.15 + 0.1) / 3 / 0.2) and low <= ratio <= high
    table = comparisons_table({"cells": cells, "arguments": {"table_tasks": ["humaneval"]}})
    assert "| predicted_mean - influence_mean | +0.083 ± " in table and "58% [" in table
    assert "dsir_mean" not in table  # an arm that did not run is not compared
    assert (
        gain_ratio(cells[:2] + cells[3:5], "predicted_mean", "influence_mean", "humaneval") is None
    )  # one seed


def test_influence_bench_table_reports_every_variant_and_the_goals(tmp_path):
    """The benchmark block is the JSON's numbers: each variant's time, setup, speed-up and fidelity,
    and each goal named met only when its fastest variant reaches it."""
    from codesift.reporting import influence_bench_table, update_influence_bench_docs

    def variant(name, seconds, rho):
        return {"variant": name, "seconds_per_candidate": seconds, "setup_seconds": 2.0, "speedup": 1.5 / seconds,
                "x_training_cost": seconds / 0.05, "spearman": {"humaneval": rho, "mbpp": rho - 0.01},
                "top20_jaccard": {"humaneval": 0.9, "mbpp": 0.8}}  # fmt: skip

    bench = {
        "date": "2026-12-03", "machine": "2 CPU cores", "candidates": 100, "step": 300,
        "exact_seconds_per_candidate": 1.5, "exact_floor_ratio": 1.004, "exact_restore_share": 0.003,
        "mates_style_seconds_per_candidate": 4.0, "training_seconds_per_block": 0.05,
        "variants": [variant("adam_update batch 1", 0.1, 0.99), variant("adam_update batch 16 window 32", 0.025, 0.96)],
        "cheapest_at_0.95": "adam_update batch 16 window 32", "best_at_0.98": "adam_update batch 1",
    }  # fmt: skip
    table = influence_bench_table(bench)
    assert (
        "| `adam_update batch 16 window 32` | 0.025 | 2.0 | 0.50 | 60.0x | 0.960 / 0.950 | 0.90 / 0.80 |"
        in table
    )
    assert "is `adam_update batch 16 window 32`, 60.0x faster than exact (goal >= 50x: met)" in table
    assert "is `adam_update batch 1`, 15.0x faster than exact (goal >= 20x: not met)" in table
    bench["best_at_0.98"] = None
    assert "Spearman >= 0.98 on every task is none (goal >= 20x: not met)" in influence_bench_table(bench)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "03_influence.md").write_text(
        "a\n<!-- influence_bench:start x -->\nold\n<!-- influence_bench:end -->\nb\n"
    )
    page = update_influence_bench_docs(_write_json(tmp_path / "b.json", bench), tmp_path)
    assert "old" not in page.read_text() and "window 32" in page.read_text()


def _write_json(path, value):
    import json

    path.write_text(json.dumps(value))
    return path
