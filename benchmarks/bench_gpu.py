"""The 1B recipe on one GPU, in a few minutes: training throughput and MFU in bf16, the memory of
AdamW and 8-bit AdamW, and the seconds per candidate of the exact and the batched fast scores at
2,048 tokens. One prepared script; the numbers go to --json for docs/costs.md.

    python benchmarks/bench_gpu.py --json $OUT/gpu.json                       # on a GPU machine
    python benchmarks/bench_gpu.py --device cpu --layers 1 --seq_len 128 --steps 2 --candidates 2   # its code path on CPU

Random token ids stand in for the corpus (the cost of a step does not depend on which tokens it
sees); the shape is the codellm-1b preset (assumed, following TinyLlama) with StarCoder's vocabulary
and --layers of its 22 layers. MFU = training FLOPs per token (codesift.costs) x tokens per second /
the GPU's peak (--peak_tflops, 989 for an H100 SXM in dense bf16).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from codesift.costs import ModelShape
from codesift.influence import ValidationBatches, make_scorer
from codesift.modeling import MODEL_PRESETS, VocabSpec, build_model, build_model_config


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_gib(device) -> float | None:
    return torch.cuda.max_memory_allocated() / 1024**3 if device.type == "cuda" else None


def make_model(args, device, dtype):
    overrides = {"num_hidden_layers": args.layers, "max_position_embeddings": args.seq_len}
    config = build_model_config("codellm-1b", VocabSpec(args.vocab), overrides)
    config._attn_implementation = "sdpa"
    return build_model(config, seed=0).to(device=device, dtype=dtype), config


def make_optimizer(model, name: str):
    if name == "adamw_bnb_8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(model.parameters(), lr=4e-4, betas=(0.9, 0.95), weight_decay=0.1)
    return torch.optim.AdamW(model.parameters(), lr=4e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=None)


def training_throughput(args, device, optimizer_name: str) -> dict:
    """Tokens per second and MFU of bf16 training steps at the recipe's micro batch."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model, config = make_model(args, device, dtype)
    optimizer = make_optimizer(model, optimizer_name)
    ids = torch.randint(3, args.vocab, (args.micro_batch, args.seq_len), device=device)
    times = []
    for _ in range(args.steps + 1):  # the first step warms up kernels and allocator
        sync(device)
        start = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        times.append(time.perf_counter() - start)
    seconds = sorted(times[1:])[len(times[1:]) // 2]
    tokens_per_second = args.micro_batch * args.seq_len / seconds
    flops = ModelShape.from_config(config).training_flops_per_token(args.seq_len)
    result = {
        "optimizer": optimizer_name,
        "seconds_per_step": seconds,
        "tokens_per_second": tokens_per_second,
        "peak_gib": peak_gib(device),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if device.type == "cuda":
        result["mfu"] = flops * tokens_per_second / (args.peak_tflops * 1e12)
    return result


def scoring_costs(args, device) -> dict:
    """Seconds per candidate of exact, adam_update (batch 1) and the batched linear methods, from
    a model and AdamW state made by a few steps (fp32 master weights, as the Trainer's checkpoints)."""
    model, _ = make_model(args, device, torch.float32)
    optimizer = make_optimizer(model, "adamw_torch")
    ids = torch.randint(3, args.vocab, (2, args.seq_len), device=device)
    for _ in range(2):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    problems = [torch.randint(3, args.vocab, (args.problem_tokens,)).tolist() for _ in range(args.problems)]
    task = {"input_ids": problems, "labels": problems}
    validation = ValidationBatches({"task": _Rows(task)}, 16, 0, device)
    candidates = torch.randint(3, args.vocab, (args.candidates, args.seq_len), device=device)
    results = {}
    for method, batch in (("exact", 1), ("adam_update", 1), ("adam_precond_clipped", args.batch_size)):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        scorer = make_scorer(method, model, optimizer, validation, 1.0, batch)
        sync(device)
        start = time.perf_counter()
        if batch > 1:
            for i in range(0, len(candidates), batch):
                scorer.score_batch(candidates[i : i + batch])
        else:
            for row in candidates:
                scorer.score(row)
        sync(device)
        results[f"{method}_batch_{batch}"] = {
            "seconds_per_candidate": (time.perf_counter() - start) / len(candidates),
            "peak_gib": peak_gib(device),
        }
    results["validation_tokens"] = args.problems * args.problem_tokens
    return results


class _Rows(dict):
    """A column dict that ValidationBatches reads like a Dataset."""

    def __len__(self):
        return len(self["input_ids"])


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--layers", type=int, default=MODEL_PRESETS["codellm-1b"]["num_hidden_layers"])
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--seq_len", type=int, default=2048)
    parser.add_argument("--micro_batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--problem_tokens", type=int, default=256)
    parser.add_argument("--peak_tflops", type=float, default=989.0)
    parser.add_argument("--json", default="outputs/benchmarks/gpu.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    report = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "date": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__,
        "shape": {"layers": args.layers, "seq_len": args.seq_len, "micro_batch": args.micro_batch},
        "training": [training_throughput(args, device, name) for name in ("adamw_torch", "adamw_bnb_8bit")]
        if device.type == "cuda"
        else [training_throughput(args, device, "adamw_torch")],
        "scoring": scoring_costs(args, device),
    }
    print(json.dumps(report, indent=2))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
