"""Stage 05: labels, features, the ridge head, the fine-tuned head, the stage and its outputs."""

import dataclasses
import json
import math

import numpy as np
import pytest

from codesift.configs import PredictorArguments, SelectionArguments
from codesift.predictor import (
    PredictorError,
    Standardiser,
    agreement,
    run_predictor_stage,
    split_labels,
    top_precision,
)
from codesift.predictor.features import FrozenEncoder, ngram_matrix
from codesift.predictor.labels import Labels, load_labels
from codesift.predictor.ridge import fit_ridge, loo_errors

# ----------------------------------------------------------------------------------------------
# Pure parts: n-grams, the ridge head, the measures
# ----------------------------------------------------------------------------------------------


def test_ngram_rows_are_unit_length_and_bigrams_keep_order():
    rows = ngram_matrix([[1, 2, 3], [3, 2, 1], [1, 2, 3]], orders=(1, 2), hash_bits=12).toarray()
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0)
    np.testing.assert_array_equal(rows[0], rows[2])
    unigrams = ngram_matrix([[1, 2, 3], [3, 2, 1]], orders=(1,), hash_bits=12).toarray()
    np.testing.assert_array_equal(unigrams[0], unigrams[1])  # same tokens
    assert not np.array_equal(rows[0], rows[1])  # different bigrams


def test_ngram_counts_are_log_damped():
    rows = ngram_matrix([[5, 5, 5, 7]], orders=(1,), hash_bits=12).toarray()[0]
    values = sorted(rows[rows > 0])
    np.testing.assert_allclose(values[1] / values[0], math.log1p(3) / math.log1p(1))


def test_leave_one_out_errors_equal_refitting_without_each_row():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 5))
    y = x @ rng.normal(size=(5, 2)) + 0.3 * rng.normal(size=(12, 2))
    kernel = x @ x.T
    fast = loo_errors(kernel, y, [0.5])[0]
    slow = np.zeros(2)
    for i in range(12):
        keep = np.arange(12) != i
        dual = np.linalg.solve(kernel[np.ix_(keep, keep)] + 0.5 * np.eye(11), y[keep])
        slow += (kernel[i, keep] @ dual - y[i]) ** 2 / 12
    np.testing.assert_allclose(fast, slow, rtol=1e-8)


def test_ridge_recovers_a_linear_target_from_sparse_and_dense_groups():
    rng = np.random.default_rng(1)
    ids = [rng.integers(0, 50, size=30).tolist() for _ in range(120)]
    grams = ngram_matrix(ids, orders=(1,), hash_bits=10)
    dense = rng.normal(size=(120, 3)) * [1.0, 10.0, 0.1] + 5.0
    target = np.stack(
        [
            3.0 * grams[:, grams.indices[0]].toarray().ravel() + 0.5 * dense[:, 1] + 7.0,
            -2.0 * dense[:, 2] - 1.0,
        ],
        axis=1,
    )
    train, test = slice(0, 100), slice(100, 120)
    head = fit_ridge({"ngrams": grams[train], "hand": dense[train]}, target[train], [1e-6, 1e-4, 1e-2, 1.0])
    predicted = head.predict({"ngrams": grams[test], "hand": dense[test]})
    for j in range(2):
        assert np.corrcoef(predicted[:, j], target[test, j])[0, 1] > 0.99
    np.testing.assert_allclose(predicted.mean(axis=0), target[test].mean(axis=0), atol=0.5)


def test_ridge_keeps_the_level_of_targets_on_sparse_features():
    """n-gram rows are not centred: the fitted intercept must carry their mean, or every
    prediction shifts by it."""
    rng = np.random.default_rng(3)
    ids = [rng.integers(0, 8, size=20).tolist() for _ in range(200)]
    grams = ngram_matrix(ids, orders=(1,), hash_bits=8)
    target = 40.0 * np.asarray(grams.sum(axis=1)) + rng.normal(scale=0.1, size=(200, 1))
    head = fit_ridge({"ngrams": grams[:150]}, target[:150], [1e-4, 1e-2])
    predicted = head.predict({"ngrams": grams[150:]})
    assert abs(predicted.mean() - target[150:].mean()) < 0.1 * target.std()


def test_ridge_weighs_down_a_group_of_noise():
    rng = np.random.default_rng(2)
    signal, noise = rng.normal(size=(150, 4)), rng.normal(size=(150, 40))
    target = (signal @ [1.0, -1.0, 0.5, 2.0])[:, None] + 0.05 * rng.normal(size=(150, 1))
    head = fit_ridge({"hand": signal, "embeddings": noise}, target, [1e-3, 1e-2, 0.1, 1.0])
    assert head.group_weights["embeddings"] <= 0.25


def test_top_precision_and_agreement_on_hand_made_scores():
    oracle = np.array([10, 9, 8, 7, 6, 5, 4, 3, 2, 1], dtype=float)
    assert top_precision(oracle, oracle) == 1.0
    assert top_precision(oracle, -oracle) == 0.0
    assert top_precision(oracle, np.array([10, 0, 8, 7, 6, 5, 4, 3, 2, 9.5])) == 0.5
    stats = agreement(oracle[:, None], (2 * oracle + 1)[:, None], ["t"])["t"]
    assert stats["spearman"] == pytest.approx(1.0) and stats["pearson"] == pytest.approx(1.0)


def test_standardiser_round_trips_and_refuses_constant_labels():
    values = np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 20.0]])
    scale = Standardiser.fit(values, ["a", "b"])
    np.testing.assert_allclose(scale.forward(values).mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(scale.inverse(scale.forward(values)), values)
    with pytest.raises(PredictorError, match=r"task\(s\) \['b'\] are all equal"):
        Standardiser.fit(np.array([[1.0, 2.0], [3.0, 2.0]]), ["a", "b"])


def test_split_holds_out_a_seeded_part_that_is_never_trained_on():
    labels = Labels(np.arange(100), np.arange(200, dtype=float).reshape(100, 2), ["a", "b"])
    train, heldout = split_labels(labels, 50, 0.2, seed=3)
    assert len(train.block_ids) == 40 and len(heldout.block_ids) == 10
    assert not set(train.block_ids) & set(heldout.block_ids)
    assert (
        heldout.block_ids.max() > train.block_ids.min()
    )  # drawn from the whole labelled part, not its start
    again, _ = split_labels(labels, 50, 0.2, seed=3)
    np.testing.assert_array_equal(train.block_ids, again.block_ids)
    other, _ = split_labels(labels, 50, 0.2, seed=4)
    assert not np.array_equal(train.block_ids, other.block_ids)
    with pytest.raises(PredictorError, match="leave 2 held out"):
        split_labels(labels, 10, 0.2, seed=3)


# ----------------------------------------------------------------------------------------------
# Labels from stage 03, checked
# ----------------------------------------------------------------------------------------------


def write_scores(path, block_ids, **columns):
    from datasets import Dataset

    Dataset.from_dict({"block_id": block_ids, **columns}).save_to_disk(str(path))
    return str(path)


def test_labels_come_back_in_pool_order(tmp_path):
    path = write_scores(tmp_path / "s", [5, 3, 9], influence_a=[0.5, 0.3, 0.9], influence_b=[1.0, 2.0, 3.0])
    labels = load_labels(path, ["a"], [9, 3, 7, 5])
    assert labels.block_ids.tolist() == [9, 3, 5] and labels.values[:, 0].tolist() == [0.9, 0.3, 0.5]
    assert load_labels(path, [], [9, 3, 5]).tasks == ["a", "b"]


@pytest.mark.parametrize(
    "block_ids, values, tasks, message",
    [
        (
            [1, 2, 99],
            [0.1, 0.2, 0.3],
            ["a"],
            "1 labelled block_id\\(s\\) are not in the candidate pool \\(first 99\\)",
        ),
        ([1, 2, 2], [0.1, 0.2, 0.3], ["a"], "block_id 2 is labelled more than once"),
        ([1, 2, 3], [0.1, float("nan"), 0.3], ["a"], "non-finite label\\(s\\), first block_id 2 task a"),
        ([1, 2, 3], [0.1, 0.2, float("inf")], ["a"], "first block_id 3 task a \\(inf\\)"),
        ([1, 2, 3], [0.1, 0.2, 0.3], ["mbpp"], "no labels for task\\(s\\) \\['mbpp'\\]"),
    ],
)
def test_bad_labels_are_refused_by_name(tmp_path, block_ids, values, tasks, message):
    path = write_scores(tmp_path / "s", block_ids, influence_a=values)
    with pytest.raises(PredictorError, match=message):
        load_labels(path, tasks, [1, 2, 3, 4])


# ----------------------------------------------------------------------------------------------
# The stage on the micro run (40 candidates scored for HumanEval)
# ----------------------------------------------------------------------------------------------


def micro_predictor_args(micro_corpus, scored_micro_run, output_dir, **overrides):
    _, checkpoint, scores = scored_micro_run
    args = PredictorArguments(
        scores=str(scores),
        candidates=str(micro_corpus / "blocks"),
        tasks=[],
        label_fraction=1.0,
        heldout_fraction=0.25,
        features=["ngrams", "hand", "embeddings"],
        hash_bits=12,
        encoder=str(checkpoint),
        tokenizer=str(micro_corpus / "tokenizer"),
        model_name_or_path=str(checkpoint),
        num_train_epochs=1,
        train_batch_size=8,
        batch_size=16,
        output_dir=str(output_dir),
    )
    return dataclasses.replace(args, **overrides)


def test_the_stage_predicts_every_candidate_and_bills_labels_training_and_prediction(
    micro_corpus, scored_micro_run, tmp_path
):
    from datasets import load_from_disk

    from codesift.experiment import scoring_seconds

    args = micro_predictor_args(
        micro_corpus, scored_micro_run, tmp_path / "predictor", learning_curve=[10, 30]
    )
    metrics = run_predictor_stage(args)
    predictions = load_from_disk(str(tmp_path / "predictor" / "predictions"))
    candidates = load_from_disk(str(micro_corpus / "blocks"))["candidates"]
    assert predictions["block_id"] == candidates["block_id"]
    assert predictions.column_names == ["block_id", "predicted_humaneval", "labelled"]
    assert all(math.isfinite(v) for v in predictions["predicted_humaneval"])
    assert sum(predictions["labelled"]) == 40 and metrics["labels"] | {} == metrics["labels"]
    assert metrics["labels"]["train"] == 30 and metrics["labels"]["heldout"] == 10
    assert metrics["labels"]["method"] == "adam_update" and metrics["labels"]["step"] == 4
    assert [p["labels"] for p in metrics["learning_curve"]] == [10, 30]
    cost = json.loads((tmp_path / "predictor" / "predictions" / "scoring.json").read_text())
    assert cost["label_seconds"] == pytest.approx(cost["oracle_seconds_per_block"] * 40)
    assert cost["oracle_seconds_per_block"] > 0
    assert cost["seconds"] == pytest.approx(
        cost["label_seconds"] + cost["train_seconds"] + cost["predict_seconds"]
    )
    assert scoring_seconds(tmp_path / "predictor" / "predictions") == pytest.approx(cost["seconds"])
    # the held-out numbers are those of the saved held-out predictions
    import pandas as pd

    heldout = pd.read_parquet(tmp_path / "predictor" / "heldout.parquet")
    assert len(heldout) == 10 and not set(heldout["block_id"]) & set(
        predictions.filter(lambda r: not r["labelled"])["block_id"]
    )
    assert (
        metrics["heldout"]["humaneval"]
        == agreement(
            heldout[["influence_humaneval"]].to_numpy(),
            heldout[["predicted_humaneval"]].to_numpy(),
            ["humaneval"],
        )["humaneval"]
    )
    assert (tmp_path / "predictor" / "plots" / "learning_curve.png").is_file()


def test_a_selection_can_rank_by_the_predictions(micro_corpus, scored_micro_run, tmp_path):
    from datasets import load_from_disk

    from codesift.selection import select

    args = micro_predictor_args(micro_corpus, scored_micro_run, tmp_path / "predictor", features=["ngrams"])
    run_predictor_stage(args)
    predictions = load_from_disk(str(tmp_path / "predictor" / "predictions"))
    selection = select(
        SelectionArguments(
            scores=str(tmp_path / "predictor" / "predictions"),
            candidates=str(micro_corpus / "blocks"),
            documents=None,
            strategy="top_k",
            tasks=["humaneval"],
            fraction=0.25,
        )
    )
    best = sorted(
        zip(predictions["predicted_humaneval"], predictions["block_id"], strict=True), reverse=True
    )[:10]
    assert sorted(selection.blocks["block_id"]) == sorted(b for _, b in best)


def test_a_rerun_keeps_the_predictor_and_a_changed_argument_redoes_it(
    micro_corpus, scored_micro_run, tmp_path, caplog
):
    import logging

    args = micro_predictor_args(micro_corpus, scored_micro_run, tmp_path / "predictor", features=["ngrams"])
    run_predictor_stage(args)
    stamp = (tmp_path / "predictor" / "metrics.json").stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        run_predictor_stage(args)
        assert (tmp_path / "predictor" / "metrics.json").stat().st_mtime_ns == stamp
        assert "up to date" in caplog.text
        run_predictor_stage(dataclasses.replace(args, hash_bits=13))
    assert (tmp_path / "predictor" / "metrics.json").stat().st_mtime_ns != stamp
    assert "hash_bits changed" in caplog.text


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"label_fraction": 0.2, "heldout_fraction": 0.2}, "leave 2 held out"),
        ({"num_labels": 41}, "41 labels asked for"),
        ({"tasks": ["mbpp"]}, "no labels for task"),
        ({"predictor": "forest"}, "unknown predictor 'forest'"),
        ({"features": ["ngrams", "colours"]}, "ridge features must be some of"),
    ],
)
def test_bad_stage_input_stops_before_anything_is_written(
    micro_corpus, scored_micro_run, tmp_path, overrides, message
):
    args = micro_predictor_args(micro_corpus, scored_micro_run, tmp_path / "predictor", **overrides)
    with pytest.raises(PredictorError, match=message):
        run_predictor_stage(args)
    assert not (tmp_path / "predictor").exists()
    assert not list(tmp_path.glob(".predictor*"))


def test_an_encoder_of_another_vocabulary_is_refused(
    micro_corpus, scored_micro_run, tmp_path, small_tokenizer
):
    """The LM head reads block ids directly; a model whose vocabulary cannot hold them is refused."""
    from transformers import LlamaConfig, LlamaForCausalLM

    small = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    folder = tmp_path / "small-lm"
    LlamaForCausalLM(small).save_pretrained(str(folder))
    from codesift.prepare.tokenizer import load_tokenizer

    load_tokenizer(str(micro_corpus / "tokenizer")).save_pretrained(str(folder))
    args = micro_predictor_args(micro_corpus, scored_micro_run, tmp_path / "predictor", encoder=str(folder))
    with pytest.raises(PredictorError, match="outside its vocabulary"):
        run_predictor_stage(args)
    assert not (tmp_path / "predictor").exists()


@pytest.mark.parametrize("model", ["scratch", "checkpoint"])
def test_a_finetuned_head_trains_with_the_trainer_and_reloads_to_the_same_predictions(
    micro_corpus, scored_micro_run, tmp_path, model
):
    from datasets import load_from_disk

    from codesift.predictor import load_predictor
    from codesift.prepare.tokenizer import load_tokenizer

    _, checkpoint, _ = scored_micro_run
    name = "scratch" if model == "scratch" else str(checkpoint)
    args = micro_predictor_args(
        micro_corpus, scored_micro_run, tmp_path / "predictor", predictor="finetuned", model_name_or_path=name
    )
    metrics = run_predictor_stage(args)
    assert len(metrics["fit"]["validation_spearman_by_epoch"]) == 1
    predictions = load_from_disk(str(tmp_path / "predictor" / "predictions"))
    tokenizer = load_tokenizer(str(micro_corpus / "tokenizer"))
    reloaded = load_predictor(tmp_path / "predictor" / "predictor", args, tokenizer, ["humaneval"], 64)
    candidates = load_from_disk(str(micro_corpus / "blocks"))["candidates"]
    scale = json.loads((tmp_path / "predictor" / "predictor" / "predictor.json").read_text())
    assert scale["predictor"] == "finetuned"
    z = reloaded.predict(candidates["input_ids"][:5])[:, 0]
    original = np.asarray(predictions["predicted_humaneval"][:5])
    # the same ranking (the saved predictions are on the oracle's scale, the model's on the z-scale)
    assert np.corrcoef(z, original)[0, 1] == pytest.approx(1.0, abs=1e-5)


def test_a_hub_style_encoder_reads_text_in_chunks_and_mean_pools(micro_corpus, small_tokenizer, tmp_path):
    """An encoder with its own tokenizer (as bert-base-uncased would be) re-reads the blocks as
    text; a block longer than its context is cut into chunks whose embeddings are averaged."""
    import torch
    from transformers import BertConfig, BertModel

    from codesift.prepare.tokenizer import load_tokenizer

    folder = tmp_path / "encoder"
    bert = BertModel(BertConfig(vocab_size=len(small_tokenizer), hidden_size=16, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=32, max_position_embeddings=64))  # fmt: skip
    bert.eval().save_pretrained(str(folder))
    small_tokenizer.save_pretrained(str(folder))
    blocks_tokenizer = load_tokenizer(str(micro_corpus / "tokenizer"))
    encoder = FrozenEncoder(str(folder), blocks_tokenizer, max_length=16, device="cpu")
    assert not encoder.shares_tokenizer and not encoder.causal
    block = [int(i) for i in np.arange(3, 63)]
    embedding, loss = encoder.embed([block])
    assert loss is None and embedding.shape == (1, 2 * 16)
    ids = small_tokenizer(blocks_tokenizer.decode(block), add_special_tokens=False)["input_ids"]
    assert len(ids) > 16  # several chunks
    chunks = [ids[i : i + 16] for i in range(0, len(ids), 16)]
    with torch.no_grad():
        manual = [
            torch.cat(
                [
                    h.mean(dim=1)
                    for h in bert(input_ids=torch.tensor([c]), output_hidden_states=True).hidden_states
                ],
                dim=1,
            )
            for c in chunks
        ]
    np.testing.assert_allclose(embedding[0], torch.cat(manual).mean(dim=0).numpy(), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Publishing: the predictor as a model repo, and the dataset card that names it
# ----------------------------------------------------------------------------------------------


def test_the_exported_predictor_reloads_and_its_card_tells_how_it_was_made(
    micro_corpus, scored_micro_run, tmp_path
):
    from datasets import load_from_disk

    from codesift.hub import check_export, export_predictor
    from codesift.predictor import load_saved_predictor, predict_dataset
    from codesift.utils import project_root

    args = micro_predictor_args(
        micro_corpus, scored_micro_run, tmp_path / "predictor", learning_curve=[10, 30]
    )
    metrics = run_predictor_stage(args)
    folder = export_predictor(
        tmp_path / "predictor",
        micro_corpus,
        project_root() / "recipes" / "tiny",
        tmp_path / "export",
        "me/micro-predictor",
    )
    files = check_export(folder, "model")
    assert {"README.md", "predictor.json", "ridge.npz", "blocks_tokenizer/tokenizer.json"} <= set(files)
    card = (folder / "README.md").read_text()
    spearman = metrics["heldout"]["humaneval"]["spearman"]
    assert f"| humaneval | {spearman:.3f} |" in card
    assert (
        "`adam_update` scores at checkpoint step 4" in card and "40 of 40 candidate blocks labelled" in card
    )
    assert "| 10 | " in card and "| 30 | " in card  # the learning curve
    assert "specific to the checkpoint (step 4)" in card
    predictor, scale, tasks = load_saved_predictor(folder)
    blocks = load_from_disk(str(micro_corpus / "blocks"))["candidates"]
    again = predict_dataset(predictor, scale, blocks, tasks, 16, "reloaded")
    saved = load_from_disk(str(tmp_path / "predictor" / "predictions"))
    np.testing.assert_allclose(
        again["predicted_humaneval"], saved["predicted_humaneval"], rtol=1e-6, atol=1e-9
    )


def test_a_selection_by_predictions_is_named_on_the_dataset_card(micro_corpus, scored_micro_run, tmp_path):
    from codesift.hub import ExportSources, export_dataset
    from codesift.prepare.tasks import build_validation_sets
    from codesift.selection import run_selection_stage
    from codesift.utils import project_root, save_to_disk, write_json

    run_predictor_stage(
        micro_predictor_args(micro_corpus, scored_micro_run, tmp_path / "predictor", features=["ngrams"])
    )
    selection = SelectionArguments(
        scores=str(tmp_path / "predictor" / "predictions"),
        candidates=str(micro_corpus / "blocks"),
        documents=str(micro_corpus / "documents"),
        strategy="top_k",
        tasks=["humaneval"],
        fraction=0.25,
        output_dir=str(tmp_path / "selection"),
    )
    run_selection_stage(selection)
    built = build_validation_sets(["humaneval"], select_fraction=0.5)
    save_to_disk(built.to_dataset_dict(), tmp_path / "validation_sets")
    write_json(tmp_path / "validation_sets" / "metadata.json", built.metadata)
    sources = ExportSources(
        selection_dir=tmp_path / "selection",
        corpus_dir=micro_corpus,
        validation_sets=tmp_path / "validation_sets",
        recipe_dir=project_root() / "recipes" / "tiny",
    )
    folder = export_dataset(sources, tmp_path / "export", "me/micro-predicted", None, "me/micro-predictor")
    card = (folder / "README.md").read_text()
    assert (
        "| Scores predicted by | ridge on ngrams, trained on `adam_update` scores of 40 of 40 candidates"
        in card
    )
    assert "[me/micro-predictor](https://huggingface.co/me/micro-predictor)" in card
    import pandas as pd

    kept = pd.concat(pd.read_parquet(p) for p in sorted((folder / "data").glob("*.parquet")))
    assert "predicted_humaneval" in kept.columns and "influence_humaneval" not in kept.columns


def test_a_finetuned_hub_style_encoder_trains_on_chunks_of_the_blocks_text(
    micro_corpus, small_tokenizer, tmp_path
):
    """A model with its own tokenizer (as bert-base-uncased online) reads the blocks as text, cut
    into chunks of its context, each trained on its block's label; a block's prediction is the mean
    of its chunks'."""
    from transformers import BertConfig, BertForSequenceClassification

    from codesift.predictor.finetuned import FinetunedRegressor, chunk_rows
    from codesift.prepare.tokenizer import load_tokenizer

    folder = tmp_path / "bert"
    config = BertConfig(vocab_size=len(small_tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, num_labels=1)  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(str(folder))
    small_tokenizer.save_pretrained(str(folder))
    blocks_tokenizer = load_tokenizer(str(micro_corpus / "tokenizer"))
    args = PredictorArguments(
        model_name_or_path=str(folder), max_length=32, num_train_epochs=1, train_batch_size=8, batch_size=8
    )
    regressor = FinetunedRegressor(args, blocks_tokenizer, ["a"], seq_len=64)
    assert not regressor.shared
    blocks = [list(range(3 + i, 63 + i)) for i in range(12)]
    chunks, owner = chunk_rows(blocks, regressor.tokenizer, blocks_tokenizer, False, 32)
    assert len(chunks) > len(blocks) and max(len(c) for c in chunks) <= 32 and set(owner) == set(range(12))
    targets = np.linspace(-1, 1, 12)[:, None]
    info = regressor.fit(blocks, targets, seed=0)
    assert len(info["validation_spearman_by_epoch"]) == 1
    predictions = regressor.predict(blocks)
    assert predictions.shape == (12, 1) and np.isfinite(predictions).all()


def test_the_encoder_embeds_a_block_once_and_gives_the_same_answer(
    micro_corpus, scored_micro_run, monkeypatch
):
    """Refits on the same labels (the learning curve) reuse the embeddings instead of rerunning the
    model; the remembered rows equal fresh ones, and clearing forgets them."""
    from codesift.predictor.features import clear_caches, frozen_encoder
    from codesift.prepare.tokenizer import load_tokenizer

    _, checkpoint, _ = scored_micro_run
    encoder = frozen_encoder(str(checkpoint), load_tokenizer(str(micro_corpus / "tokenizer")))
    clear_caches()
    calls = []
    original = encoder._embed_new
    monkeypatch.setattr(
        encoder, "_embed_new", lambda ids, with_loss: calls.append(len(ids)) or original(ids, with_loss)
    )
    blocks = [list(range(5, 69)), list(range(7, 71))]
    first, loss = encoder.embed(blocks)
    again, loss_again = encoder.embed([blocks[1], blocks[0], blocks[1]])
    assert calls == [2]
    np.testing.assert_array_equal(again, first[[1, 0, 1]])
    np.testing.assert_array_equal(loss_again, loss[[1, 0, 1]])
    without_loss, none = encoder.embed(blocks, with_loss=False)
    assert none is None and calls == [2, 2]
    np.testing.assert_allclose(without_loss, first, rtol=1e-5, atol=1e-6)  # the body's states are the same
    clear_caches()
    encoder.embed(blocks)
    assert calls == [2, 2, 2]
