"""Stage 06, the paper's design at micro size: fresh models pretrained on the full corpus, a random
share, a share filtered by a reference predictor, and MATES's staged reselection, at equal steps and
tokens, with report losses over training and the selection bill beside the training bill."""

import json

import numpy as np
import pytest
from datasets import load_from_disk
from helpers import MICRO

from codesift.configs import PredictorArguments, PretrainSelectedArguments
from codesift.predictor import run_predictor_stage
from codesift.pretrain_selected import PretrainSelectedError, run_pretrain_selected

OVERRIDES = {
    "model_overrides": MICRO,
    "per_device_train_batch_size": 4,
    "per_device_eval_batch_size": 16,
    "learning_rate": 1e-2,
    "warmup_steps": 1,
    "logging_steps": 1,
}


@pytest.fixture(scope="module")
def reference_predictor(micro_corpus, scored_micro_run, tmp_path_factory):
    """A model-free stage-05 predictor fitted on the micro warm-up's oracle labels."""
    output = tmp_path_factory.mktemp("reference") / "predictor"
    run_predictor_stage(
        PredictorArguments(
            scores=str(scored_micro_run[2]),
            candidates=str(micro_corpus / "blocks"),
            tasks=["humaneval"],
            label_fraction=1.0,
            heldout_fraction=0.25,
            features=["ngrams"],
            hash_bits=12,
            encoder=None,
            tokenizer=str(micro_corpus / "tokenizer"),
            learning_curve=[],
            output_dir=str(output),
        )
    )
    return output / "predictor"


def micro_args(micro_corpus, reference_predictor, output_dir, **overrides) -> PretrainSelectedArguments:
    fields = dict(
        blocks=str(micro_corpus / "blocks"),
        blocks_split="train",
        tasks=["humaneval"],
        keep_fraction=0.5,
        reference_predictor=str(reference_predictor),
        steps=6,
        seeds=[1, 2],
        eval_steps=3,
        stage_steps=3,
        label_sample=20,
        pretrain_overrides=OVERRIDES,
        validation_sets=str(micro_corpus / "validation_tokenized"),
        tokenizer=str(micro_corpus / "tokenizer"),
        output_dir=str(output_dir),
    )
    return PretrainSelectedArguments(**{**fields, **overrides})


def test_every_arm_trains_from_scratch_at_equal_tokens_and_mates_reselects(
    micro_corpus, reference_predictor, tmp_path
):
    args = micro_args(micro_corpus, reference_predictor, tmp_path / "out")
    summary = run_pretrain_selected(args)
    assert set(summary) == {"full", "random", "filtered", "mates"}
    tokens = {arm: entry["tokens_trained"][0] for arm, entry in summary.items()}
    assert len(set(tokens.values())) == 1 and tokens["full"] == 6 * 4 * 64  # equal steps, equal tokens
    cells = json.loads((tmp_path / "out" / "results.json").read_text())["cells"]
    for cell in cells:
        assert [point["step"] for point in cell["curve"]] == [3, 6]  # report losses over training
    # the filtered arm keeps the reference predictor's top half, with datasets.filter
    corpus = load_from_disk(str(micro_corpus / "blocks"))["train"]
    kept = load_from_disk(str(tmp_path / "out" / "seed-1" / "filtered" / "blocks"))
    scores = load_from_disk(str(tmp_path / "out" / "reference_scores" / "scores"))
    top = np.argsort(-np.asarray(scores["predicted_humaneval"]), kind="stable")[: len(kept)]
    assert len(kept) == round(0.5 * len(corpus))
    assert set(kept["block_id"]) == {int(b) for b in np.asarray(scores["block_id"])[top]}
    # MATES: stage 1 goes on from stage 0's checkpoint, on blocks chosen from fresh oracle labels
    mates = tmp_path / "out" / "seed-1" / "mates"
    stage0 = set(load_from_disk(str(mates / "stage-0" / "blocks"))["block_id"])
    stage1 = set(load_from_disk(str(mates / "stage-1" / "blocks"))["block_id"])
    assert len(stage0) == len(stage1) == 3 * 4 and not stage0 & stage1  # no block trained on twice
    assert (mates / "stage-1" / "labels" / "step-3" / "adam_update" / "scoring.json").is_file()
    state = json.loads((mates / "stage-1" / "model" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    mates_cell = next(c for c in cells if c["arm"] == "mates" and c["seed"] == 1)
    bill = mates_cell["selection_bill"]
    assert bill["label_seconds"] > 0 and len(bill["stages"]) == 1 and bill["stages"][0]["labels"] == 20
    assert "vs_random/humaneval" in summary["filtered"] and "vs_full/humaneval" in summary["mates"]
    assert (tmp_path / "out" / "results.png").is_file()
    text = (tmp_path / "out" / "results.md").read_text()
    assert "| mates |" in text and "from scratch" in text


def test_a_rerun_keeps_finished_cells(micro_corpus, reference_predictor, tmp_path, caplog):
    import logging

    args = micro_args(micro_corpus, reference_predictor, tmp_path / "out", arms=["random"], seeds=[1])
    first = run_pretrain_selected(args)
    with caplog.at_level(logging.INFO, logger="codesift.provenance"):
        again = run_pretrain_selected(args)
    assert "up to date" in caplog.text and json.dumps(again, sort_keys=True) == json.dumps(
        first, sort_keys=True
    )


def test_bad_arguments_fail_before_training(micro_corpus, reference_predictor, tmp_path):
    with pytest.raises(PretrainSelectedError, match="arms must be some of"):
        run_pretrain_selected(micro_args(micro_corpus, reference_predictor, tmp_path, arms=["best"]))
    with pytest.raises(PretrainSelectedError, match="multiple of stage_steps"):
        run_pretrain_selected(micro_args(micro_corpus, reference_predictor, tmp_path, stage_steps=4))
    with pytest.raises(PretrainSelectedError, match="run scripts/train_predictor.py"):
        run_pretrain_selected(micro_args(micro_corpus, tmp_path / "none", tmp_path, arms=["filtered"]))
    assert not any(tmp_path.iterdir())


def test_curves_merge_tasks_logged_apart_and_stages_keep_their_own_time(tmp_path):
    """An evaluation of several datasets logs each task on its own line; a stage's log inherits
    the evaluations of the stages before it, which are not its time."""
    from codesift.pretrain_selected import cell_curve, run_train_seconds
    from codesift.utils import write_json

    def run(folder, logs, continue_from=None):
        (folder).mkdir(parents=True)
        write_json(folder / "trainer_state.json", {"log_history": logs})
        write_json(folder / "provenance.json", {"arguments": {"pretrain": {"continue_from": continue_from}}})

    first = [{"step": 5, "eval_a_loss": 3.0, "eval_a_runtime": 1.0}, {"step": 5, "eval_b_loss": 4.0, "eval_b_runtime": 2.0},
             {"step": 10, "eval_a_loss": 2.5, "eval_a_runtime": 1.0}, {"step": 10, "eval_b_loss": 3.5, "eval_b_runtime": 2.0},
             {"step": 10, "train_runtime": 20.0}]  # fmt: skip
    second = first[:-1] + [{"step": 15, "eval_a_loss": 2.0, "eval_a_runtime": 1.0},
                           {"step": 15, "eval_b_loss": 3.0, "eval_b_runtime": 2.0}, {"step": 15, "train_runtime": 12.0}]  # fmt: skip
    run(tmp_path / "mates" / "stage-0" / "model", first)
    run(tmp_path / "mates" / "stage-1" / "model", second, continue_from="x/stage-0/model/checkpoint-10")
    assert cell_curve(tmp_path / "mates", ["a", "b"]) == [
        {"step": 5, "a": 3.0, "b": 4.0}, {"step": 10, "a": 2.5, "b": 3.5}, {"step": 15, "a": 2.0, "b": 3.0}]  # fmt: skip
    assert run_train_seconds(tmp_path / "mates" / "stage-0" / "model") == 20.0 - 6.0
    assert (
        run_train_seconds(tmp_path / "mates" / "stage-1" / "model") == 12.0 - 3.0
    )  # not stage 0's evaluations
