"""Influence scoring costs and fidelity on the tiny recipe, printed as ratios from one run.

    .venv/bin/python benchmarks/bench_influence.py                       # after `make demo`
    .venv/bin/python benchmarks/bench_influence.py --candidates 500 --checkpoints outputs/tiny/pretrain/checkpoint-300 \
        outputs/tiny/pretrain/checkpoint-450

Measures, on the same candidates at each checkpoint:
1. the exact method: seconds per candidate / its floor (the probe's own training step plus one batched
   validation forward, timed inside the same run; goal <= 1.2), and the share of time spent restoring
   weights and optimizer state (goal <= 5%);
2. a MATES-style loop as the reference point: model and optimizer reloaded from disk per candidate,
   validation forward at batch 32 through the model's own loss (full logits);
3. each fast method against the exact scores: Spearman per task, top-20% Jaccard, and the speed-up
   per candidate, at batch 1, batched (--batch_size candidates per forward and backward) and with the
   top --top_layers decoder layers only (a partial backward) and on the first --windows tokens of each
   block, each timed after the scorer's one-time setup, next to the training cost per
   block (one batch-16 training step, timed here). Goals: the cheapest variant >= 50x faster than
   exact at Spearman >= 0.95 on both tasks; adam_update or its best batched stand-in >= 20x at >= 0.98;
4. InfluenceCallback with scoring switched off: training slowdown (goal <= 2%).
The numbers are also written to --json (docs/03 is written from it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from codesift.configs import InfluenceArguments
from codesift.data import load_candidates, load_eval_datasets
from codesift.influence import (
    FAST_METHODS,
    ValidationBatches,
    load_checkpoint_for_scoring,
    make_scorer,
    score_rows,
)
from codesift.stats import fidelity


def exact_cost(checkpoint, task_sets, candidates, eval_batch_size):
    model, optimizer, train_args, step = load_checkpoint_for_scoring(checkpoint)
    validation = ValidationBatches(task_sets, eval_batch_size, model.config.pad_token_id or 0)
    scorer = make_scorer("exact", model, optimizer, validation, train_args.max_grad_norm)
    start = time.perf_counter()
    rows = score_rows(scorer, list(task_sets), candidates, step, "exact", desc=f"exact, step {step}")
    total = time.perf_counter() - start
    return step, rows, total / len(candidates), scorer.seconds


def fast_cost(
    checkpoint, task_sets, candidates, eval_batch_size, method, batch_size=1, top_layers=None, window=None
):
    """(rows, seconds per candidate, setup seconds): the clock starts after the scorer's one-time
    setup (task gradients, Adam terms), as the exact scorer's does after its validation losses."""
    model, optimizer, train_args, step = load_checkpoint_for_scoring(checkpoint)
    validation = ValidationBatches(task_sets, eval_batch_size, model.config.pad_token_id or 0)
    start = time.perf_counter()
    scorer = make_scorer(
        method, model, optimizer, validation, train_args.max_grad_norm, batch_size, top_layers, window
    )
    setup = time.perf_counter() - start
    start = time.perf_counter()
    rows = score_rows(scorer, list(task_sets), candidates, step, method, desc=f"{method}, step {step}")
    return rows, (time.perf_counter() - start) / len(candidates), setup


def mates_style_cost(checkpoint, task_sets, candidates, n: int) -> float:
    """Per candidate: reload model + optimizer from disk, one step, validation at batch 32 through
    the model's own loss (the reference point, as MATES's probe runs)."""
    from codesift.influence.exact import training_step
    from codesift.training import CausalLMCollator

    collate = CausalLMCollator(pad_token_id=0)
    start = time.perf_counter()
    for ids in candidates.select(range(n))["input_ids"]:
        model, optimizer, train_args, _ = load_checkpoint_for_scoring(checkpoint)
        training_step(model, optimizer, torch.tensor(ids), train_args.max_grad_norm)
        model.eval()
        with torch.no_grad():
            for dataset in task_sets.values():
                rows = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in dataset]
                for i in range(0, len(rows), 32):
                    model(**collate(rows[i : i + 32])).loss.item()
    return (time.perf_counter() - start) / n


def training_cost_per_block(checkpoint, candidates, batch_size: int = 16, steps: int = 3) -> float:
    """Seconds per block of a training step (forward, backward, clip, AdamW) at the run's batch size."""
    from codesift.influence.exact import trainable_params

    model, optimizer, train_args, _ = load_checkpoint_for_scoring(checkpoint)
    ids = torch.tensor(candidates.select(range(batch_size))["input_ids"])
    times = []
    for _ in range(steps + 1):  # the first step warms up
        start = time.perf_counter()
        model.train()
        loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable_params(optimizer), train_args.max_grad_norm or 1e9)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) / batch_size


def variants(
    batch_size: int, top_layers: list[int], windows: list[int]
) -> list[tuple[str, int, int | None, int | None]]:
    """(method, batch size, top layers, window): every method at batch 1 and batched, partial
    backwards, sub-windows of each block, and the forward-only estimate."""
    found = [(m, 1, None, None) for m in FAST_METHODS] + [(m, batch_size, None, None) for m in FAST_METHODS]
    for top in top_layers:
        found += [(m, batch_size, top, None) for m in ("grad_dot", "adam_precond_clipped", "adam_update")]
    for window in windows:
        found += [(m, batch_size, None, window) for m in ("adam_precond_clipped", "adam_update")]
    return found + [("adam_precond_forward", batch_size, None, None)]  # forward passes only


def goals(results: list[dict]) -> dict:
    """The two goals on the measured variants: the cheapest at Spearman >= 0.95 (goal >= 50x) and
    the fastest adam_update or linear stand-in at >= 0.98 (goal >= 20x)."""

    def fastest(at_least):
        ok = [r for r in results if min(r["spearman"].values()) >= at_least]
        return max(ok, key=lambda r: r["speedup"]) if ok else None

    cheapest, best = fastest(0.95), fastest(0.98)
    return {
        "cheapest_at_0.95": cheapest,
        "cheapest_goal_met": bool(cheapest and cheapest["speedup"] >= 50),
        "best_at_0.98": best,
        "best_goal_met": bool(best and best["speedup"] >= 20),
    }


def callback_overhead(corpus: Path, steps: int, repeats: int) -> float:
    """Wall time of a tiny run with InfluenceCallback(enabled=False) over one without it."""
    import tempfile

    from codesift.configs import load_stage_config
    from codesift.influence.callback import InfluenceCallback
    from codesift.training import run_pretraining

    times = {"without": [], "with": []}
    for _ in range(repeats):
        for label in ("without", "with"):
            with tempfile.TemporaryDirectory() as out:
                configs = load_stage_config(
                    "pretrain",
                    "tiny",
                    max_steps=steps,
                    output_dir=out,
                    eval_strategy="no",
                    save_strategy="no",
                    disable_tqdm=True,
                    logging_steps=1000,
                    callbacks=[],
                )
                extra = [InfluenceCallback(steps=[10**9], enabled=False)] if label == "with" else []
                start = time.perf_counter()
                run_pretraining(*configs, extra_callbacks=extra)
                times[label].append(time.perf_counter() - start)
    return statistics.median(times["with"]) / statistics.median(times["without"])


def machine() -> str:
    import os
    import platform

    return (
        f"{os.cpu_count()} CPU cores ({platform.machine()}, {platform.system()}), torch {torch.__version__}"
    )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = InfluenceArguments()
    parser.add_argument(
        "--checkpoints",
        nargs="*",
        default=["outputs/tiny/pretrain/checkpoint-300", "outputs/tiny/pretrain/checkpoint-450"],
    )
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--tasks", nargs="+", default=["humaneval", "mbpp"])
    parser.add_argument("--part", default="select")
    parser.add_argument("--mates_candidates", type=int, default=10)
    parser.add_argument("--callback_steps", type=int, default=40)
    parser.add_argument("--eval_batch_size", type=int, default=defaults.eval_batch_size)
    parser.add_argument("--batch_size", type=int, default=16, help="candidates per batched forward/backward")
    parser.add_argument("--top_layers", type=int, nargs="*", default=[1, 2])
    parser.add_argument(
        "--windows", type=int, nargs="*", default=[32, 64, 128], help="sub-windows (tokens) of each block"
    )
    parser.add_argument("--skip_callback", action="store_true")
    parser.add_argument("--json", default="outputs/tiny/benchmarks/influence.json")
    args = parser.parse_args()

    candidates = load_candidates(defaults.candidates, defaults.candidates_split, args.candidates)
    task_sets = load_eval_datasets(defaults.validation_sets, args.tasks, args.part)
    print(
        f"{len(candidates)} candidates, tasks {args.tasks} ({args.part} halves), threads {torch.get_num_threads()}"
    )
    from datasets import Dataset

    for checkpoint in args.checkpoints:
        step, exact_rows, exact_s, parts = exact_cost(checkpoint, task_sets, candidates, args.eval_batch_size)
        floor = (parts["step"] + parts["validation"]) / len(candidates)
        restore = parts["restore"] / (exact_s * len(candidates))
        print(f"\n== step {step}")
        print(
            f"exact: {exact_s:.3f} s/candidate; floor (its step + one validation forward) {floor:.3f} s; "
            f"ratio {exact_s / floor:.3f} (goal <= 1.2); restore share {restore:.2%} (goal <= 5%)"
        )
        mates_s = mates_style_cost(checkpoint, task_sets, candidates, args.mates_candidates)
        print(
            f"MATES-style loop (reload from disk, batch-32 full-logit validation): {mates_s:.3f} s/candidate; "
            f"exact here is {mates_s / exact_s:.2f}x faster"
        )
        exact = Dataset.from_list(exact_rows)
        train_s = training_cost_per_block(checkpoint, candidates)
        print(f"training cost: {train_s:.3f} s per block (one batch-16 step: forward, backward, clip, AdamW)")
        results = []
        for method, batch_size, top, window in variants(args.batch_size, args.top_layers, args.windows):
            rows, fast_s, setup_s = fast_cost(
                checkpoint, task_sets, candidates, args.eval_batch_size, method, batch_size, top, window
            )
            quality = fidelity(exact, Dataset.from_list(rows))
            name = (
                f"{method} batch {batch_size}"
                + (f" top {top}" if top else "")
                + (f" window {window}" if window else "")
            )
            results.append(
                {
                    "variant": name,
                    "seconds_per_candidate": fast_s,
                    "setup_seconds": setup_s,
                    "speedup": exact_s / fast_s,
                    "x_training_cost": fast_s / train_s,
                    "spearman": {t: q["spearman"] for t, q in quality.items()},
                    "top20_jaccard": {t: q["top20_jaccard"] for t, q in quality.items()},
                }
            )
            described = ", ".join(
                f"{t}: Spearman {q['spearman']:.3f}, top-20% Jaccard {q['top20_jaccard']:.2f}"
                for t, q in quality.items()
            )
            print(
                f"{name:34s} {fast_s:.3f} s/candidate ({fast_s / train_s:.2f}x a trained block), "
                f"speed-up {exact_s / fast_s:5.1f}x; {described}"
            )
        met = goals(results)
        for key, goal in (("cheapest_at_0.95", 50), ("best_at_0.98", 20)):
            r = met[key]
            print(
                f"goal {key}: "
                + (f"{r['variant']} {r['speedup']:.1f}x (goal >= {goal}x)" if r else "no variant reaches it")
            )
        report = {
            "step": step,
            "candidates": len(candidates),
            "threads": torch.get_num_threads(),
            "exact_seconds_per_candidate": exact_s,
            "exact_floor_ratio": exact_s / floor,
            "exact_restore_share": restore,
            "mates_style_seconds_per_candidate": mates_s,
            "date": time.strftime("%Y-%m-%d"),
            "machine": machine(),
            "training_seconds_per_block": train_s,
            "variants": results,
            **{k: (v["variant"] if isinstance(v, dict) else v) for k, v in met.items()},
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    if args.skip_callback:
        return
    ratio = callback_overhead(Path(defaults.candidates).parent, args.callback_steps, repeats=2)
    print(f"\nInfluenceCallback, scoring off: training time ratio {ratio:.3f} (goal <= 1.02)")


if __name__ == "__main__":
    main()
