"""Tokens per second of the HF Trainer vs a plain PyTorch loop: same model, data, batch, optimizer.

    .venv/bin/python benchmarks/bench_pretrain.py                 # tiny preset on CPU
    .venv/bin/python benchmarks/bench_pretrain.py --steps 40 --repeats 3

Both loops do the same work per step: forward, loss, backward, clip to 1.0, AdamW step, cosine
schedule step, zero grad. They run alternately in one process (Trainer, loop, Trainer, loop, ...) so
that machine noise hits both; the first `--warmup` steps of every run are not timed. Prints each
run's tokens/s and the ratio Trainer / loop of the medians (goal: at least 0.9).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from datasets import Dataset
from transformers import TrainerCallback, TrainingArguments, get_cosine_schedule_with_warmup

from codesift.modeling import MODEL_PRESETS, VocabSpec, build_model, build_model_config
from codesift.training import CausalLMCollator, PretrainTrainer


def make_model(preset: str, vocab: int, seed: int):
    config = build_model_config(preset, VocabSpec(vocab))
    return build_model(config, seed)


def make_blocks(n_blocks: int, seq_len: int, vocab: int, seed: int) -> Dataset:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (n_blocks, seq_len), generator=generator)
    return Dataset.from_dict({"input_ids": ids.tolist()})


class StepClock(TrainerCallback):
    def __init__(self):
        self.ends = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


def tokens_per_second(ends: list[float], warmup: int, tokens_per_step: int) -> float:
    timed = ends[warmup:]
    return tokens_per_step * (len(timed) - 1) / (timed[-1] - timed[0])


def run_trainer(args, blocks, tokens_per_step) -> float:
    model = make_model(args.preset, args.vocab, args.seed)
    clock = StepClock()
    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(
            output_dir=out,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=1e-3,
            lr_scheduler_type="cosine",
            warmup_steps=2,
            weight_decay=0.1,
            adam_beta1=0.9,
            adam_beta2=0.95,
            max_grad_norm=1.0,
            optim="adamw_torch",
            use_cpu=args.device == "cpu",
            bf16=args.bf16,
            logging_steps=10_000,
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            seed=args.seed,
        )
        trainer = PretrainTrainer(
            model=model,
            args=training_args,
            train_dataset=blocks,
            data_collator=CausalLMCollator(pad_token_id=0),
            callbacks=[clock],
        )
        trainer.train()
    return tokens_per_second(clock.ends, args.warmup, tokens_per_step)


def run_plain_loop(args, blocks, tokens_per_step) -> float:
    device = torch.device(args.device)
    model = make_model(args.preset, args.vocab, args.seed).to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-3,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    scheduler = get_cosine_schedule_with_warmup(optimizer, 2, args.steps)
    loader = torch.utils.data.DataLoader(
        blocks.with_format("torch"),
        batch_size=args.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(args.seed),
        drop_last=True,
    )
    ends, batches = [], iter(loader)
    model.train()
    for _ in range(args.steps):
        ids = next(batches)["input_ids"].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        ends.append(time.perf_counter())
    return tokens_per_second(ends, args.warmup, tokens_per_step)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny", choices=list(MODEL_PRESETS))
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    seq_len = MODEL_PRESETS[args.preset]["max_position_embeddings"]
    tokens_per_step = args.batch_size * seq_len
    blocks = make_blocks(args.batch_size * (args.steps + 1), seq_len, args.vocab, args.seed)
    print(
        f"{args.preset} preset, batch {args.batch_size} x {seq_len} tokens, {args.steps} steps "
        f"({args.warmup} untimed), device {args.device}, threads {torch.get_num_threads()}, bf16 {args.bf16}"
    )
    trainer_rates, loop_rates = [], []
    for repeat in range(args.repeats):
        trainer_rates.append(run_trainer(args, blocks, tokens_per_step))
        loop_rates.append(run_plain_loop(args, blocks, tokens_per_step))
        print(
            f"repeat {repeat}: Trainer {trainer_rates[-1]:,.0f} tokens/s, plain loop {loop_rates[-1]:,.0f} tokens/s"
        )
    ratio = statistics.median(trainer_rates) / statistics.median(loop_rates)
    print(
        f"median: Trainer {statistics.median(trainer_rates):,.0f} tokens/s, "
        f"plain loop {statistics.median(loop_rates):,.0f} tokens/s, ratio Trainer/loop = {ratio:.3f} (goal >= 0.9)"
    )


if __name__ == "__main__":
    main()
