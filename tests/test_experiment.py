"""Stages 04 + 06 together: arms from one checkpoint at equal tokens, seeds, resume, the table."""

import json
from pathlib import Path

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


def test_equal_compute_and_own_step_arms_and_unavailable_rows(micro_corpus, warm_up, tmp_path):
    """equal_compute trains the experiment's steps plus the pool's scoring seconds divided by the
    warm-up's measured seconds per step; an arm may set its own steps; an unavailable arm is a
    row that says why."""
    from codesift.experiment import scoring_seconds, warmup_seconds_per_step
    from codesift.utils import read_json

    checkpoint, scores = warm_up
    args = experiment_args(
        micro_corpus,
        warm_up,
        tmp_path / "exp",
        strategies=[
            {"name": "random", "strategy": "random"},
            {"name": "longer", "strategy": "random", "continue_steps": 3},
            {"name": "equal_compute", "strategy": "random", "fraction": 1.0, "equal_compute": True},
        ],
        seeds=[1],
        evaluation={**experiment_args(micro_corpus, warm_up, tmp_path).evaluation, "execution_tasks": []},
        unavailable_arms={"llm_rater": "no rater offline"},
    )
    run_experiment(args)
    cells = {p.parent.name: read_json(p) for p in (tmp_path / "exp").glob("seed-1/*/metrics.json")}
    state = read_json(checkpoint / "trainer_state.json")
    evaluating = sum(
        v
        for log in state["log_history"]
        for k, v in log.items()
        if k.startswith("eval_") and k.endswith("_runtime")
    )
    runtime = read_json(checkpoint.parent / "all_results.json")["train_runtime"]
    assert evaluating > 0  # the warm-up evaluated: its seconds are not training and not counted
    per_step = (runtime - evaluating) / state["global_step"]
    assert warmup_seconds_per_step(checkpoint) == pytest.approx(per_step)
    expected = 2 + round(scoring_seconds(scores) / per_step)
    assert scoring_seconds(scores) > 0 and expected > 2 and per_step < runtime / state["global_step"]
    assert {arm: cell["continue_steps"] for arm, cell in cells.items()} == {
        "random": 2,
        "longer": 3,
        "equal_compute": expected,
    }
    assert cells["equal_compute"]["tokens_trained"] == expected * 4 * 64
    table = (tmp_path / "exp" / "results.md").read_text()
    assert "| llm_rater | not run: no rater offline |" in table
    assert f"longer 3, equal_compute {expected}" in table


def test_cross_task_matrix_is_each_single_target_arm_minus_random_on_every_task():
    from codesift.experiment import cross_task_matrix

    def row(arm, seed, a, b):
        return {"arm": arm, "seed": seed, "loss/a/report": a, "loss/b/report": b}

    rows = [
        row("random", 1, 5.0, 6.0),
        row("random", 2, 5.2, 6.2),
        row("for_a", 1, 4.0, 6.5),
        row("for_a", 2, 4.4, 6.5),
        row("for_b", 1, 5.5, 5.0),
        row("both", 1, 1.0, 1.0),  # two targets: not a row of the matrix
    ]
    strategies = [
        {"name": "random", "strategy": "random"},
        {"name": "for_a", "strategy": "gumbel_top_k", "tasks": ["a"]},
        {"name": "for_b", "strategy": "top_k", "tasks": ["b"]},
        {"name": "both", "strategy": "top_k", "tasks": ["a", "b"]},
        {"name": "low_a", "strategy": "top_k", "tasks": ["a"], "reverse": True},
    ]
    targets, tasks, matrix = cross_task_matrix(rows, strategies)
    assert targets == ["a", "b"] and tasks == ["a", "b"]
    assert matrix.ravel().tolist() == pytest.approx([-0.9, 0.4, 0.5, -1.0])


def test_best_arm_is_never_a_reversed_or_extremes_arm(tmp_path):
    from codesift.experiment import choose_arm
    from codesift.utils import write_json

    strategies = [
        {"name": "influence", "strategy": "top_k", "tasks": ["a"]},
        {"name": "reverse", "strategy": "top_k", "tasks": ["a"], "reverse": True},
        {"name": "top5", "strategy": "top_k", "tasks": ["a"], "fraction": 0.05},
        {"name": "middle", "strategy": "middle", "tasks": ["a"]},
    ]
    summary = {
        name: {"loss/a/report": [loss, 0.0]}
        for name, loss in zip(["influence", "reverse", "top5", "middle"], [3.0, 1.0, 1.0, 1.0], strict=True)
    }
    write_json(
        tmp_path / "results.json",
        {"arguments": {"strategies": strategies, "table_tasks": ["a"], "seeds": [1]}, "summary": summary},
    )
    (tmp_path / "seed-1" / "influence").mkdir(parents=True)
    write_json(tmp_path / "seed-1" / "influence" / "metrics.json", {})
    assert choose_arm(tmp_path, "best", None)[0] == "influence"


def test_an_arm_is_compared_with_the_baseline_it_names():
    from codesift.experiment import summarise

    rows = [
        {"arm": arm, "seed": seed, "loss/a/report": loss, "tokens_trained": 1, "selection_seconds": 0.0}
        for arm, seed, loss in [
            ("random", 1, 5.0), ("random", 2, 5.0), ("random5", 1, 6.0), ("random5", 2, 6.2),
            ("top5", 1, 5.5), ("top5", 2, 5.9),
        ]
    ]  # fmt: skip
    summary = summarise(rows, ["random", "random5", "top5"], ["a"], {"top5": "random5"})
    assert summary["top5"]["vs_random/loss/a/report"][0] == pytest.approx(-0.4)
    assert summary["top5"]["baseline"] == "random5"
    assert summary["random5"]["vs_random/loss/a/report"][0] == pytest.approx(1.1)  # against random


def test_an_equal_compute_arm_without_a_bill_is_an_error(micro_corpus, warm_up, tmp_path):
    """Scores whose scoring.json has no seconds (an earlier influence callback's) would buy no steps."""
    import shutil

    from codesift.utils import read_json, write_json

    checkpoint, scores = warm_up
    unbilled = tmp_path / "unbilled"
    shutil.copytree(scores, unbilled)
    info = read_json(unbilled / "scoring.json")
    info.pop("seconds_per_candidate")
    write_json(unbilled / "scoring.json", info)
    args = experiment_args(micro_corpus, warm_up, tmp_path / "exp", scores=str(unbilled), seeds=[1],
                           strategies=[{"name": "random", "strategy": "random"},
                                       {"name": "equal_compute", "strategy": "random", "fraction": 1.0, "equal_compute": True}])  # fmt: skip
    with pytest.raises(ExperimentError, match="holds no seconds_per_candidate"):
        run_experiment(args)


def test_an_arm_runs_at_its_own_seeds_and_the_table_counts_them(micro_corpus, warm_up, tmp_path):
    """More seeds where a claim rests on an arm, fewer where a cell is dear: `seeds` on an arm.
    Naming seeds does not redo the arm's finished cells, and a cell at a seed the arm no longer
    lists stays out of its row."""
    out = tmp_path / "exp"
    evaluation = {**experiment_args(micro_corpus, warm_up, out).evaluation, "execution_tasks": []}
    random_arm = {"name": "random", "strategy": "random"}
    influence = {"name": "influence", "strategy": "gumbel_top_k", "tasks": ["humaneval"], "temperature": 0.5}
    run_experiment(
        experiment_args(
            micro_corpus, warm_up, out, strategies=[random_arm, influence], seeds=[1], evaluation=evaluation
        )
    )
    first = (out / "seed-1" / "random" / "metrics.json").stat().st_mtime_ns

    arms = [{**random_arm, "seeds": [1, 2, 3]}, {**influence, "seeds": [2]}]
    paths = run_experiment(
        experiment_args(micro_corpus, warm_up, out, strategies=arms, seeds=[1], evaluation=evaluation)
    )
    cells = sorted(p.parent.relative_to(out).as_posix() for p in out.glob("seed-*/*/metrics.json"))
    assert cells == [
        "seed-1/influence",
        "seed-1/random",
        "seed-2/influence",
        "seed-2/random",
        "seed-3/random",
    ]
    assert (out / "seed-1" / "random" / "metrics.json").stat().st_mtime_ns == first  # not redone
    summary = json.loads(Path(paths["json"]).read_text())["summary"]
    assert summary["random"]["seeds"] == [1, 2, 3]
    assert summary["influence"]["seeds"] == [2]  # seed 1's cell is no longer the arm's
    markdown = Path(paths["markdown"]).read_text()
    assert "over each arm's seeds (1 to 3" in markdown
    with pytest.raises(ExperimentError, match="seeds must be a non-empty list"):
        run_experiment(
            experiment_args(
                micro_corpus, warm_up, out, strategies=[{**random_arm, "seeds": []}], evaluation=evaluation
            )
        )


@pytest.mark.slow
def test_two_processes_run_the_experiment_one_process_runs(micro_corpus, warm_up, tmp_path):
    """`torchrun --nproc_per_node 2 run_experiment.py` at the same global batch (2 x 2 blocks a step
    against 1 x 4): the main process selects, writes and evaluates, both train; the same blocks are
    kept and the arms' losses match one process's to float rounding, one table, written once."""
    import dataclasses

    import yaml
    from datasets import load_from_disk
    from helpers import run_on_cpu_processes

    def run(processes: int, out):
        args = experiment_args(
            micro_corpus, warm_up, out, strategies=[{"name": "random", "strategy": "random"},
            {"name": "influence", "strategy": "gumbel_top_k", "tasks": ["humaneval"], "temperature": 0.5}],
            seeds=[1], pretrain_overrides={"per_device_train_batch_size": 4 // processes, "logging_steps": 1},
        )  # fmt: skip
        args = dataclasses.replace(args, evaluation={**args.evaluation, "execution_tasks": []})
        recipe = tmp_path / f"experiment-{processes}.yaml"
        recipe.write_text(yaml.safe_dump(dataclasses.asdict(args)))
        done = run_on_cpu_processes("run_experiment.py", ["--config", recipe], 29571 + processes, processes)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    run(1, tmp_path / "one")
    two = run(2, tmp_path / "two")
    assert two.stdout.count("| arm |") == 1  # the table is printed by the main process only
    for arm in ("random", "influence"):
        cells = [
            json.loads((tmp_path / out / "seed-1" / arm / "metrics.json").read_text())
            for out in ("one", "two")
        ]
        assert cells[0]["tokens_trained"] == cells[1]["tokens_trained"] == 2 * 4 * 64
        assert cells[1]["loss/humaneval/report"] == pytest.approx(cells[0]["loss/humaneval/report"], rel=1e-4)
        kept = [
            load_from_disk(str(tmp_path / out / "seed-1" / arm / "selection" / "blocks"))["block_id"]
            for out in ("one", "two")
        ]
        assert kept[0] == kept[1]
    assert (tmp_path / "two" / "results.md").is_file()
