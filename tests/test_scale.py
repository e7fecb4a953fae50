"""Scale without a GPU: the 1B recipe's real width trains and is scored on CPU, its dry run plans
the memory of 1, 8 and 64 GPUs, and the cluster launch (`accelerate launch` with the DDP or FSDP
config) runs on two CPU processes."""

import dataclasses
import os
import resource
import subprocess
import sys

import pytest
import torch
from datasets import Dataset, DatasetDict, load_from_disk
from helpers import ROOT, micro_args

from codesift.influence import ExactScorer, FirstOrderScorer, ValidationBatches, load_checkpoint_for_scoring
from codesift.modeling import MODEL_PRESETS
from codesift.training import run_pretraining


def long_blocks(micro_corpus, path, length: int) -> str:
    """The micro pool's tokens re-packed into `length`-token blocks (train and candidates)."""
    blocks = load_from_disk(str(micro_corpus / "blocks"))
    ids = [token for row in blocks["train"]["input_ids"] for token in row]
    rows = [ids[i : i + length] for i in range(0, len(ids) - length + 1, length)]
    assert len(rows) >= 4, "the micro corpus is too small for this test"
    split = {
        "train": Dataset.from_dict({"block_id": list(range(len(rows) - 1)), "input_ids": rows[:-1]}),
        "candidates": Dataset.from_dict({"block_id": [10_000], "input_ids": rows[-1:]}),
    }
    DatasetDict(split).save_to_disk(str(path))
    return str(path)


@pytest.mark.slow
def test_the_1b_width_trains_and_is_scored_on_cpu(micro_corpus, tmp_path, capsys):
    """The codellm-1b preset (hidden 2048, 32 heads, 4 KV heads, FFN 5632) with 2 layers and a
    512-token context: 2 training steps, then one exact probe and one fast score from its checkpoint."""
    width = {k: MODEL_PRESETS["codellm-1b"][k] for k in ("hidden_size", "intermediate_size")}
    heads = {k: MODEL_PRESETS["codellm-1b"][k] for k in ("num_attention_heads", "num_key_value_heads")}
    blocks = long_blocks(micro_corpus, tmp_path / "blocks", 512)
    model_args, pretrain_args, training_args = micro_args(
        micro_corpus,
        tmp_path / "run",
        *(
            "--max_steps",
            2,
            "--save_steps",
            2,
            "--schedule_total_steps",
            10,
            "--per_device_train_batch_size",
            1,
        ),
        *("--blocks", blocks, "--eval_strategy", "no", "--learning_rate", "4e-4"),
        **width,
        **heads,
        num_hidden_layers=2,
        max_position_embeddings=512,
    )
    model_args = dataclasses.replace(model_args, model_preset="codellm-1b")
    metrics = run_pretraining(model_args, pretrain_args, training_args)
    assert metrics["train_loss"] > 0
    model, optimizer, args, step = load_checkpoint_for_scoring(tmp_path / "run" / "checkpoint-2")
    assert step == 2 and model.config.hidden_size == 2048 and model.config.num_hidden_layers == 2
    sets = load_from_disk(str(micro_corpus / "validation_tokenized"))
    validation = ValidationBatches({"humaneval": sets["humaneval_select"].select(range(4))}, 4, 0)
    block = torch.as_tensor(load_from_disk(blocks)["candidates"][0]["input_ids"])
    assert len(block) == 512
    exact = ExactScorer(model, optimizer, validation, args.max_grad_norm).score(block)
    fast = FirstOrderScorer(model, optimizer, validation, args.max_grad_norm, "adam_update").score(block)
    assert torch.isfinite(exact["influence"]).all() and torch.isfinite(fast["influence"]).all()
    assert exact["influence"].abs().max() > 0 and fast["influence"].abs().max() > 0
    # one step on one block: the first-order estimate has the exact score's sign
    assert torch.sign(exact["influence"]).tolist() == torch.sign(fast["influence"]).tolist()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux -> GiB
    with capsys.disabled():
        print(
            f"\n1B width, 2 layers, 512 tokens: {sum(p.numel() for p in model.parameters()):,} parameters; "
            f"exact {exact['influence'].tolist()}, fast {fast['influence'].tolist()}; peak memory {peak:.2f} GiB"
        )


def test_dry_run_plans_the_1b_recipe_for_1_8_and_64_gpus():
    result = subprocess.run(
        [
            sys.executable,
            "scripts/pretrain.py",
            "--config",
            "recipes/codellm-1b/pretrain.yaml",
            "--dry_run",
            "true",
            "--dry_run_vocab_size",
            "49152",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "1 GPU" in out and "8 GPU" in out and "64 GPU" in out
    params = int(out.split("parameters counted on the meta device: ")[1].split(" ")[0].replace(",", ""))
    assert 1.0e9 < params < 1.3e9  # TinyLlama's shape with StarCoder's vocabulary
    tokens = [line for line in out.splitlines() if line.startswith("tokens per step")][0].split()[3:]
    assert [int(t.replace(",", "")) for t in tokens] == [16 * 2048 * 4 * n for n in (1, 8, 64)]
    assert not (ROOT / "outputs" / "codellm-1b" / "pretrain").exists()  # nothing trained, nothing written


@pytest.mark.slow
def test_accelerate_launch_with_the_ddp_config_trains_and_stage_03_scores_it(micro_corpus, tmp_path):
    """README's cluster command on two CPU processes: the DDP config trains the tiny model 3 steps,
    then stage 03, launched the same way, scores the checkpoint it saved."""
    from helpers import accelerate_launch, micro_cli

    out = tmp_path / "ddp"
    done = accelerate_launch(
        "ddp.yaml", "pretrain.py", micro_cli(micro_corpus, out, "--max_steps", 3, "--save_steps", 3), 29621
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on 2 process(es)" in done.stderr and "shards only on GPUs" not in done.stderr
    scores = tmp_path / "scores"
    args = [
        "--config", ROOT / "recipes/tiny/influence.yaml", "--checkpoint", out / "checkpoint-3",
        "--candidates", micro_corpus / "blocks", "--validation_sets", micro_corpus / "validation_tokenized",
        "--tasks", "humaneval", "--max_candidates", 6, "--methods", "adam_update", "--output_dir", scores,
    ]  # fmt: skip
    done = accelerate_launch("ddp.yaml", "compute_influence.py", args, 29622)
    assert done.returncode == 0, done.stderr[-3000:]
    written = load_from_disk(str(scores / "step-3" / "adam_update"))
    assert len(written) == 6 and all(v == v for v in written["influence_humaneval"])


@pytest.mark.slow
def test_the_fsdp_config_on_cpu_processes_says_it_runs_ddp(micro_corpus, tmp_path):
    """accelerate shards with FSDP only on accelerators; on CPU processes it runs DDP. The run
    trains and says so in one warning instead of passing as FSDP."""
    from helpers import accelerate_launch, micro_cli

    out = tmp_path / "fsdp"
    done = accelerate_launch(
        "fsdp.yaml", "pretrain.py", micro_cli(micro_corpus, out, "--max_steps", 2, "--save_steps", 2), 29623
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "accelerate shards only on GPUs: this run trains with MULTI_CPU" in done.stderr
    assert (out / "checkpoint-2" / "optimizer.pt").is_file()


def test_the_stage_03_memory_plan_counts_what_the_scorer_holds(micro_corpus, tmp_path):
    """The plan's parts are the scorer's own tensors on a real checkpoint: the task-direction matrix
    (tasks x scored parameters, float32), adam_update's three parameter-sized terms, the weights."""
    from helpers import train

    from codesift.costs import GIB, ModelShape, scoring_memory_plan

    train(micro_corpus, tmp_path / "run", "--max_steps", 2, "--save_steps", 2, "--schedule_total_steps", 20)
    model, optimizer, _, _ = load_checkpoint_for_scoring(tmp_path / "run" / "checkpoint-2")
    sets = load_from_disk(str(micro_corpus / "validation_tokenized"))
    tasks = {"a": sets["humaneval_select"].select(range(4)), "b": sets["humaneval_report"].select(range(4))}
    for top_layers in (None, 1):
        scorer = FirstOrderScorer(
            model, optimizer, ValidationBatches(tasks, 4, 0), None, "adam_update", top_layers
        )
        plan = scoring_memory_plan(ModelShape.from_config(model.config), "adam_update", 2, 1, 64, top_layers)
        held = {
            "task_directions_fp32": scorer.task_grads,
            "method_terms_fp32": [scorer.momentum_term, scorer.variance_term, scorer.decay_term],
            "weights_fp32": list(model.parameters()),
        }
        for part, tensors in held.items():
            tensors = tensors if isinstance(tensors, list) else [tensors]
            assert plan[part] * GIB == sum(t.numel() * t.element_size() for t in tensors), (part, top_layers)


def test_stage_03_dry_run_plans_the_1b_recipe_and_scores_nothing(tmp_path):
    """`compute_influence.py --dry_run true` prints the memory per process of each method from the
    recipe alone; a batch too large for an 80 GiB GPU is named with the largest that fits."""
    out = tmp_path / "never"
    cmd = [
        sys.executable, str(ROOT / "scripts" / "compute_influence.py"), "--config", str(ROOT / "recipes/codellm-1b/influence.yaml"),
        "--dry_run", "true", "--dry_run_model_preset", "codellm-1b", "--dry_run_vocab_size", "49152",
        "--methods", "exact", "adam_precond_clipped", "--output_dir", str(out),
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines() if line.strip()}
    assert rows["task_directions_fp32"] == ["0.00", "26.16"]  # 6 tasks x 1.17B float32, adam_precond_clipped
    assert rows["probe_snapshot_fp32"] == ["13.08", "0.00"]  # exact: weights + moments
    assert "adam_precond_clipped (batch_size 2, top_layers None): 61.1 GiB, fits an 80 GiB GPU" in done.stdout
    assert not out.exists()
    done = subprocess.run([*cmd, "--batch_size", "16"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "153.5 GiB, does NOT fit an 80 GiB GPU; the largest batch_size that fits: 4" in done.stdout
