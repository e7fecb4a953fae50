"""Stage 04: selection strategies, their sizes and seeds, the written output, and bad inputs."""

import json
import math

import numpy as np
import pytest
from datasets import Dataset, load_from_disk

from codesift.configs import SelectionArguments
from codesift.data import DataError
from codesift.selection import (
    SelectionError,
    gumbel_top_k,
    run_selection_stage,
    select,
    top_k,
    zscore,
)


@pytest.fixture(scope="module")
def pool(micro_corpus):
    return load_from_disk(str(micro_corpus / "blocks"))["candidates"]


def fake_scores(block_ids, seed=0, **replace):
    """A stage-03-shaped scores dataset with seeded values (shuffled rows, as shards may be)."""
    rng = np.random.default_rng(seed)
    ids = list(rng.permutation(block_ids))
    columns = {
        "block_id": ids,
        "step": [8] * len(ids),
        "method": ["adam_update"] * len(ids),
        "influence_humaneval": rng.normal(0, 0.01, len(ids)).tolist(),
        "influence_mbpp": rng.normal(0, 0.03, len(ids)).tolist(),
        "candidate_loss": rng.uniform(2, 6, len(ids)).tolist(),
    }
    columns.update(replace)
    return Dataset.from_dict(columns)


@pytest.fixture(scope="module")
def scores_dir(pool, tmp_path_factory):
    path = tmp_path_factory.mktemp("scores") / "step-8" / "adam_update"
    fake_scores([int(b) for b in pool["block_id"]]).save_to_disk(str(path))
    return path


def args_for(micro_corpus, scores_dir, tmp_path, **overrides):
    fields = dict(
        scores=str(scores_dir),
        candidates=str(micro_corpus / "blocks"),
        documents=str(micro_corpus / "documents"),
        tasks=["humaneval"],
        fraction=0.2,
        output_dir=str(tmp_path / "selection"),
    )
    return SelectionArguments(**{**fields, **overrides})


def score_by_block(scores_dir, column):
    scores = load_from_disk(str(scores_dir))
    return dict(zip(scores["block_id"], scores[column], strict=True))


@pytest.mark.parametrize(
    "strategy,extra,size",
    [
        ("top_k", {}, 8),
        ("gumbel_top_k", {"temperature": 0.5}, 8),
        ("random", {}, 8),
        ("perplexity", {"perplexity_band": "middle"}, 8),
        ("full", {}, 40),
        ("top_k", {"tasks": ["humaneval", "mbpp"], "aggregate": "min"}, 8),
    ],
)
def test_each_strategy_keeps_its_size_and_repeats_itself(
    micro_corpus, scores_dir, tmp_path, strategy, extra, size
):
    args = args_for(micro_corpus, scores_dir, tmp_path, strategy=strategy, **extra)
    first, second = select(args), select(args)
    assert len(first.blocks) == size == first.metadata["kept_blocks"]
    assert list(first.blocks["block_id"]) == list(second.blocks["block_id"])
    assert first.metadata["strategy"] == strategy and first.metadata["seed"] == 42


def test_top_k_keeps_the_highest_scores(micro_corpus, scores_dir, tmp_path):
    chosen = select(args_for(micro_corpus, scores_dir, tmp_path, strategy="top_k")).blocks
    values = score_by_block(scores_dir, "influence_humaneval")
    best = sorted(values, key=values.get, reverse=True)[:8]
    assert sorted(chosen["block_id"]) == sorted(best)
    # the kept rows carry their scores, joined by block_id
    for block_id, value in zip(chosen["block_id"], chosen["influence_humaneval"], strict=True):
        assert value == pytest.approx(values[block_id])


def test_aggregate_is_the_mean_of_per_task_z_scores(micro_corpus, scores_dir, tmp_path, pool):
    chosen = select(
        args_for(micro_corpus, scores_dir, tmp_path, strategy="top_k", tasks=["humaneval", "mbpp"])
    )
    ids = [int(b) for b in pool["block_id"]]
    he, mb = score_by_block(scores_dir, "influence_humaneval"), score_by_block(scores_dir, "influence_mbpp")
    mean_z = (zscore([he[b] for b in ids]) + zscore([mb[b] for b in ids])) / 2
    assert sorted(chosen.blocks["block_id"]) == sorted(ids[i] for i in np.argsort(-mean_z)[:8])
    weighted = select(
        args_for(
            micro_corpus,
            scores_dir,
            tmp_path,
            strategy="top_k",
            tasks=["humaneval", "mbpp"],
            aggregate="weighted",
            weights={"humaneval": 1.0, "mbpp": 0.0},
        )  # fmt: skip
    )
    alone = select(args_for(micro_corpus, scores_dir, tmp_path, strategy="top_k"))
    assert sorted(weighted.blocks["block_id"]) == sorted(alone.blocks["block_id"])


def test_gumbel_top_k_at_zero_temperature_is_top_k():
    values = np.random.default_rng(3).normal(size=500)
    assert np.array_equal(gumbel_top_k(values, 100, 0.0, seed=1), top_k(values, 100))
    assert np.array_equal(gumbel_top_k(values, 100, 1e-9, seed=1), top_k(values, 100))
    noisy = [set(gumbel_top_k(values, 100, 1.0, seed=s)) for s in (1, 2)]
    assert noisy[0] != noisy[1]  # a real temperature samples
    overlap = len(noisy[0] & set(top_k(values, 100))) / 100
    assert 0.2 < overlap < 1.0  # ...but still prefers high values over chance (0.2)


def test_random_baseline_differs_across_seeds_not_within(micro_corpus, scores_dir, tmp_path):
    def ids(seed):
        return list(
            select(args_for(micro_corpus, scores_dir, tmp_path, strategy="random", seed=seed)).blocks[
                "block_id"
            ]
        )

    assert ids(1) == ids(1)
    assert ids(1) != ids(2)


def test_threshold_and_perplexity_bands(micro_corpus, scores_dir, tmp_path):
    values = score_by_block(scores_dir, "influence_humaneval")
    cut = sorted(values.values())[-5]
    kept = select(args_for(micro_corpus, scores_dir, tmp_path, strategy="threshold", threshold=cut)).blocks
    assert sorted(kept["block_id"]) == sorted(b for b, v in values.items() if v >= cut)
    losses = score_by_block(scores_dir, "candidate_loss")
    low = select(
        args_for(micro_corpus, scores_dir, tmp_path, strategy="perplexity", perplexity_band="low")
    ).blocks
    high = select(
        args_for(micro_corpus, scores_dir, tmp_path, strategy="perplexity", perplexity_band="high")
    ).blocks
    assert sorted(low["block_id"]) == sorted(sorted(losses, key=losses.get)[:8])
    assert max(losses[b] for b in low["block_id"]) < min(losses[b] for b in high["block_id"])


def test_stage_writes_blocks_parquet_report_and_plots(micro_corpus, scores_dir, tmp_path):
    from codesift.data import load_blocks

    args = args_for(micro_corpus, scores_dir, tmp_path, strategy="gumbel_top_k", name="he_gumbel")
    metadata = run_selection_stage(args)
    out = tmp_path / "selection"
    blocks = load_blocks(str(out / "blocks"))  # what scripts/pretrain.py --blocks reads
    assert len(blocks) == 8 and "input_ids" in blocks.column_names
    parquet = Dataset.from_parquet(str(out / "data" / "train-00000-of-00001.parquet"))
    assert sorted(parquet["block_id"]) == sorted(blocks["block_id"])
    report = json.loads((out / "selection.json").read_text())
    assert (
        report["name"] == "he_gumbel"
        and report["temperature"] == 0.25
        and report == json.loads(json.dumps(metadata))
    )
    assert report["kept_tokens"] == 8 * len(blocks[0]["input_ids"])
    assert sum(row["kept"] for row in report["packages"]) == 8
    assert sum(row["candidates"] for row in report["packages"]) == 40
    assert report["sources"] == [{"source": "dir", "candidates": 40, "kept": 8, "share_kept": 0.2}]
    assert (out / "plots" / "score_histogram.png").stat().st_size > 0
    assert (out / "plots" / "kept_by_package.png").stat().st_size > 0


def test_kept_blocks_are_written_as_ordered_parquet_shards(pool, tmp_path):
    from codesift.selection import write_parquet_shards

    paths = write_parquet_shards(pool, tmp_path / "data", max_shard_bytes=pool.data.nbytes // 3 + 1)
    assert [p.name for p in paths] == [f"train-{i:05d}-of-00003.parquet" for i in range(3)]
    rows = [row for p in paths for row in Dataset.from_parquet(str(p))["block_id"]]
    assert rows == list(pool["block_id"])  # every block once, in order
    assert len(write_parquet_shards(pool, tmp_path / "one")) == 1
    # a filtered selection is sized by its own rows, not by the whole table it points into
    half = pool.filter(
        lambda ids: [i % 2 == 0 for i in range(len(ids))], input_columns="block_id", batched=True
    )
    assert len(write_parquet_shards(half, tmp_path / "half", max_shard_bytes=pool.data.nbytes // 3 + 1)) == 2


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"fraction": 0.0}, "fraction must be in"),
        ({"fraction": 1.5}, "fraction must be in"),
        ({"fraction": math.nan}, "fraction must be in"),
        ({"tasks": ["apps"]}, r"task\(s\) \['apps'\] not in the scores"),
        ({"strategy": "best"}, "unknown strategy"),
        ({"strategy": "threshold"}, "needs `threshold`"),
        ({"tasks": ["humaneval", "mbpp"], "aggregate": "median"}, "unknown aggregate"),
    ],
)
def test_bad_arguments_fail_and_write_nothing(micro_corpus, scores_dir, tmp_path, overrides, message):
    with pytest.raises(SelectionError, match=message):
        run_selection_stage(args_for(micro_corpus, scores_dir, tmp_path, **overrides))
    assert not (tmp_path / "selection").exists()


def test_bad_scores_fail_naming_the_block_and_write_nothing(micro_corpus, pool, tmp_path):
    ids = [int(b) for b in pool["block_id"]]
    partial = tmp_path / "partial"
    fake_scores(ids[:-3]).save_to_disk(str(partial))
    with pytest.raises(SelectionError, match="3 of 40 candidates have no score"):
        run_selection_stage(args_for(micro_corpus, partial, tmp_path, strategy="top_k"))
    values = list(fake_scores(ids)["influence_humaneval"])
    values[7] = math.inf
    broken = tmp_path / "broken"
    fake_scores(ids, influence_humaneval=values).save_to_disk(str(broken))
    bad_block = fake_scores(ids)["block_id"][7]
    with pytest.raises(SelectionError, match=f"non-finite value.*influence_humaneval.*block_id {bad_block}"):
        run_selection_stage(args_for(micro_corpus, broken, tmp_path, strategy="top_k"))
    with pytest.raises(DataError, match="no scores dataset"):
        run_selection_stage(args_for(micro_corpus, tmp_path / "nowhere", tmp_path, strategy="top_k"))
    assert not (tmp_path / "selection").exists()


def test_dsir_weights_by_hand_and_it_resamples_towards_the_target():
    from collections import Counter

    from codesift.dsir import importance_log_weights, resample
    from codesift.ngrams import hashed_ngrams

    targets = [[5, 6, 5, 6, 5], [6, 5, 7]]
    pool = [[5, 6, 5, 6], [8, 9, 8, 9], [5, 8, 6, 9], [9, 9, 9, 7]]
    bits = 10
    got = importance_log_weights(pool, targets, orders=(1,), hash_bits=bits)

    # by hand: unigram models with add-one smoothing over all 2**bits buckets
    def model(sequences):
        counts = Counter(int(hashed_ngrams([t], (1,), bits)[0]) for ids in sequences for t in ids)
        total = sum(counts.values()) + (1 << bits)
        return lambda token: math.log((counts[int(hashed_ngrams([token], (1,), bits)[0])] + 1) / total)

    target, raw = model(targets), model(pool)
    expected = [sum(target(t) - raw(t) for t in ids) for ids in pool]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert got[0] > got[2] > got[1]  # all target tokens > half > none
    # resampling draws in proportion to the weights: w = (1, 3) -> the second about 3 times in 4
    picks = [int(resample(np.log([1.0, 3.0]), 1, seed)[0]) for seed in range(4000)]
    assert abs(np.mean(picks) - 0.75) < 0.03


def test_dsir_and_reverse_strategies_on_the_pool(micro_corpus, scores_dir, tmp_path, pool):
    base = {"target_sets": str(micro_corpus / "validation_tokenized")}
    one = select(args_for(micro_corpus, scores_dir, tmp_path, strategy="dsir", **base), pool)
    again = select(args_for(micro_corpus, scores_dir, tmp_path, strategy="dsir", **base), pool)
    assert len(one.blocks) == 8 and list(one.kept) == list(again.kept)
    assert one.metadata["target_sets"] == base["target_sets"]
    # reverse keeps the k lowest scores: the sanity arm
    low = select(args_for(micro_corpus, scores_dir, tmp_path, strategy="top_k", reverse=True), pool)
    values = score_by_block(scores_dir, "influence_humaneval")
    ranked = sorted(values, key=values.get)
    assert sorted(low.blocks["block_id"]) == sorted(ranked[:8])
    cold = select(
        args_for(micro_corpus, scores_dir, tmp_path, strategy="gumbel_top_k", temperature=0.0, reverse=True),
        pool,
    )
    assert sorted(cold.blocks["block_id"]) == sorted(ranked[:8])
    with pytest.raises(SelectionError, match="reverse applies to top_k and gumbel_top_k"):
        select(args_for(micro_corpus, scores_dir, tmp_path, strategy="random", reverse=True), pool)
    with pytest.raises(SelectionError, match="dsir: cannot read target_sets"):
        select(
            args_for(micro_corpus, scores_dir, tmp_path, strategy="dsir", target_sets=str(tmp_path / "no")),
            pool,
        )


def test_middle_band_keeps_the_scores_around_the_median(micro_corpus, scores_dir, tmp_path, pool):
    middle = select(args_for(micro_corpus, scores_dir, tmp_path, strategy="middle"), pool)
    values = score_by_block(scores_dir, "influence_humaneval")
    ranked = sorted((values[int(b)], int(b)) for b in pool["block_id"])
    start = (len(ranked) - 8) // 2
    assert sorted(middle.blocks["block_id"]) == sorted(b for _, b in ranked[start : start + 8])


def test_quantile_cut_from_a_sample_keeps_about_the_top_fraction(tmp_path):
    """10,000 scores, the cut estimated on 2,000 of them: about 20% kept, nearly all of the true top 20%."""
    from codesift.selection import quantile_selection

    n = 10_000
    scores = fake_scores(list(range(n)), seed=3, step=[8] * n, method=["m"] * n, candidate_loss=[0.0] * n)
    args = SelectionArguments(tasks=["humaneval", "mbpp"], fraction=0.2, quantile_sample=2_000, seed=1)
    cut, kept = quantile_selection(scores, args)
    columns = {c: np.asarray(scores[c]) for c in ("influence_humaneval", "influence_mbpp")}
    exact = sum((v - v.mean()) / v.std() for v in columns.values()) / 2
    ids = np.asarray(scores["block_id"])
    truth = set(ids[np.argsort(-exact)[: n // 5]].tolist())
    assert 0.18 * n <= len(kept) <= 0.22 * n
    assert len(truth & set(kept)) / len(truth) > 0.95
    assert all(exact[np.flatnonzero(ids == b)[0]] >= cut - 0.05 for b in kept[:50])
    one_task = SelectionArguments(tasks=["mbpp"], fraction=0.1, quantile_sample=n, seed=1)
    cut, kept = quantile_selection(scores, one_task)  # the whole pool as the sample: the exact cut
    assert cut == pytest.approx(np.quantile(columns["influence_mbpp"], 0.9))
    assert len(kept) == n // 10


def test_quantile_strategy_selects_from_the_pool(micro_corpus, scores_dir, tmp_path, pool):
    args = args_for(micro_corpus, scores_dir, tmp_path, strategy="quantile", quantile_sample=40)
    chosen = select(args, pool)
    top = select(args_for(micro_corpus, scores_dir, tmp_path, strategy="top_k"), pool)
    # the whole pool is the sample here, so the cut is exact: the top 20% (ties aside)
    assert abs(len(chosen.blocks) - 8) <= 1
    assert len(set(top.blocks["block_id"]) & set(chosen.blocks["block_id"])) >= 7
    assert chosen.metadata["quantile_sample"] == 40


def test_each_shard_is_pushed_as_soon_as_it_is_written(micro_corpus, scores_dir, tmp_path, monkeypatch):
    """With push_shards_to, shard i is uploaded before shard i + 1 exists (a fake Hub records it)."""
    import huggingface_hub

    import codesift.selection as selection

    events = []

    class FakeApi:
        def create_repo(self, repo_id, repo_type, exist_ok):
            events.append(("create", repo_id, repo_type))

        def upload_file(self, path_or_fileobj, path_in_repo, repo_id, repo_type, revision, commit_message):
            folder = sorted(p.name for p in __import__("pathlib").Path(path_or_fileobj).parent.iterdir())
            events.append(("upload", path_in_repo, folder))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    real = selection.write_parquet_shards  # small shards, so that there are several
    monkeypatch.setattr(
        selection, "write_parquet_shards", lambda b, f, m, on_shard=None: real(b, f, 1_000, on_shard)
    )
    args = args_for(micro_corpus, scores_dir, tmp_path, strategy="top_k", push_shards_to="me/picked")
    run_selection_stage(args)
    uploads = [e for e in events if e[0] == "upload"]
    assert events[0] == ("create", "me/picked", "dataset") and len(uploads) >= 2
    for index, (_, path_in_repo, folder) in enumerate(uploads):
        assert path_in_repo == f"data/{folder[index]}" and len(folder) == index + 1  # no later shard yet


def test_language_matched_random_has_the_reference_mix_and_no_scores_inside_a_language():
    from datasets import Dataset

    from codesift.selection import language_matched

    languages = ["python"] * 80 + ["cpp"] * 15 + ["c"] * 5
    candidates = Dataset.from_dict({"block_id": list(range(100)), "language": languages})
    reference = np.array([0, 1, 2, 80, 81, 82, 83, 95])  # 3 python, 4 cpp, 1 c: cpp-heavy
    kept = language_matched(candidates, reference, seed=0)
    mix = dict(zip(*np.unique(np.asarray(languages)[kept], return_counts=True), strict=True))
    assert mix == {"python": 3, "cpp": 4, "c": 1}
    draws = [set(language_matched(candidates, reference, seed=s).tolist()) for s in range(5)]
    assert len({frozenset(d) for d in draws}) > 1  # random within each language, by the seed
