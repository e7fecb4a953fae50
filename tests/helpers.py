"""Helpers shared by the test modules: micro-model runs of the tiny recipe."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from transformers import TrainerCallback, TrainingArguments

from codesift.configs import ModelArguments, PretrainArguments, parse_args
from codesift.training import run_pretraining

ROOT = Path(__file__).resolve().parents[1]
MICRO = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
}


def micro_cli(corpus: Path, output_dir: Path, *extra) -> list[str]:
    return [
        "--config",
        str(ROOT / "recipes/tiny/pretrain.yaml"),
        "--tokenizer_name_or_path",
        str(corpus / "tokenizer"),
        "--blocks",
        str(corpus / "blocks"),
        "--validation_sets",
        str(corpus / "validation_tokenized"),
        "--eval_tasks",
        "humaneval",
        "--eval_part",
        "report",
        "--output_dir",
        str(output_dir),
        "--per_device_train_batch_size",
        "4",
        "--per_device_eval_batch_size",
        "16",
        "--learning_rate",
        "1e-2",
        "--warmup_steps",
        "1",
        "--logging_steps",
        "1",
        "--eval_steps",
        "1000",
        "--disable_tqdm",
        "true",
        *map(str, extra),
    ]


def micro_args(corpus, output_dir, *extra, **model_overrides):
    model_args, pretrain_args, training_args = parse_args(
        ModelArguments, PretrainArguments, TrainingArguments, args=micro_cli(corpus, output_dir, *extra)
    )
    model_args = dataclasses.replace(model_args, model_overrides={**MICRO, **model_overrides})
    if "--schedule_total_steps" not in map(str, extra):  # the recipe's 600-step schedule is not a micro run's
        pretrain_args = dataclasses.replace(pretrain_args, schedule_total_steps=None)
    return model_args, pretrain_args, training_args


def train(corpus, output_dir, *extra, callbacks=(), **model_overrides):
    return run_pretraining(
        *micro_args(corpus, output_dir, *extra, **model_overrides), extra_callbacks=callbacks
    )


def run_script(name: str, *args, cwd=ROOT) -> subprocess.CompletedProcess:
    """`python scripts/<name> ...` as a user runs it, offline, from the project root."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def run_on_cpu_processes(
    script: str, args: list, port: int, processes: int = 2
) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node N scripts/<script> ...` on this CPU (gloo), as a cluster user
    launches it; each process on one thread, so one and two processes compute alike."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(processes),
        "--master_port",
        str(port),
        str(ROOT / "scripts" / script),
        *map(str, args),
    ]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def accelerate_launch(config: str, script: str, args: list, port: int, processes: int = 2):
    """`accelerate launch --config_file recipes/accelerate_configs/<config> --num_processes N
    scripts/<script> ...` on this CPU, as the README's cluster command (bf16 off: CPUs here)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ROOT / "recipes" / "accelerate_configs" / config),
        "--num_processes", str(processes), "--mixed_precision", "no", "--main_process_port", str(port),
        str(ROOT / "scripts" / script), *map(str, args),
    ]  # fmt: skip
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


class MomentProbe(TrainerCallback):
    """Records the AdamW moments and the lr the first new step starts from."""

    def __init__(self):
        self.seen = None

    def on_step_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        if self.seen is None:
            first = optimizer.param_groups[0]["params"][0]
            moments = optimizer.state[first]
            self.seen = {
                "step": state.global_step,
                "exp_avg": moments["exp_avg"].clone(),
                "exp_avg_sq": moments["exp_avg_sq"].clone(),
                "lr": lr_scheduler.get_last_lr()[0],
            }
