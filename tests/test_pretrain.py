"""Stage 02 on a micro model (hidden 32, 2 layers): training, checkpoints, resume, continuation."""

import json

import pytest
import torch
from helpers import MomentProbe, micro_args, micro_cli, run_on_cpu_processes, train
from transformers import AutoModelForCausalLM, TrainerCallback

from codesift.data import DataError
from codesift.modeling import MODEL_PRESETS, VocabSpec, build_model_config, count_parameters
from codesift.training import PretrainError


def weights(folder):
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    return {name: p.detach().clone() for name, p in model.state_dict().items()}


def test_a_few_steps_train_save_and_load(micro_corpus, tmp_path):
    out = tmp_path / "run"
    metrics = train(micro_corpus, out, "--max_steps", 12, "--save_steps", 6)
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    losses = [log["loss"] for log in history if "loss" in log]
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3
    for name in (
        "model.safetensors",
        "optimizer.pt",
        "scheduler.pt",
        "rng_state.pth",
        "trainer_state.json",
        "schedule.json",
    ):
        assert (out / "checkpoint-6" / name).is_file(), name
    assert "eval_humaneval_loss" in metrics and metrics["eval_humaneval_loss"] < 6.0  # ln(400) = 6.0
    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert model.config.hidden_size == 32 and model.config.vocab_size == 400
    assert (out / "README.md").read_text().count("eval_humaneval_loss") == 1
    assert (out / "log_history.jsonl").is_file()  # the recipe's log_history callback


def test_resume_reproduces_the_uninterrupted_run(micro_corpus, tmp_path):
    train(micro_corpus, tmp_path / "straight", "--max_steps", 6, "--save_steps", 100)
    # the same 6-step schedule, stopped after 3 steps, then resumed from its checkpoint
    train(micro_corpus, tmp_path / "split", "--max_steps", 3, "--schedule_total_steps", 6, "--save_steps", 3)
    train(micro_corpus, tmp_path / "split", "--max_steps", 6, "--save_steps", 100)
    straight, split = weights(tmp_path / "straight"), weights(tmp_path / "split")
    for name in straight:
        assert torch.equal(straight[name], split[name]), name  # bit-identical on CPU


def test_a_finished_run_run_again_changes_nothing(micro_corpus, tmp_path, caplog):
    import logging

    out = tmp_path / "run"
    first = train(micro_corpus, out, "--max_steps", 4, "--save_steps", 4)
    before = weights(out)
    files = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    with caplog.at_level(logging.INFO, logger="codesift.training"):
        again = train(micro_corpus, out, "--max_steps", 4, "--save_steps", 4)
    assert "already finished" in caplog.text
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4"]  # no checkpoint-5
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == files  # nothing written
    after = weights(out)
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert again["eval_humaneval_loss"] == first["eval_humaneval_loss"]


def test_continued_pretraining_restores_moments_and_schedule(micro_corpus, tmp_path):
    train(micro_corpus, tmp_path / "base", "--max_steps", 4, "--schedule_total_steps", 10, "--save_steps", 4)
    checkpoint = tmp_path / "base" / "checkpoint-4"
    probe = MomentProbe()
    train(
        micro_corpus,
        tmp_path / "continued",
        "--continue_from",
        checkpoint,
        "--blocks_split",
        "candidates",
        "--max_steps",
        3,
        "--save_steps",
        100,
        callbacks=[probe],
    )
    saved = torch.load(checkpoint / "optimizer.pt", weights_only=True)["state"][0]
    assert probe.seen["step"] == 4
    assert torch.equal(probe.seen["exp_avg"], saved["exp_avg"])
    assert torch.equal(probe.seen["exp_avg_sq"], saved["exp_avg_sq"])
    saved_scheduler = torch.load(checkpoint / "scheduler.pt", weights_only=True)
    assert probe.seen["lr"] == pytest.approx(
        saved_scheduler["_last_lr"][0]
    )  # the schedule goes on from step 4
    state = json.loads((tmp_path / "continued" / "trainer_state.json").read_text())
    assert state["global_step"] == 7
    assert "continued from" in (tmp_path / "continued" / "README.md").read_text()


@pytest.mark.slow
def test_two_cpu_processes_train_and_save(micro_corpus, tmp_path):
    """DDP over gloo: two processes on this CPU, launched as a cluster user would (torchrun)."""
    out = tmp_path / "ddp"
    # model_overrides (a dict) has no CLI form: the tiny preset, whose 256 context holds 64-token blocks
    overrides = ["--max_steps", 3, "--save_steps", 3]
    done = run_on_cpu_processes("pretrain.py", micro_cli(micro_corpus, out, *overrides), port=29533)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 3 and (out / "checkpoint-3" / "optimizer.pt").is_file()
    assert "on 2 process(es)" in done.stderr


class OptimizerProbe(TrainerCallback):
    def __init__(self):
        self.names = []

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps it
        self.names.append(f"{type(inner).__module__}.{type(inner).__name__}")


def test_adamw_8bit_runs_two_steps_on_cpu(micro_corpus, tmp_path):
    probe = OptimizerProbe()
    metrics = train(
        micro_corpus,
        tmp_path / "bnb",
        "--max_steps",
        2,
        "--optim",
        "adamw_bnb_8bit",
        "--save_steps",
        2,
        callbacks=[probe],
    )
    assert len(probe.names) == 2 and all(name.startswith("bitsandbytes.") for name in probe.names), (
        probe.names
    )
    state = torch.load(tmp_path / "bnb" / "checkpoint-2" / "optimizer.pt", weights_only=False)["state"]
    assert all("__bnb_optimizer_quant_state__" in s for s in state.values())
    assert torch.isfinite(torch.tensor(metrics["train_loss"]))


def test_1b_preset_size_counted_on_meta_device():
    n_1b = count_parameters(build_model_config("codellm-1b", VocabSpec(49152)))
    assert 1.0e9 <= n_1b <= 1.2e9, n_1b
    n_tiny = count_parameters(build_model_config("tiny", VocabSpec(8192)))
    assert 2.5e6 < n_tiny < 3.5e6
    assert MODEL_PRESETS["codellm-1b"]["max_position_embeddings"] == 2048


def test_blocks_longer_than_the_context_fail_before_training(micro_corpus, tmp_path):
    with pytest.raises(DataError, match="blocks of 64 tokens but the model's context is 32"):
        train(micro_corpus, tmp_path / "x", "--max_steps", 1, max_position_embeddings=32)
    assert not (tmp_path / "x").exists()


def test_blocks_from_another_tokenizer_fail_before_training(micro_corpus, tmp_path):
    from datasets import Dataset

    Dataset.from_dict({"input_ids": [[5, 9000] + [1] * 62] * 4}).save_to_disk(str(tmp_path / "foreign"))
    with pytest.raises(DataError, match="token id 9000 but the model's vocabulary has 400"):
        train(micro_corpus, tmp_path / "x", "--max_steps", 1, "--blocks", tmp_path / "foreign")
    assert not (tmp_path / "x").exists()


def test_missing_inputs_fail_clearly(micro_corpus, tmp_path):
    with pytest.raises(PretrainError, match="continue_from checkpoint not found"):
        train(micro_corpus, tmp_path / "x", "--continue_from", tmp_path / "checkpoint-9")
    with pytest.raises(PretrainError, match="not a Trainer checkpoint"):
        train(micro_corpus, tmp_path / "x", "--continue_from", micro_corpus)
    with pytest.raises(DataError, match="run scripts/build_corpus.py first"):
        train(micro_corpus, tmp_path / "x", "--blocks", tmp_path / "no_blocks")
    with pytest.raises(ValueError, match="--max_stepz"):
        micro_args(micro_corpus, tmp_path / "x", "--max_stepz", 3)
    with pytest.raises(ValueError, match="model_overrides has keys LlamaConfig does not know"):
        train(micro_corpus, tmp_path / "x", "--max_steps", 1, hidden_sizes=3)


def test_streamed_blocks_from_a_parquet_folder_train(micro_corpus, tmp_path):
    from datasets import load_from_disk

    folder = tmp_path / "parquet_blocks"
    folder.mkdir()
    load_from_disk(str(micro_corpus / "blocks"))["train"].to_parquet(str(folder / "train-00000.parquet"))
    metrics = train(
        micro_corpus,
        tmp_path / "stream",
        "--max_steps",
        3,
        "--save_steps",
        3,
        "--blocks",
        folder,
        "--blocks_streaming",
        "true",
    )
    assert json.loads((tmp_path / "stream" / "trainer_state.json").read_text())["global_step"] == 3
    assert torch.isfinite(torch.tensor(metrics["train_loss"]))
