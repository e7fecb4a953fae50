"""Stage 03: the exact score against a from-scratch reference, exact restore, fast vs exact,
resumable sharded scoring, and clear errors."""

import copy
import json
import shutil

import pytest
import torch
from datasets import load_from_disk
from helpers import run_on_cpu_processes, run_script, train

from codesift.configs import InfluenceArguments
from codesift.influence import (
    ExactScorer,
    FirstOrderScorer,
    InfluenceError,
    ValidationBatches,
    load_checkpoint_for_scoring,
    run_influence_stage,
    score_rows,
)
from codesift.influence import scoring as scoring_module


@pytest.fixture(scope="module")
def micro_checkpoint(micro_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("influence_run") / "run"
    train(micro_corpus, out, "--max_steps", 8, "--save_steps", 8, "--schedule_total_steps", 20)
    return out / "checkpoint-8"


@pytest.fixture(scope="module")
def task_sets(micro_corpus):
    sets = load_from_disk(str(micro_corpus / "validation_tokenized"))
    return {"he_select": sets["humaneval_select"], "he_report": sets["humaneval_report"]}


@pytest.fixture(scope="module")
def candidates(micro_corpus):
    return load_from_disk(str(micro_corpus / "blocks"))["candidates"]


def to_float64(model, optimizer):
    model.double()
    for state in optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value) and value.is_floating_point() and key != "step":
                state[key] = value.double()


def reference_score(checkpoint, model64, optimizer, block, task_sets, max_grad_norm):
    """A from-scratch implementation: a deep-copied model, a torch.optim.AdamW built from the
    checkpoint's optimizer.pt, one step(), and each problem's loss from the model's own forward."""
    names = {id(p): n for n, p in model64.named_parameters()}
    model = copy.deepcopy(model64)
    params = dict(model.named_parameters())
    saved = torch.load(checkpoint / "optimizer.pt", weights_only=False)
    groups = [
        {
            **{k: v for k, v in g.items() if k != "params"},
            "params": [params[names[id(p)]] for p in live["params"]],
        }
        for g, live in zip(saved["param_groups"], optimizer.param_groups, strict=True)
    ]
    reference = torch.optim.AdamW(groups)
    state = {
        k: {n: (v.double() if n != "step" and v.is_floating_point() else v.clone()) for n, v in s.items()}
        for k, s in saved["state"].items()
    }
    reference.load_state_dict({"state": state, "param_groups": saved["param_groups"]})

    def task_losses():
        out = {}
        with torch.no_grad():
            for task, dataset in task_sets.items():
                total, count = 0.0, 0
                for row in dataset:
                    ids = torch.tensor([row["input_ids"]])
                    labels = torch.tensor([row["labels"]])
                    n = int((labels[:, 1:] != -100).sum())
                    total += float(model(input_ids=ids, labels=labels).loss) * n
                    count += n
                out[task] = total / count
        return out

    before = task_losses()
    ids = torch.tensor([block])
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    torch.nn.utils.clip_grad_norm_(list(params.values()), max_grad_norm)
    reference.step()
    after = task_losses()
    return {task: before[task] - after[task] for task in task_sets}


def test_exact_score_equals_a_from_scratch_implementation(micro_checkpoint, task_sets, candidates):
    model, optimizer, args, step = load_checkpoint_for_scoring(micro_checkpoint)
    assert step == 8
    to_float64(model, optimizer)  # float64 so that the comparison tests the method, not rounding
    scorer = ExactScorer(model, optimizer, ValidationBatches(task_sets, 8, 0), args.max_grad_norm)
    for block in candidates.select(range(4))["input_ids"]:
        ours = scorer.score(torch.tensor(block))["influence"].tolist()
        theirs = reference_score(micro_checkpoint, model, optimizer, block, task_sets, args.max_grad_norm)
        assert ours == pytest.approx(list(theirs.values()), abs=1e-6)
        assert any(abs(v) > 1e-4 for v in ours)  # a real step happened


def test_float32_exact_scores_match_the_float64_reference(micro_checkpoint, task_sets, candidates):
    """The kit runs in float32; its validation losses are summed in float64, so rounding stays below
    the differences between candidates (a float32 sum over thousands of token losses drifts by ~1e-5)."""
    model, optimizer, args, _ = load_checkpoint_for_scoring(micro_checkpoint)
    model64, optimizer64, _, _ = load_checkpoint_for_scoring(micro_checkpoint)
    to_float64(model64, optimizer64)
    scorer = ExactScorer(model, optimizer, ValidationBatches(task_sets, 8, 0), args.max_grad_norm)
    for block in candidates.select(range(3))["input_ids"]:
        ours = scorer.score(torch.tensor(block))["influence"].tolist()
        theirs = reference_score(micro_checkpoint, model64, optimizer64, block, task_sets, args.max_grad_norm)
        assert ours == pytest.approx(list(theirs.values()), abs=1e-6)


def test_scoring_restores_model_and_optimizer_exactly(micro_checkpoint, task_sets, candidates):
    model, optimizer, args, _ = load_checkpoint_for_scoring(micro_checkpoint)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    state = copy.deepcopy(optimizer.state_dict())
    rng = torch.get_rng_state()
    scorer = ExactScorer(model, optimizer, ValidationBatches(task_sets, 8, 0), args.max_grad_norm)
    first = [scorer.score(torch.tensor(b))["influence"] for b in candidates.select(range(3))["input_ids"]]
    again = [scorer.score(torch.tensor(b))["influence"] for b in candidates.select(range(3))["input_ids"]]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))  # deterministic
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key]), key
    after = optimizer.state_dict()
    for index, saved in state["state"].items():
        for key, value in saved.items():
            assert torch.equal(after["state"][index][key], value), (index, key)
    assert [g["lr"] for g in after["param_groups"]] == [g["lr"] for g in state["param_groups"]]
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in model.parameters())


def spearman(a, b):
    def ranks(x):
        order = sorted(range(len(x)), key=lambda i: x[i])
        r = [0] * len(x)
        for rank, i in enumerate(order):
            r[i] = rank
        return torch.tensor(r, dtype=torch.float64)

    ra, rb = ranks(a), ranks(b)
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def test_fast_scores_rank_like_the_exact_ones(micro_checkpoint, task_sets, candidates):
    model, optimizer, args, step = load_checkpoint_for_scoring(micro_checkpoint)
    validation = ValidationBatches(task_sets, 8, 0)
    pool = candidates.select(range(30))
    exact = score_rows(
        ExactScorer(model, optimizer, validation, args.max_grad_norm), list(task_sets), pool, step, "exact"
    )
    correlations = {}
    for method in ("grad_dot", "adam_update"):
        fast = score_rows(
            FirstOrderScorer(model, optimizer, validation, args.max_grad_norm, method),
            list(task_sets),
            pool,
            step,
            method,
        )
        correlations[method] = spearman(
            [r["influence_he_select"] for r in exact], [r["influence_he_select"] for r in fast]
        )
    assert correlations["adam_update"] > 0.9, correlations
    assert correlations["adam_update"] >= correlations["grad_dot"] - 0.05, correlations


def stage_args(micro_corpus, checkpoint, out, **overrides):
    fields = dict(
        checkpoint=[str(checkpoint)],
        candidates=str(micro_corpus / "blocks"),
        max_candidates=12,
        validation_sets=str(micro_corpus / "validation_tokenized"),
        tasks=["humaneval"],
        part="select",
        methods=["exact", "adam_update"],
        eval_batch_size=8,
        shard_size=5,
        output_dir=str(out),
    )
    return InfluenceArguments(**{**fields, **overrides})


def test_adam_update_is_the_weight_change_of_the_real_optimizer_step(micro_checkpoint, task_sets, candidates):
    """adam_update's modelled step equals what the checkpoint's own AdamW does with the block's
    clipped gradient (so its scores are first order in the step, not in the optimizer)."""
    model, optimizer, args, _ = load_checkpoint_for_scoring(micro_checkpoint)
    scorer = FirstOrderScorer(
        model, optimizer, ValidationBatches(task_sets, 8, 0), args.max_grad_norm, "adam_update"
    )
    block = torch.as_tensor(candidates[3]["input_ids"])
    gradient = scorer.candidate_gradient(block)
    modelled = scorer.delta(gradient.clone())
    before = [p.detach().clone() for p in scorer.params]
    offset = 0
    for p in scorer.params:
        p.grad = gradient[offset : offset + p.numel()].view_as(p).clone()
        offset += p.numel()
    torch.nn.utils.clip_grad_norm_(scorer.params, args.max_grad_norm)
    optimizer.step()
    real = torch.cat([(p.detach() - b).reshape(-1) for p, b in zip(scorer.params, before, strict=True)])
    torch.testing.assert_close(modelled, real, rtol=1e-4, atol=1e-7)


def influence_matrix(rows, tasks) -> torch.Tensor:
    return torch.tensor([[r[f"influence_{t}"] for t in tasks] + [r["candidate_loss"]] for r in rows])


@pytest.mark.parametrize("method", ["grad_dot", "adam_precond", "adam_precond_clipped", "adam_update"])
@pytest.mark.parametrize("top_layers", [None, 1])
def test_batched_scores_equal_the_per_candidate_ones(
    micro_checkpoint, task_sets, candidates, method, top_layers
):
    """Per-example gradients formed layer by layer from one batched backward give batch 1's scores."""
    model, optimizer, args, step = load_checkpoint_for_scoring(micro_checkpoint)
    validation = ValidationBatches(task_sets, 8, 0)
    pool, tasks = candidates.select(range(7)), list(task_sets)  # 7: a last batch of 3
    one = scoring_module.make_scorer(method, model, optimizer, validation, args.max_grad_norm, 1, top_layers)
    batched = scoring_module.make_scorer(
        method, model, optimizer, validation, args.max_grad_norm, 4, top_layers
    )
    assert batched.batch_size == 4
    expected = influence_matrix(score_rows(one, tasks, pool, step, method), tasks)
    got = influence_matrix(score_rows(batched, tasks, pool, step, method), tasks)
    scale = expected.abs().amax(0)
    torch.testing.assert_close(got / scale, expected / scale, rtol=0, atol=1e-4)
    assert all(p.requires_grad for p in model.parameters())  # the frozen parameters are given back


def test_a_window_scores_the_first_tokens_of_each_block(micro_checkpoint, task_sets, candidates):
    """`window: N` gives exactly the scores of the blocks cut to their first N tokens, batched or
    not; the exact method, the reference, refuses it."""
    from datasets import Dataset

    model, optimizer, args, step = load_checkpoint_for_scoring(micro_checkpoint)
    validation, pool, tasks = ValidationBatches(task_sets, 8, 0), candidates.select(range(6)), list(task_sets)
    cut = Dataset.from_dict(
        {"block_id": pool["block_id"], "input_ids": [ids[:16] for ids in pool["input_ids"]]}
    )
    for batch in (1, 3):
        windowed = scoring_module.make_scorer(
            "adam_update", model, optimizer, validation, None, batch, None, 16
        )
        plain = scoring_module.make_scorer("adam_update", model, optimizer, validation, None, batch)
        got = influence_matrix(score_rows(windowed, tasks, pool, step, "adam_update"), tasks)
        expected = influence_matrix(score_rows(plain, tasks, cut, step, "adam_update"), tasks)
        assert torch.equal(got, expected)
        whole = influence_matrix(score_rows(plain, tasks, pool, step, "adam_update"), tasks)
        assert not torch.equal(got, whole)
    with pytest.raises(InfluenceError, match="exact method steps on the whole block"):
        scoring_module.make_scorer("exact", model, optimizer, validation, None, 1, None, 16)


def test_clipping_acts_in_the_batched_scores(micro_checkpoint, task_sets, candidates):
    """The clipped variant is the unclipped one times each candidate's own factor
    min(1, max_grad_norm / ||g||), with ||g|| from the candidate's real (batch-1) gradient."""
    model, optimizer, args, step = load_checkpoint_for_scoring(micro_checkpoint)
    validation, pool, tasks = ValidationBatches(task_sets, 8, 0), candidates.select(range(8)), list(task_sets)
    rows = {
        m: influence_matrix(
            score_rows(
                scoring_module.make_scorer(m, model, optimizer, validation, args.max_grad_norm, 4),
                tasks,
                pool,
                step,
                m,
            ),
            tasks,
        )[:, :-1]
        for m in ("adam_precond", "adam_precond_clipped")
    }
    one = FirstOrderScorer(model, optimizer, validation, args.max_grad_norm, "adam_precond")
    norms = torch.tensor(
        [float(one.candidate_gradient(torch.as_tensor(ids)).norm()) for ids in pool["input_ids"]]
    )
    factors = torch.clamp(args.max_grad_norm / (norms + 1e-6), max=1.0).double()
    assert bool((factors < 1).any()) and bool((factors == 1).any()), factors  # both cases occur
    ratios = (rows["adam_precond_clipped"] / rows["adam_precond"]).double()
    torch.testing.assert_close(ratios, factors[:, None].expand_as(ratios), rtol=1e-4, atol=0)


def test_forward_differences_estimate_adam_precond_without_a_backward(
    micro_checkpoint, task_sets, candidates
):
    model, optimizer, args, step = load_checkpoint_for_scoring(micro_checkpoint)
    validation, pool, tasks = (
        ValidationBatches(task_sets, 8, 0),
        candidates.select(range(12)),
        list(task_sets),
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    forward = scoring_module.make_scorer(
        "adam_precond_forward", model, optimizer, validation, args.max_grad_norm, 4
    )
    backward = []
    handle = model.lm_head.register_full_backward_hook(lambda *a: backward.append(1))
    try:
        estimate = influence_matrix(score_rows(forward, tasks, pool, step, "f"), tasks)
    finally:
        handle.remove()
    assert backward == []  # forward passes only
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n  # the weights are given back bit for bit
    one = scoring_module.make_scorer("adam_precond", model, optimizer, validation, args.max_grad_norm, 1)
    expected = influence_matrix(score_rows(one, tasks, pool, step, "m"), tasks)
    # a difference over one real Adam step (lr 1e-2 in the micro run): close, not equal
    for column in range(len(tasks)):
        assert spearman(estimate[:, column].tolist(), expected[:, column].tolist()) > 0.95
    torch.testing.assert_close(estimate[:, -1], expected[:, -1], rtol=1e-2, atol=0)  # candidate losses


def test_top_layers_scores_the_top_of_the_model_and_backpropagates_no_further(
    micro_checkpoint, task_sets, candidates
):
    model, optimizer, args, _ = load_checkpoint_for_scoring(micro_checkpoint)
    validation = ValidationBatches(task_sets, 8, 0)
    scorer = FirstOrderScorer(model, optimizer, validation, args.max_grad_norm, "adam_update", top_layers=1)
    top = model.config.num_hidden_layers - 1
    names = {id(p): n for n, p in model.named_parameters()}
    scored = sorted(names[id(p)] for p in scorer.params)
    assert scored and all(n.startswith((f"model.layers.{top}.", "model.norm.", "lm_head.")) for n in scored)
    assert len(scored) == len(
        [n for n in names.values() if n.startswith((f"model.layers.{top}.", "model.norm.", "lm_head."))]
    )
    reached = []  # whether the lowest layer's output is part of the graph the backward walks
    handle = (
        model.get_decoder()
        .layers[0]
        .register_forward_hook(
            lambda module, args, output: reached.append(
                (output[0] if isinstance(output, tuple) else output).requires_grad
            )
        )
    )
    try:
        gradient = scorer.candidate_gradient(torch.as_tensor(candidates[0]["input_ids"]))
    finally:
        handle.remove()
    assert reached == [False] and gradient.numel() == sum(p.numel() for p in scorer.params)
    with pytest.raises(InfluenceError, match="top_layers must be between 1 and"):
        FirstOrderScorer(model, optimizer, validation, args.max_grad_norm, "grad_dot", top_layers=99)
    with pytest.raises(InfluenceError, match="exact method takes one real step"):
        scoring_module.make_scorer("exact", model, optimizer, validation, args.max_grad_norm, 4)


def test_a_checkpoint_with_fsdp_full_state_optimizer_is_read_as_the_trainer_wrote_it(
    micro_checkpoint, task_sets, candidates, tmp_path
):
    """FSDP with FULL_STATE_DICT writes the moments keyed by parameter name to optimizer.bin (through
    torch.distributed.checkpoint's get_optimizer_state_dict); stage 03 reads them into the same
    optimizer, and scores the same."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    model, optimizer, args, step = load_checkpoint_for_scoring(micro_checkpoint)
    fsdp_style = tmp_path / "checkpoint-8"
    shutil.copytree(micro_checkpoint, fsdp_style)
    (fsdp_style / "optimizer.pt").unlink()
    state = get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True))
    assert all(isinstance(key, str) for key in state["state"])  # keyed by name, not by index
    torch.save(state, fsdp_style / "optimizer.bin")
    model2, optimizer2, _, _ = load_checkpoint_for_scoring(fsdp_style)
    for p, q in zip(optimizer.param_groups[0]["params"], optimizer2.param_groups[0]["params"], strict=True):
        torch.testing.assert_close(
            optimizer.state[p]["exp_avg_sq"], optimizer2.state[q]["exp_avg_sq"], rtol=0, atol=0
        )
    assert [g["weight_decay"] for g in optimizer.param_groups] == [
        g["weight_decay"] for g in optimizer2.param_groups
    ]
    validation, pool = ValidationBatches(task_sets, 8, 0), candidates.select(range(2))
    one = score_rows(
        ExactScorer(model, optimizer, validation, args.max_grad_norm), list(task_sets), pool, step, "exact"
    )
    two = score_rows(
        ExactScorer(model2, optimizer2, validation, args.max_grad_norm), list(task_sets), pool, step, "exact"
    )
    assert one == two
    sharded = tmp_path / "checkpoint-sharded"
    shutil.copytree(micro_checkpoint, sharded)
    (sharded / "optimizer.pt").unlink()
    (sharded / "optimizer_0").mkdir()  # what SHARDED_STATE_DICT writes
    with pytest.raises(InfluenceError, match="FULL_STATE_DICT"):
        load_checkpoint_for_scoring(sharded)


def test_stage_writes_one_dataset_per_step_and_method(micro_corpus, micro_checkpoint, tmp_path):
    run_influence_stage(stage_args(micro_corpus, micro_checkpoint, tmp_path / "inf"))
    exact = load_from_disk(str(tmp_path / "inf" / "step-8" / "exact"))
    fast = load_from_disk(str(tmp_path / "inf" / "step-8" / "adam_update"))
    assert sorted(exact.column_names) == sorted(
        [
            "block_id",
            "step",
            "method",
            "influence_humaneval",
            "loss_before_humaneval",
            "loss_after_humaneval",
            "candidate_loss",
        ]
    )
    assert sorted(fast.column_names) == [
        "block_id",
        "candidate_loss",
        "influence_humaneval",
        "method",
        "step",
    ]
    assert exact["candidate_loss"] == pytest.approx(
        fast["candidate_loss"], rel=1e-4
    )  # the same block, same weights
    assert len(exact) == 12 and sorted(exact["block_id"]) == sorted(fast["block_id"])
    assert set(exact["step"]) == {8} and set(exact["method"]) == {"exact"}
    for row in exact:
        assert row["influence_humaneval"] == pytest.approx(
            row["loss_before_humaneval"] - row["loss_after_humaneval"]
        )
    meta = json.loads((tmp_path / "inf" / "step-8" / "exact" / "scoring.json").read_text())
    assert meta["candidates"] == 12 and meta["part"] == "select"


def test_a_killed_run_resumes_without_gaps_or_repeats(micro_corpus, micro_checkpoint, tmp_path, monkeypatch):
    args = stage_args(micro_corpus, micro_checkpoint, tmp_path / "inf", methods=["exact"])
    real = scoring_module.score_rows
    calls = []

    def dies_on_the_second_shard(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(scoring_module, "score_rows", dies_on_the_second_shard)
    with pytest.raises(KeyboardInterrupt):
        run_influence_stage(args)
    shards = sorted(p.name for p in (tmp_path / "inf" / ".shards" / "step-8-exact").glob("*.parquet"))
    assert shards == ["shard-00000.parquet"] and not (tmp_path / "inf" / "step-8" / "exact").exists()
    monkeypatch.setattr(scoring_module, "score_rows", real)
    resumed_calls = []
    monkeypatch.setattr(
        scoring_module, "score_rows", lambda *a, **k: resumed_calls.append(1) or real(*a, **k)
    )
    run_influence_stage(args)
    assert len(resumed_calls) == 2  # shards 2 and 3 only
    resumed = load_from_disk(str(tmp_path / "inf" / "step-8" / "exact"))
    monkeypatch.setattr(scoring_module, "score_rows", real)
    run_influence_stage(stage_args(micro_corpus, micro_checkpoint, tmp_path / "fresh", methods=["exact"]))
    fresh = load_from_disk(str(tmp_path / "fresh" / "step-8" / "exact"))
    assert sorted(resumed["block_id"]) == list(range(len(resumed))) or len(set(resumed["block_id"])) == 12
    by_id = {r["block_id"]: r["influence_humaneval"] for r in fresh}
    assert {r["block_id"]: r["influence_humaneval"] for r in resumed} == by_id


def test_a_rerun_rescores_only_the_score_sets_whose_inputs_changed(
    micro_corpus, micro_checkpoint, tmp_path, caplog
):
    import logging
    import shutil

    args = stage_args(
        micro_corpus,
        micro_checkpoint,
        tmp_path / "inf",
        methods=["grad_dot", "adam_update"],
        max_candidates=6,
    )
    run_influence_stage(args)

    def made():
        return {
            m: (tmp_path / "inf" / "step-8" / m / "scoring.json").stat().st_mtime_ns for m in args.methods
        }

    first = made()
    assert run_influence_stage(args) == {} and made() == first  # the same arguments: nothing rescored
    with caplog.at_level(logging.INFO, logger="codesift"):
        timings = run_influence_stage(stage_args(micro_corpus, micro_checkpoint, tmp_path / "inf",
                                                 methods=["grad_dot", "adam_update"], max_candidates=6, part="report"))  # fmt: skip
    assert set(timings) == {(8, "grad_dot"), (8, "adam_update")}
    assert "part changed" in caplog.text
    rescored = load_from_disk(str(tmp_path / "inf" / "step-8" / "grad_dot"))
    assert (
        len(rescored) == 6
        and json.loads((tmp_path / "inf" / "step-8" / "grad_dot" / "scoring.json").read_text())["part"]
        == "report"
    )
    # another checkpoint at the same step (a different run): its scores are redone, not reused
    other = tmp_path / "other" / "checkpoint-8"
    shutil.copytree(micro_checkpoint, other)
    (other / "trainer_state.json").write_text((other / "trainer_state.json").read_text() + " ")
    before = made()
    assert set(run_influence_stage(stage_args(micro_corpus, other, tmp_path / "inf", methods=["grad_dot"], max_candidates=6, part="report"))) == {(8, "grad_dot")}  # fmt: skip
    after = made()
    assert after["grad_dot"] != before["grad_dot"] and after["adam_update"] == before["adam_update"]


def test_exact_without_optimizer_state_names_the_method_that_works(micro_corpus, micro_checkpoint, tmp_path):
    bare = tmp_path / "checkpoint-8"
    shutil.copytree(micro_checkpoint, bare)
    (bare / "optimizer.pt").unlink()
    with pytest.raises(InfluenceError, match="grad_dot"):
        run_influence_stage(stage_args(micro_corpus, bare, tmp_path / "a", methods=["exact"]))
    run_influence_stage(stage_args(micro_corpus, bare, tmp_path / "b", methods=["grad_dot"]))
    assert len(load_from_disk(str(tmp_path / "b" / "step-8" / "grad_dot"))) == 12


def test_bad_inputs_fail_before_writing(micro_corpus, micro_checkpoint, tmp_path, candidates):
    from datasets import Dataset

    from codesift.data import DataError

    with pytest.raises(InfluenceError, match="unknown influence method"):
        run_influence_stage(stage_args(micro_corpus, micro_checkpoint, tmp_path / "x", methods=["exakt"]))
    with pytest.raises(InfluenceError, match="checkpoint not found"):
        run_influence_stage(stage_args(micro_corpus, tmp_path / "nope", tmp_path / "x"))
    Dataset.from_dict({"block_id": [0], "input_ids": [[1] * 64 + [2] * 64]}).save_to_disk(
        str(tmp_path / "long")
    )
    with pytest.raises(DataError, match="blocks of 128 tokens but the model's context is 64"):
        run_influence_stage(
            stage_args(
                micro_corpus,
                micro_checkpoint,
                tmp_path / "x",
                candidates=str(tmp_path / "long"),
                candidates_split="train",
            )
        )
    assert not (tmp_path / "x").exists()
    empty = {"t": Dataset.from_dict({"input_ids": [[1, 2, 3]], "labels": [[-100, -100, -100]]})}
    with pytest.raises(InfluenceError, match="no completion tokens"):
        ValidationBatches(empty, 4, 0)


def test_non_finite_losses_stop_and_name_the_candidate(micro_checkpoint, task_sets, candidates):
    model, optimizer, args, step = load_checkpoint_for_scoring(micro_checkpoint)
    scorer = ExactScorer(model, optimizer, ValidationBatches(task_sets, 8, 0), max_grad_norm=None)
    for group in optimizer.param_groups:
        group["lr"] = float("inf")  # a step that blows the weights up
    scorer.snapshot.lrs = [float("inf")] * len(optimizer.param_groups)
    pool = candidates.select(range(2))
    with pytest.raises(InfluenceError, match=f"block_id={pool[0]['block_id']}"):
        score_rows(scorer, list(task_sets), pool, step, "exact")


def callback_kwargs(micro_corpus, **overrides):
    return {
        "candidates": str(micro_corpus / "blocks"),
        "validation_sets": str(micro_corpus / "validation_tokenized"),
        "steps": [3, 5],
        "tasks": ["humaneval"],
        "methods": ["exact", "adam_update"],
        "max_candidates": 6,
        "eval_batch_size": 8,
        **overrides,
    }


def test_callback_scores_and_leaves_the_run_bit_identical(micro_corpus, tmp_path):
    from helpers import micro_args

    from codesift.influence.callback import InfluenceCallback
    from codesift.training import run_pretraining

    train(micro_corpus, tmp_path / "plain", "--max_steps", 6, "--save_steps", 100)
    probe = InfluenceCallback(**callback_kwargs(micro_corpus, batch_size=4))  # adam_update batched
    train(micro_corpus, tmp_path / "scored", "--max_steps", 6, "--save_steps", 100, callbacks=[probe])
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(str(tmp_path / "plain")).state_dict()
    scored = AutoModelForCausalLM.from_pretrained(str(tmp_path / "scored")).state_dict()
    for name, value in plain.items():
        assert torch.equal(value, scored[name]), name
    plain_log = json.loads((tmp_path / "plain" / "trainer_state.json").read_text())["log_history"]
    scored_log = json.loads((tmp_path / "scored" / "trainer_state.json").read_text())["log_history"]
    assert [log.get("loss") for log in plain_log] == [log.get("loss") for log in scored_log]
    for step in (3, 5):
        for method in ("exact", "adam_update"):
            scores = load_from_disk(str(tmp_path / "scored" / "influence" / f"step-{step}" / method))
            assert len(scores) == 6 and set(scores["step"]) == {step}
    # the callback's exact scores at step 3 equal the script's from a checkpoint saved at step 3
    model_args, pretrain_args, training_args = micro_args(
        micro_corpus, tmp_path / "ckpt", "--max_steps", 3, "--save_steps", 3, "--schedule_total_steps", 6
    )
    run_pretraining(model_args, pretrain_args, training_args)
    run_influence_stage(
        stage_args(
            micro_corpus,
            tmp_path / "ckpt" / "checkpoint-3",
            tmp_path / "script",
            max_candidates=6,
            methods=["exact"],
        )
    )
    from_script = load_from_disk(str(tmp_path / "script" / "step-3" / "exact"))
    from_callback = load_from_disk(str(tmp_path / "scored" / "influence" / "step-3" / "exact"))
    assert list(from_script["influence_humaneval"]) == pytest.approx(
        list(from_callback["influence_humaneval"]), abs=1e-6
    )


def test_callback_is_chosen_from_the_recipe(micro_corpus, tmp_path):
    from helpers import micro_args

    from codesift.training import run_pretraining

    model_args, pretrain_args, training_args = micro_args(
        micro_corpus, tmp_path / "run", "--max_steps", 2, "--save_steps", 100, "--callbacks", "influence"
    )
    pretrain_args.callback_kwargs = {
        "influence": callback_kwargs(micro_corpus, steps=[2], methods=["grad_dot"])
    }
    run_pretraining(model_args, pretrain_args, training_args)
    assert len(load_from_disk(str(tmp_path / "run" / "influence" / "step-2" / "grad_dot"))) == 6
    with pytest.raises(ValueError, match="unknown callback"):
        pretrain_args.callbacks = ["influense"]
        run_pretraining(model_args, pretrain_args, training_args)


@pytest.mark.slow
def test_callback_under_two_processes_shards_and_gathers(micro_corpus, tmp_path):

    from helpers import ROOT, micro_cli

    kwargs = json.dumps(
        {"influence": callback_kwargs(micro_corpus, steps=[2], methods=["grad_dot"], max_candidates=7)}
    )
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        (ROOT / "recipes/tiny/pretrain.yaml")
        .read_text()
        .replace("callback_kwargs: {}", f"callback_kwargs: {kwargs}")
        .replace("callbacks: [log_history]", "callbacks: [influence]")
    )
    cli = micro_cli(micro_corpus, tmp_path / "ddp", "--max_steps", 2, "--save_steps", 100)
    cli[1] = str(recipe)
    done = run_on_cpu_processes("pretrain.py", cli, port=29544)
    assert done.returncode == 0, done.stderr[-3000:]
    scores = load_from_disk(str(tmp_path / "ddp" / "influence" / "step-2" / "grad_dot"))
    assert sorted(scores["block_id"]) == sorted(
        load_from_disk(str(micro_corpus / "blocks"))["candidates"]["block_id"][:7]
    )


def test_analysis_helpers():
    from scipy.stats import spearmanr

    from codesift.stats import comment_share, spearman, top_overlap

    a, b = [0.3, -1.0, 2.0, 0.1, 5.0], [0.2, -3.0, 1.0, 0.4, 4.0]
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert top_overlap(a, a, 0.4) == 1.0 and top_overlap(a, [-x for x in a], 0.4) == 0.0
    assert comment_share("x = 1\n") == 0.0
    assert comment_share('"""doc"""\nx = 1  # note\n') == pytest.approx((9 + 6) / 24)


def test_shards_keep_every_process_busy_and_batches_whole():
    from codesift.influence.scoring import balanced_shard_size

    assert balanced_shard_size(9, 100, 2, 2) == 6  # one 100-block shard would leave a process idle
    assert balanced_shard_size(9, 100, 1, 2) == 10 and balanced_shard_size(9, 100, 2, 1) == 5
    assert balanced_shard_size(1000, 100, 8, 8) % 8 == 0  # batches start at the same blocks


@pytest.mark.slow
def test_two_processes_score_the_pool_as_one_does_bit_for_bit(micro_corpus, micro_checkpoint, tmp_path):
    """`torchrun --nproc_per_node 2 compute_influence.py` gives the scores one process gives, every
    float equal, with the pool split so both processes score (a 9-block pool, shard_size 100)."""
    import numpy as np
    from helpers import ROOT, run_on_cpu_processes

    def score(processes: int, out):
        args = [
            "--config", ROOT / "recipes/tiny/influence.yaml", "--checkpoint", micro_checkpoint,
            "--candidates", micro_corpus / "blocks", "--validation_sets", micro_corpus / "validation_tokenized",
            "--tasks", "humaneval", "--max_candidates", "9", "--shard_size", "100", "--batch_size", "2",
            "--methods", "exact", "adam_update", "--output_dir", out,
        ]  # fmt: skip
        done = run_on_cpu_processes("compute_influence.py", args, port=29555 + processes, processes=processes)
        assert done.returncode == 0, done.stderr[-3000:]

    score(1, tmp_path / "one")
    score(2, tmp_path / "two")
    for method, shard_size in (("exact", 5), ("adam_update", 6)):
        one = load_from_disk(str(tmp_path / "one" / "step-8" / method)).sort("block_id")
        two = load_from_disk(str(tmp_path / "two" / "step-8" / method)).sort("block_id")
        assert len(two) == 9 and one.column_names == two.column_names
        for column in one.column_names:
            np.testing.assert_array_equal(np.asarray(one[column]), np.asarray(two[column]), err_msg=column)
        record = json.loads((tmp_path / "two" / "step-8" / method / "scoring.json").read_text())
        assert (record["processes"], record["shard_size"]) == (2, shard_size)
    assert (tmp_path / "two" / "plots").is_dir()


def test_callback_options_are_the_stage_03_arguments(micro_corpus):
    """The callback takes stage 03's own arguments (one definition, one set of defaults) and
    refuses the ones the live run decides (checkpoint, clipping) with a line naming them."""
    import dataclasses

    from codesift.configs import InfluenceArguments
    from codesift.influence.callback import InfluenceCallback

    callback = InfluenceCallback(**callback_kwargs(micro_corpus, top_layers=2, part="report"))
    assert isinstance(callback.args, InfluenceArguments)
    assert (callback.args.top_layers, callback.args.part, callback.args.max_candidates) == (2, "report", 6)
    defaults = InfluenceCallback(steps=[1]).args
    stage = InfluenceArguments()
    shared = [f.name for f in dataclasses.fields(stage) if f.name not in ("methods", "output_dir")]
    assert {n: getattr(defaults, n) for n in shared} == {n: getattr(stage, n) for n in shared}
    assert defaults.methods == ["adam_update"] and defaults.output_dir is None  # fast, under the run
    for option in ("max_grad_norm", "shard_size", "candidate"):
        with pytest.raises(InfluenceError, match=f"no option\\(s\\) \\['{option}'\\]"):
            InfluenceCallback(steps=[1], **{option: 1})


@pytest.mark.slow
def test_the_exact_probe_steps_in_the_precision_the_run_trained_in(micro_corpus, tmp_path):
    """A run trained with bf16 autocast: the probe's step on a block is the step the Trainer itself
    takes next on that block (not a float32 step), and scoring.json says what ran in what."""
    from datasets import Dataset
    from transformers import Trainer

    from codesift.influence.exact import training_step
    from codesift.influence.scoring import run_precision
    from codesift.training import CausalLMCollator

    constant = ["--lr_scheduler_type", "constant", "--warmup_steps", 0]  # one lr, however many steps planned
    train(micro_corpus, tmp_path / "run", "--max_steps", 2, "--save_steps", 2, "--bf16", "true", *constant)
    checkpoint = tmp_path / "run" / "checkpoint-2"
    block = load_from_disk(str(micro_corpus / "blocks"))["candidates"][0]["input_ids"]

    model, optimizer, args, step = load_checkpoint_for_scoring(checkpoint)
    assert run_precision(args) == torch.bfloat16
    args.max_steps, args.per_device_train_batch_size, args.save_strategy = step + 1, 1, "no"
    args.output_dir, args.eval_strategy, args.logging_strategy = str(tmp_path / "next"), "no", "no"
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"input_ids": [block]}),
                      data_collator=CausalLMCollator(0))  # fmt: skip
    trainer.train(resume_from_checkpoint=str(checkpoint))
    stepped = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}

    def probe(dtype):
        model, optimizer, args, _ = load_checkpoint_for_scoring(checkpoint)
        training_step(model, optimizer, torch.as_tensor(block), args.max_grad_norm, dtype)
        return max(float((p.detach() - stepped[name]).abs().max()) for name, p in model.named_parameters())

    assert probe(torch.bfloat16) < 1e-7 < probe(None)
    out = tmp_path / "scores"
    done = run_script(
        "compute_influence.py", "--config", "recipes/tiny/influence.yaml", "--checkpoint", checkpoint,
        "--candidates", micro_corpus / "blocks", "--validation_sets", micro_corpus / "validation_tokenized",
        "--tasks", "humaneval", "--max_candidates", 2, "--methods", "exact", "--output_dir", out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    precision = json.loads((out / "step-2" / "exact" / "scoring.json").read_text())["precision"]
    assert (
        precision["exact_step"] == "bfloat16 autocast, as the run trained"
        and precision["weights"] == "float32"
    )
    assert "the exact probe steps in bfloat16 autocast" in done.stderr
