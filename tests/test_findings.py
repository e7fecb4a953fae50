"""The findings' numbers on hand-made scores: agreement, rank changes, extremes, intervals, groups."""

import numpy as np
import pytest

from codesift.findings import (
    agreement,
    agrees,
    bootstrap,
    extreme_stability,
    feature_effects,
    findings_table,
    group_means,
    rank_changes,
    top_shares,
)


def as_map(values, start=100):
    return {start + i: float(v) for i, v in enumerate(values)}


def test_agreement_between_score_sets_on_their_common_blocks():
    base = np.arange(10.0)
    sets = {
        "step 100": as_map(base),
        "step 200": as_map(base),
        "step 300": as_map(-base),
        "partial": {100 + i: float(v) for i, v in enumerate(base) if i >= 5},  # only blocks 105-109
    }
    found = agreement(sets, share=0.2)
    assert found["labels"] == list(sets)
    rho, top = found["spearman"], found["top_overlap"]
    assert rho[0, 1] == pytest.approx(1) and top[0, 1] == 1
    assert rho[0, 2] == pytest.approx(-1) and top[0, 2] == 0  # the top two become the bottom two
    # on the five blocks both hold, the same order: rank agreement 1, and the top one is shared
    assert rho[0, 3] == pytest.approx(1) and top[0, 3] == 1
    assert np.allclose(rho, rho.T) and np.allclose(np.diag(rho), 1)


def test_spearman_averages_tied_ranks():
    from codesift.findings import spearman
    from codesift.stats import ranks

    assert ranks([3.0, 1.0, 3.0, 2.0]).tolist() == [2.5, 0.0, 2.5, 1.0]
    flags = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])  # a feature most blocks share
    score = np.arange(10.0)
    # the same data in another order gives the same coefficient (ties carry no order)
    assert spearman(flags, score) == pytest.approx(spearman(flags[::-1], score[::-1]))
    from scipy.stats import spearmanr  # an independent implementation

    assert spearman(flags, score) == pytest.approx(spearmanr(flags, score).statistic)


def test_rank_changes_name_the_blocks_that_move_most():
    first = as_map([0, 1, 2, 3, 4])
    second = as_map([4, 1, 2, 3, 0])  # blocks 100 and 104 swap ends
    moved = rank_changes(first, second, count=2)
    assert {m["block_id"] for m in moved} == {100, 104}
    assert {round(m["moved"], 6) for m in moved} == {1.0, -1.0}
    assert next(m for m in moved if m["block_id"] == 100)["rank_second"] == 1.0


def test_extremes_kept_reversed_and_against_chance():
    rng = np.random.default_rng(0)
    values = rng.normal(size=200)
    same = extreme_stability(as_map(values), as_map(values), share=0.05)
    assert same == {"top": 1.0, "bottom": 1.0, "middle": 1.0, "chance": 0.05}
    flipped = extreme_stability(as_map(values), as_map(-values), share=0.05)
    assert flipped["top"] == 0 and flipped["bottom"] == 0
    # extremes that survive noise better than the middle: the signal is strongest at the ends
    noisy = extreme_stability(as_map(values), as_map(values + rng.normal(scale=0.3, size=200)), share=0.05)
    assert noisy["top"] > noisy["middle"] and noisy["bottom"] > noisy["middle"]


def test_bootstrap_intervals_hold_the_point_and_narrow_with_data():
    rng = np.random.default_rng(1)
    small, large = rng.normal(1.0, 1.0, 50), rng.normal(1.0, 1.0, 5000)
    point, low, high = bootstrap(np.mean, small, n=500, seed=3)
    assert low < point < high and point == pytest.approx(small.mean())
    assert bootstrap(np.mean, small, n=500, seed=3) == (point, low, high)  # seeded
    _, low_large, high_large = bootstrap(np.mean, large, n=500, seed=3)
    assert high_large - low_large < (high - low) / 5  # ~ 1/sqrt(100) as wide
    assert low_large < 1.0 < high_large


def test_groups_features_verdicts_and_the_table():
    values = np.array([1.0, 2.0, 3.0, 10.0, 11.0, 12.0])
    groups = np.array(["python", "python", "python", "cpp", "cpp", "cpp"])
    means = group_means(values, groups, n=200)
    assert means["python"][0] == pytest.approx(2.0) and means["cpp"][0] == pytest.approx(11.0)
    assert means["cpp"][1] >= 10.0 and means["cpp"][2] <= 12.0
    shares = top_shares(values, groups, share=0.5)
    assert shares == {"cpp": (1.0, 0.5), "python": (0.0, 0.5)}
    effects = feature_effects({"same": values, "reverse": -values}, values, n=200)
    assert effects["same"] == pytest.approx((1.0, 1.0, 1.0)) and effects["reverse"][0] == pytest.approx(-1.0)
    assert agrees("positive", 0.1, 0.3) == "yes" and agrees("positive", -0.1, 0.3) == "unclear"
    assert agrees("negative", 0.1, 0.3) == "no"
    table = findings_table(
        [{"finding": "extremes are stable", "paper": "yes", "measured": "0.61 [0.5, 0.7]", "agrees": "yes"}]
    )
    assert table.splitlines()[2] == "| extremes are stable | yes | 0.61 [0.5, 0.7] | yes |"


def write_scores(folder, ids, step, values: dict, rng) -> None:
    """Fabricated stage-03 scores ({task: array}) as `folder/step-<step>/adam_update`."""
    from datasets import Dataset

    Dataset.from_dict(
        {
            "block_id": ids,
            "step": [step] * len(ids),
            "method": ["adam_update"] * len(ids),
            **{f"influence_{t}": np.asarray(v).tolist() for t, v in values.items()},
            "candidate_loss": rng.uniform(2, 6, len(ids)).tolist(),
        }
    ).save_to_disk(str(folder / f"step-{step}" / "adam_update"))


def analysis_arguments(micro_corpus, tmp_path, **overrides):
    from codesift.configs import AnalysisArguments

    arguments = {
        "stages_dir": str(tmp_path / "scores"),
        "influence_dir": str(tmp_path / "scores"),
        "replicate_dir": str(tmp_path / "replicate"),
        "candidates": str(micro_corpus / "blocks"),
        "documents": str(micro_corpus / "documents"),
        "tokenizer": str(micro_corpus / "tokenizer"),
        "bootstrap": 200,
        "experiment_dir": str(tmp_path / "no_experiment"),
        "output_dir": str(tmp_path / "report"),
    }
    return AnalysisArguments(**{**arguments, **overrides})


def test_the_report_states_each_finding_with_its_numbers(micro_corpus, tmp_path):
    """The analysis stage on fabricated scores at two checkpoints (the second a noisy copy of the
    first): the table's numbers are the findings functions' on the same data, figures are written."""
    import json

    from datasets import load_from_disk

    from codesift.analysis import run_analysis_stage
    from codesift.findings import aligned, spearman

    pool = load_from_disk(str(micro_corpus / "blocks"))["candidates"]
    ids = [int(b) for b in pool["block_id"]]
    rng = np.random.default_rng(0)
    first = {t: rng.normal(size=len(ids)) for t in ("humaneval", "mbpp")}
    second = {t: v + rng.normal(scale=0.5, size=len(ids)) for t, v in first.items()}
    for step, values in ((4, first), (8, second)):
        write_scores(tmp_path / "scores", ids, step, values, rng)
    path = run_analysis_stage(analysis_arguments(micro_corpus, tmp_path))
    assert path == tmp_path / "report.md"  # beside the folder of figures, linked into it
    text = path.read_text()
    numbers = json.loads((tmp_path / "report" / "report.json").read_text())
    a, b, _ = aligned(
        dict(zip(ids, first["humaneval"], strict=True)), dict(zip(ids, second["humaneval"], strict=True))
    )
    rho = numbers["numbers"]["stages_humaneval"]["spearman_first_last"]
    assert rho[0] == pytest.approx(spearman(a, b)) and rho[1] < rho[0] < rho[2]
    assert f"Spearman {rho[0]:.2f} [{rho[1]:.2f}, {rho[2]:.2f}]" in text
    assert "| finding | paper | tiny run | agrees? |" in text
    assert "not measurable: the corpus holds python documents only" in text
    assert "not measured: no stage-06 results" in text
    figures = sorted(p.name for p in (tmp_path / "report" / "figures").glob("*.png"))
    assert figures == [
        "extremes.png",
        "features_humaneval.png",
        "features_mbpp.png",
        "stages_humaneval.png",
        "stages_mbpp.png",
        "tasks.png",
    ]
    assert all(f"figures/{name}" in text for name in figures)  # every figure is in the report
    # both tasks' extremes are judged, against the copula null
    assert "extreme scores are stable (humaneval, step 4 vs 8)" in text
    assert "extreme scores are stable (mbpp, step 4 vs 8)" in text and "Gaussian copula" in text
    # the page a person opens: every figure embedded, and in a browser every image loads
    page = tmp_path / "report.html"
    assert page.read_text().count('src="data:image/png;base64,') == len(figures)
    from browser import find_chromium, view_page

    if find_chromium():
        view = view_page(page, screenshot=tmp_path / "report.png")
        assert len(view.images) == len(figures) and all(i["complete"] and i["width"] > 0 for i in view.images)
        assert view.console_errors == [] and view.verdict_cells


def test_language_by_task_and_own_language_difference():
    from codesift.findings import group_difference, language_by_task, task_language

    z = {
        "humaneval": np.array([1.0, 3.0, -1.0, -3.0, 0.0]),
        "humaneval_x_cpp": np.array([-1.0, -1.0, 2.0, 4.0, 0.0]),
    }
    languages = ["python", "python", "cpp", "cpp", "c"]
    rows, tasks, matrix = language_by_task(z, languages)
    assert rows == ["c", "cpp", "python"] and tasks == ["humaneval", "humaneval_x_cpp"]
    assert matrix.tolist() == [[0.0, 0.0], [-2.0, 3.0], [2.0, -1.0]]
    point, low, high = group_difference(z["humaneval_x_cpp"], languages, "cpp", "python", n=200, seed=0)
    assert point == pytest.approx(4.0) and low <= point <= high
    assert [task_language(t) for t in ("mbpp", "humaneval_x_js", "humaneval_x_cpp")] == [
        "python",
        "javascript",
        "cpp",
    ]


def test_arm_rows_are_paired_differences_over_seeds_with_their_verdicts():
    from codesift.analysis import Report, arm_rows

    def cell(arm, seed, loss):
        return {"arm": arm, "seed": seed, "loss/a/report": loss}

    cells = [cell("random5", s, 5.0 + 0.01 * s) for s in (1, 2, 3)]
    cells += [cell("top5_mean", s, 4.8 + 0.01 * s + 0.001 * s * s) for s in (1, 2, 3)]  # about -0.2
    cells += [cell("middle5_mean", s, 5.0 + 0.01 * s + (0.01 if s == 2 else -0.005)) for s in (1, 2, 3)]
    report = Report()
    arm_rows(report, cells, ["a"])
    rows = {row["finding"].split(" (")[0]: row for row in report.rows}
    assert set(rows) == {"training on the top 5% beats a random 5%", "the middle 5% is like a random 5%"}
    mean, low, high, seeds = report.numbers["arm top5_mean - random5 a"]
    assert mean == pytest.approx(-0.2 + 0.001 * (1 + 4 + 9) / 3) and seeds == 3 and low < mean < high < 0
    assert rows["training on the top 5% beats a random 5%"]["agrees"] == "yes"
    assert rows["the middle 5% is like a random 5%"]["agrees"] == "yes"  # its interval holds 0


def test_block_text_features_by_hand():
    from codesift.analysis import docstring_share, identifier_share, repeated_lines

    text = 'def f(x):\n    """Doc."""\n    return x + 1\nreturn x + 1\n'
    assert docstring_share(text) == pytest.approx(len('"""Doc."""') / len(text))
    assert repeated_lines(text) == pytest.approx(1 / 4)  # the last line repeats the third
    assert identifier_share("a = b1 + 2") == pytest.approx(2 / 5)  # a, b1 of a = b1 + 2


def correlated(rho_spearman: float, size: int, seed: int):
    """Two score sets from a plain Gaussian copula with the given Spearman: no tail structure."""
    rng = np.random.default_rng(seed)
    r = 2 * np.sin(np.pi * rho_spearman / 6)
    x = rng.standard_normal(size)
    return x, r * x + np.sqrt(1 - r * r) * rng.standard_normal(size)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_extremes_are_not_stable_when_correlation_alone_explains_them(seed):
    from codesift.findings import extreme_overlaps, extremes_beyond_correlation

    a, b = correlated(0.36, 1000, seed)
    found = extremes_beyond_correlation(a, b, 0.05, draws=300, seed=seed)
    assert 0.3 < found["spearman"] < 0.42
    assert found["stable"] == "no", found
    # the middle-band control that the rule replaces says "more stable than the middle" here
    old = extreme_overlaps(a, b, 0.05)
    assert (old["top"] + old["bottom"]) / 2 > old["middle"]


def test_extremes_that_stay_beyond_the_correlation_are_stable():
    from codesift.findings import extremes_beyond_correlation

    a, b = correlated(0.36, 1000, 7)
    order = np.argsort(a)
    tails = np.concatenate([order[:50], order[-50:]])
    b[tails] = a[tails] * 3  # the extremes of a stay extreme in b; the bulk is only weakly related
    found = extremes_beyond_correlation(a, b, 0.05, draws=300, seed=7)
    assert found["stable"] == "yes" and found["p_value"] < 0.05, found


def test_clustered_intervals_are_wider_when_blocks_come_from_few_documents():
    from codesift.findings import group_difference

    rng = np.random.default_rng(0)
    # 200 C++ blocks from 2 documents whose blocks share a document-level offset, 400 Python blocks from 100
    cpp_docs = np.repeat(["cpp_a", "cpp_b"], 100)
    py_docs = np.repeat([f"py_{i}" for i in range(100)], 4)
    offsets = {"cpp_a": 0.9, "cpp_b": -0.3, **{d: rng.normal(0, 0.2) for d in sorted(set(py_docs))}}
    docs = np.concatenate([cpp_docs, py_docs])
    values = np.array([offsets[d] for d in docs]) + rng.normal(0, 0.3, len(docs))
    groups = np.array(["cpp"] * 200 + ["python"] * 400)
    blocks = group_difference(values, groups, "cpp", "python", n=500)
    clustered = group_difference(values, groups, "cpp", "python", n=500, clusters=docs)
    assert blocks[0] == clustered[0]
    assert (clustered[2] - clustered[1]) > 3 * (blocks[2] - blocks[1])
    assert clustered[1] < 0 < clustered[2] and not blocks[1] < 0 < blocks[2]  # only blocks call it "yes"


@pytest.mark.parametrize("packages, verdict", [(2, "unclear"), (10, "yes")])
def test_a_language_finding_on_few_packages_is_unclear(tmp_path, packages, verdict):
    """C++ blocks that help a C++ task: with their blocks from 2 packages the package bootstrap has
    a handful of distinct draws, so the finding is unclear however strong it looks."""
    from types import SimpleNamespace

    from datasets import Dataset

    from codesift.analysis import Report, languages_section

    rng = np.random.default_rng(0)
    ids = list(range(400))
    languages = ["cpp"] * 100 + ["python"] * 300
    scores = Dataset.from_dict({"block_id": ids, "influence_humaneval_x_cpp": [
        rng.normal(1.0 if lang == "cpp" else 0.0, 0.3) for lang in languages]})  # fmt: skip
    clusters = {b: f"cpp_pkg_{b % packages}" if lang == "cpp" else f"py_pkg_{b % 30}"
                for b, lang in zip(ids, languages, strict=True)}  # fmt: skip
    report = Report()
    args = SimpleNamespace(top_share=0.2, bootstrap=200, seed=0)
    languages_section(report, scores, dict(zip(ids, languages, strict=True)), args, tmp_path, clusters)
    row = next(r for r in report.rows if r["finding"].startswith("cpp blocks help"))
    assert row["agrees"] == verdict and f"from {packages} vs 30 packages" in row["measured"]


def runs_of(latent, noise, runs, seed):
    """`runs` score sets of one latent ranking, each with its own noise: one setting, several seeds."""
    rng = np.random.default_rng(seed)
    return [latent + noise * rng.standard_normal(latent.size) for _ in range(runs)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rankings_as_alike_as_two_runs_do_not_vary(seed):
    """Two checkpoints that agree at Spearman ~0.36, exactly as much as two seeds of the warm-up
    agree at one checkpoint: nothing varies beyond run-to-run noise, so "no". The old rule (an
    interval below 0.9) said "yes" to any such pair."""
    from codesift.findings import bootstrap, spearman, varies_beyond_runs

    latent = np.random.default_rng(100 + seed).standard_normal(1000)
    first, last, again = runs_of(latent, 1.2, 3, seed)
    found = varies_beyond_runs((first, last), [(last, again)], n=300, seed=seed)
    assert 0.28 < found["spearman"] < 0.45 and 0.28 < found["ceiling"] < 0.45, found
    assert found["varies"] == "no", found
    assert bootstrap(spearman, first, last, n=300, seed=seed)[2] < 0.9  # the old rule's "yes"


def test_rankings_that_agree_less_than_two_runs_vary():
    from codesift.findings import varies_beyond_runs

    rng = np.random.default_rng(3)
    latent_then, latent_now = rng.standard_normal(1000), rng.standard_normal(1000)
    first = runs_of(latent_then, 0.5, 1, 4)[0]
    last, again = runs_of(0.3 * latent_then + latent_now, 0.5, 2, 5)
    found = varies_beyond_runs((first, last), [(last, again)], n=300, seed=0)
    assert found["varies"] == "yes" and found["gap"][1] > 0, found
    # the ceiling is the lowest of several replicate pairs: two tasks, each against its second run
    noisy = runs_of(latent_now, 3.0, 2, 6)
    low = varies_beyond_runs((first, last), [(last, again), tuple(noisy)], n=300, seed=0)
    assert low["ceiling"] < found["ceiling"] and low["varies"] != "yes", low
    with pytest.raises(ValueError, match="replicate"):
        varies_beyond_runs((first, last), [], n=10)


def test_too_few_blocks_to_tell_is_unclear():
    from codesift.findings import varies_beyond_runs

    latent = np.random.default_rng(8).standard_normal(20)
    first, last, again = runs_of(latent, 1.0, 3, 9)
    assert varies_beyond_runs((first, last), [(last, again)], n=300, seed=0)["varies"] == "unclear"


@pytest.mark.parametrize("replicate", ["none", "same_noise", "exact_copy"])
def test_the_reports_varies_verdicts_rest_on_the_second_warm_up(micro_corpus, tmp_path, replicate):
    """The analysis stage: step 4 vs 8 agree at ~0.9. With no second warm-up the finding is unclear
    (no fixed threshold stands in); with one as noisy as the gap between steps, "no"; with one that
    reproduces step 8 exactly (a ceiling of 1), "yes"."""
    import json

    from datasets import load_from_disk

    from codesift.analysis import run_analysis_stage

    pool = load_from_disk(str(micro_corpus / "blocks"))["candidates"]
    ids = [int(b) for b in pool["block_id"]]
    rng = np.random.default_rng(0)
    latent = {t: rng.normal(size=len(ids)) for t in ("humaneval", "mbpp")}
    first = {t: v + rng.normal(scale=0.3, size=len(ids)) for t, v in latent.items()}
    second = {t: v + rng.normal(scale=0.3, size=len(ids)) for t, v in latent.items()}
    for step, values in ((4, first), (8, second)):
        write_scores(tmp_path / "scores", ids, step, values, rng)
    if replicate != "none":
        again = (
            second
            if replicate == "exact_copy"
            else {t: v + rng.normal(scale=0.3, size=len(ids)) for t, v in latent.items()}
        )
        write_scores(tmp_path / "replicate", ids, 8, again, rng)
    run_analysis_stage(analysis_arguments(micro_corpus, tmp_path, bootstrap=300))
    rows = json.loads((tmp_path / "report" / "report.json").read_text())["rows"]
    stages = [r for r in rows if r["finding"].startswith("beneficial data change across training stages")]
    assert len(stages) == 2
    expected = {"none": "unclear", "same_noise": "no", "exact_copy": "yes"}[replicate]
    assert all(r["agrees"] == expected for r in stages), stages
    if replicate == "none":
        assert all("no run-to-run ceiling" in r["measured"] for r in stages)
    else:
        assert all("two seeds of the warm-up agree at" in r["measured"] for r in stages)


def test_why_the_bootstrap_is_not_scipys():
    """The two ways it differs from scipy.stats.bootstrap (a test, so the hand-written one stays only
    while they hold): undefined draws are dropped, not a NaN interval; clusters are resampled whole."""
    import warnings

    from scipy.stats import bootstrap as scipy_bootstrap

    from codesift.findings import bootstrap
    from codesift.stats import spearman

    feature = np.array([0, 0, 0, 0, 0, 0, 0, 1.0, 2.0, 3.0])  # most blocks tied: some resamples all-tied
    score = np.arange(10.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = scipy_bootstrap((feature, score), spearman, paired=True, vectorized=False, n_resamples=300,
                                 method="percentile", random_state=0).confidence_interval  # fmt: skip
    assert np.isnan(theirs.low) and np.isnan(theirs.high)
    point, low, high = bootstrap(spearman, feature, score, n=300, seed=0)
    assert np.isfinite(low) and low <= point <= high
    # scipy's Spearman and ranks are what the kit uses (ties averaged)
    from scipy.stats import spearmanr

    assert spearman(feature, score) == pytest.approx(spearmanr(feature, score).statistic)


def test_the_report_says_when_the_experiment_folder_holds_another_runs_table(tmp_path):
    """After `make demo` or notebook 06, the experiment folder's results.json is their two-arm table,
    not `make table`'s: the report says the extremes were not measured instead of dropping them."""
    import json

    from codesift.analysis import Report, experiment_findings

    experiment = tmp_path / "tiny" / "experiment"
    experiment.mkdir(parents=True)
    strategies = [
        {"name": "influence_mean", "strategy": "gumbel_top_k"},
        {"name": "predicted_mean", "strategy": "gumbel_top_k"},
    ]
    (experiment / "results.json").write_text(
        json.dumps({"arguments": {"strategies": strategies, "table_tasks": []}, "cells": []})
    )
    report = Report()
    experiment_findings(report, experiment, tmp_path)
    assert len(report.rows) == 1 and "is another run's table (2 arms" in report.rows[0]["measured"]
    assert report.rows[0]["measured"].startswith("not measured") and not report.sections
