"""Stages 04 + 06 together: arms from one checkpoint at equal tokens, seeds, resume, the table."""

import json

import pytest
import torch
from helpers import ROOT, MomentProbe

from codesift.configs import ExperimentArguments
from codesift.experiment import CHECKPOINT_ROW, ExperimentError, continue_pretraining, run_experiment


@pytest.fixture(scope="module")
def warm_up(scored_micro_run):
    """(checkpoint, scores): the shared micro warm-up and its scored pool."""
    return scored_micro_run[1], scored_micro_run[2]


def experiment_args(micro_corpus, warm_up, out, **overrides):
    checkpoint, scores = warm_up
    fields = dict(
        checkpoint=str(checkpoint),
        scores=str(scores),
        candidates=str(micro_corpus / "blocks"),
        documents=str(micro_corpus / "documents"),
        strategies=[
            {"name": "random", "strategy": "random"},
            {"name": "influence", "strategy": "gumbel_top_k", "tasks": ["humaneval"], "temperature": 0.5},
            {"name": "perplexity_low", "strategy": "perplexity"},
        ],
        fraction=0.2,
        continue_steps=2,
        seeds=[1, 2],
        pretrain_recipe=str(ROOT / "recipes/tiny/pretrain.yaml"),
        pretrain_overrides={"per_device_train_batch_size": 4, "logging_steps": 1},
        evaluation={
            "validation_sets": str(micro_corpus.parent / "validation_sets"),
            "tokenized_validation_sets": str(micro_corpus / "validation_tokenized"),
            "loss_tasks": ["humaneval"],
            "execution_tasks": ["humaneval"],
            "max_new_tokens": 8,
        },
        table_tasks=["humaneval"],
        output_dir=str(out),
    )
    return ExperimentArguments(**{**fields, **overrides})


def test_experiment_runs_every_arm_at_equal_tokens_and_writes_the_table(micro_corpus, warm_up, tmp_path):
    args = experiment_args(micro_corpus, warm_up, tmp_path / "exp")
    paths = run_experiment(args)
    cells = {
        (p.parent.parent.name, p.parent.name): json.loads(p.read_text())
        for p in (tmp_path / "exp").glob("seed-*/*/metrics.json")
    }
    assert len(cells) == 6
    assert {c["tokens_trained"] for c in cells.values()} == {2 * 4 * 64}  # same steps x batch x block length
    assert {c["kept_blocks"] for c in cells.values()} == {8}
    for (seed, arm), cell in cells.items():
        assert cell["loss/humaneval/report"] > 0
        # every program was run and judged: pass@1 is the share that passed, and a micro model's
        # programs fail for real (a harness that passes, or skips, everything would not give this)
        samples = [
            json.loads(line) for line in open(tmp_path / "exp" / seed / arm / "evaluation" / "samples.jsonl")
        ]
        assert samples and len(samples) == len({s["task_id"] for s in samples})  # greedy: one per problem
        assert cell["pass@1/humaneval/report"] == sum(s["passed"] for s in samples) / len(samples) == 0.0
        assert all(s["result"].startswith(("failed:", "timed out")) for s in samples)
    # the seed moves the random arm's blocks, and the continued runs differ with it
    kept = {
        seed: json.loads(
            (tmp_path / "exp" / f"seed-{seed}" / "random" / "selection" / "selection.json").read_text()
        )
        for seed in (1, 2)
    }
    assert kept[1]["seed"] == 1 and kept[2]["seed"] == 2
    assert (
        cells[("seed-1", "random")]["loss/humaneval/report"]
        != cells[("seed-2", "random")]["loss/humaneval/report"]
    )
    # every continued run started from the warm-up's step and went on for the same steps
    for seed in (1, 2):
        state = json.loads(
            (tmp_path / "exp" / f"seed-{seed}" / "influence" / "model" / "trainer_state.json").read_text()
        )
        assert state["global_step"] == 4 + 2
    table = open(paths["markdown"]).read()
    for row in ("random", "influence", "perplexity_low", CHECKPOINT_ROW):
        assert f"| {row} |" in table
    assert "±" in table  # two seeds give an interval
    summary = json.loads(open(paths["json"]).read())["summary"]
    assert summary["random"]["seeds"] == [1, 2]
    assert open(paths["png"], "rb").read(4) == b"\x89PNG"

    # a second run finds every cell done and only rewrites the table
    before = {p: p.stat().st_mtime for p in (tmp_path / "exp").glob("seed-*/*/metrics.json")}
    run_experiment(args)
    assert before == {p: p.stat().st_mtime for p in (tmp_path / "exp").glob("seed-*/*/metrics.json")}


def test_continued_arm_starts_from_the_checkpoints_optimizer_state(micro_corpus, warm_up, tmp_path):
    from codesift.configs import SelectionArguments
    from codesift.selection import run_selection_stage

    checkpoint, scores = warm_up
    run_selection_stage(SelectionArguments(scores=str(scores), candidates=str(micro_corpus / "blocks"),
                                           documents=None, strategy="random", output_dir=str(tmp_path / "sel")))  # fmt: skip
    probe = MomentProbe()
    args = experiment_args(micro_corpus, warm_up, tmp_path / "exp")
    continue_pretraining(
        args, tmp_path / "sel" / "blocks", tmp_path / "model", seed=3, extra_callbacks=[probe]
    )
    saved = torch.load(checkpoint / "optimizer.pt", weights_only=True)["state"][0]
    assert probe.seen["step"] == 4
    assert torch.equal(probe.seen["exp_avg"], saved["exp_avg"])
    assert torch.equal(probe.seen["exp_avg_sq"], saved["exp_avg_sq"])


def test_bad_experiments_fail_before_any_arm(micro_corpus, warm_up, tmp_path):
    with pytest.raises(ExperimentError, match="warm-up checkpoint not found"):
        run_experiment(experiment_args(micro_corpus, warm_up, tmp_path / "exp", checkpoint=str(tmp_path)))
    twice = [{"name": "a", "strategy": "random"}, {"name": "a", "strategy": "full"}]
    with pytest.raises(ExperimentError, match="unique"):
        run_experiment(experiment_args(micro_corpus, warm_up, tmp_path / "exp", strategies=twice))
    with pytest.raises(ExperimentError, match="unknown field"):
        run_experiment(
            experiment_args(
                micro_corpus,
                warm_up,
                tmp_path / "exp",
                strategies=[{"name": "x", "strategy": "random", "temp": 1}],
            )
        )
    assert not list((tmp_path / "exp").glob("seed-*"))


def test_a_rerun_redoes_exactly_the_cells_whose_arguments_changed(micro_corpus, warm_up, tmp_path):
    out = tmp_path / "exp"
    arms = [
        {"name": "random", "strategy": "random"},
        {"name": "influence", "strategy": "gumbel_top_k", "tasks": ["humaneval"], "temperature": 0.5},
    ]
    base = dict(
        strategies=arms,
        seeds=[1],
        evaluation={**experiment_args(micro_corpus, warm_up, out).evaluation, "execution_tasks": []},
    )

    def finished():
        return {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/metrics.json")} | {
            p.parent.name: p.stat().st_mtime_ns for p in out.glob("seed-*/*/metrics.json")
        }

    run_experiment(experiment_args(micro_corpus, warm_up, out, **base))
    first = finished()
    assert set(first) == {"checkpoint", "random", "influence"}
    run_experiment(experiment_args(micro_corpus, warm_up, out, **base))
    assert finished() == first  # nothing changed: nothing redone

    hotter = [arms[0], {**arms[1], "temperature": 1.0}]
    run_experiment(experiment_args(micro_corpus, warm_up, out, **{**base, "strategies": hotter}))
    second = finished()
    assert [name for name in first if second[name] != first[name]] == ["influence"]

    run_experiment(
        experiment_args(micro_corpus, warm_up, out, **{**base, "strategies": hotter, "continue_steps": 3})
    )
    third = finished()
    assert [name for name in first if third[name] != second[name]] == [
        "random",
        "influence",
    ]  # not the checkpoint row
    state = json.loads((out / "seed-1" / "random" / "model" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 + 3
