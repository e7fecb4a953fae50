"""What a run costs before it runs: parameters, memory per GPU, FLOPs and GPU-hours per stage.

FLOPs are counted as in Kaplan et al. (2020): a forward pass costs 2 FLOPs per parameter per token
plus the attention scores, 2 * layers * context * hidden; a training step three forwards. Each
scoring method is priced by the passes it takes per candidate block (docs/costs.md checks the
ratios against the times measured by benchmarks/bench_influence.py). GPU-hours divide FLOPs by the
GPU's peak times an MFU, both arguments: the MFU the kit reaches on a GPU is not measured yet, so
the default 0.4 is a target, assumed.

Memory per GPU follows the usual mixed-precision accounting (Rajbhandari et al. 2020, ZeRO):
fp32 master weights 4 bytes, gradients 4, AdamW moments 8 (2 with 8-bit AdamW), bf16 compute copy
2 bytes per parameter of the layers being gathered; FSDP/ZeRO-3 shards the states over GPUs. The
exact probe keeps a full snapshot of weights and moments (12 bytes per parameter) beside the model.
Activations follow Korthikanti et al. (2022) with a fused attention kernel (no T^2 term):
34 * hidden bytes per token per layer, or 2 * hidden with activation checkpointing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

GIB = 1024**3
H100_BF16_PEAK_FLOPS = 989e12  # dense bf16, SXM (NVIDIA's datasheet)
# dense fp32 without tensor cores, SXM: what stage 03 and the predictor's forward run at, since they
# compute in float32 and torch leaves TF32 off for matmuls by default
H100_FP32_PEAK_FLOPS = 67e12
H100_MEMORY_GIB = 80


@dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    context: int
    tied_embeddings: bool = False

    @classmethod
    def from_config(cls, config) -> ModelShape:
        return cls(
            layers=config.num_hidden_layers,
            hidden=config.hidden_size,
            heads=config.num_attention_heads,
            kv_heads=config.num_key_value_heads,
            ffn=config.intermediate_size,
            vocab=config.vocab_size,
            context=config.max_position_embeddings,
            tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        )

    @property
    def layer_params(self) -> int:
        head_dim = self.hidden // self.heads
        attention = 2 * self.hidden * self.hidden + 2 * self.hidden * self.kv_heads * head_dim
        return attention + 3 * self.hidden * self.ffn + 2 * self.hidden  # q, o, k, v; MLP; two norms

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def params(self) -> int:
        head = 0 if self.tied_embeddings else self.embedding_params
        return self.embedding_params + self.layers * self.layer_params + self.hidden + head

    def forward_flops_per_token(self, context: int | None = None) -> float:
        """2 per weight a token meets (the embedding lookup is free, the output layer is not) plus
        the attention scores over the context."""
        context = context or self.context
        matmul_params = self.layers * self.layer_params + self.embedding_params  # the output layer
        return 2.0 * matmul_params + 2.0 * self.layers * context * self.hidden

    def training_flops_per_token(self, context: int | None = None) -> float:
        return 3.0 * self.forward_flops_per_token(context)


# Passes per candidate block, in forwards of the block (a training step is 3 forwards).
def scoring_flops_per_block(
    shape: ModelShape,
    method: str,
    block_tokens: int,
    validation_tokens: int,
    top_layers: int | None = None,
    tasks: int = 1,
) -> float:
    """FLOPs to score one candidate block.

    exact: one training step on the block plus one forward over every validation token;
    fast methods (any batch size): one forward and one backward of the block (the per-example
    gradients formed in batched scoring are the same multiply-adds as the weight gradients);
    top_layers=k: the forward, and a backward through the output layer and k layers only;
    adam_precond_forward: two forwards per task (central differences), no backward.
    The once-per-checkpoint task gradients are left out (one training step over the validation
    tokens, shared by every candidate).
    """
    forward = shape.forward_flops_per_token(block_tokens) * block_tokens
    if method == "adam_precond_forward":
        return 2 * tasks * forward
    if method == "exact":
        return 3 * forward + shape.forward_flops_per_token(block_tokens) * validation_tokens
    if top_layers is None:
        return 3 * forward
    layers = min(top_layers, shape.layers)
    top = (layers * shape.layer_params + shape.embedding_params) / (
        shape.layers * shape.layer_params + shape.embedding_params
    )
    return forward + 2 * forward * top


def gpu_hours(flops: float, gpus_flops: float = H100_BF16_PEAK_FLOPS, mfu: float = 0.4) -> float:
    return flops / (gpus_flops * mfu) / 3600


def selection_bill(
    shape: ModelShape,
    pretrain_tokens: float,
    pool_tokens: float,
    block_tokens: int,
    validation_tokens: int,
    label_fraction: float = 0.01,
    predictor_flops_per_token: float = 0.0,
    gpus_flops: float = H100_BF16_PEAK_FLOPS,
    mfu: float = 0.4,
    scoring_gpus_flops: float = H100_FP32_PEAK_FLOPS,
) -> dict[str, float]:
    """GPU-hours: pretraining on `pretrain_tokens` (bf16 peak), and scoring a pool of `pool_tokens`
    with each method, whole or (MATES's loop) on `label_fraction` of it with the rest predicted, at
    `scoring_gpus_flops` (the kit scores and predicts in float32)."""
    blocks = pool_tokens / block_tokens
    bill = {
        "pretrain": gpu_hours(shape.training_flops_per_token(block_tokens) * pretrain_tokens, gpus_flops, mfu)
    }
    for method in ("exact", "adam_update"):
        per_block = scoring_flops_per_block(shape, method, block_tokens, validation_tokens)
        bill[f"score_pool_{method}"] = gpu_hours(per_block * blocks, scoring_gpus_flops, mfu)
        bill[f"label_{method}_and_predict"] = gpu_hours(
            per_block * blocks * label_fraction + predictor_flops_per_token * pool_tokens,
            scoring_gpus_flops,
            mfu,
        )
    return bill


def memory_plan(
    shape: ModelShape,
    num_gpus: int,
    micro_batch: int,
    seq_len: int,
    gradient_accumulation: int = 1,
    sharded: bool = True,
    optimizer: str = "adamw",
    activation_checkpointing: bool = False,
) -> dict[str, float]:
    """GiB per GPU of each part of a bf16 mixed-precision run, and the tokens per optimizer step."""
    params = shape.params
    shards = num_gpus if sharded else 1
    moments = 2 if optimizer == "adamw_8bit" else 8
    activation_bytes = (2 if activation_checkpointing else 34) * shape.hidden
    plan = {
        "weights_fp32": 4 * params / shards / GIB,
        "gradients_fp32": 4 * params / shards / GIB,
        "adamw_moments": moments * params / shards / GIB,
        # FSDP gathers one layer's bf16 weights at a time; unsharded, the whole bf16 copy
        "weights_bf16_gathered": 2 * (shape.layer_params if sharded else params) / GIB,
        "activations": activation_bytes * micro_batch * seq_len * shape.layers / GIB,
        "logits_fp32": 4 * micro_batch * seq_len * shape.vocab / GIB,
    }
    plan["total_training"] = sum(plan.values())
    plan["probe_snapshot_fp32"] = 12 * params / GIB  # the exact scorer: weights + moments, unsharded
    plan["tokens_per_step"] = float(micro_batch * seq_len * gradient_accumulation * num_gpus)
    return plan


def scored_params(shape: ModelShape, top_layers: int | None = None) -> int:
    """The parameters a fast method scores: all, or the top layers, the final norm and the output layer."""
    if top_layers is None:
        return shape.params
    return min(top_layers, shape.layers) * shape.layer_params + shape.hidden + shape.embedding_params


def scoring_memory_plan(
    shape: ModelShape, method: str, tasks: int, batch_size: int = 1, block_tokens: int | None = None,
    top_layers: int | None = None,
) -> dict[str, float]:  # fmt: skip
    """GiB one stage-03 process holds, by part. Scoring runs in float32 (the checkpoint's master
    weights, as the optimizer stepped them), unsharded: every process holds the whole model.

    weights 4 and AdamW moments 8 bytes per parameter (the loaded checkpoint); gradients 4 per
    scored parameter; activations twice training's bf16 count (float32), for a batch of blocks;
    exact: the probe's snapshot of weights and moments (12 per parameter); fast methods: the
    (tasks x scored parameters) task-direction matrix, built one task gradient at a time, plus the
    method's parameter-sized terms (Adam's preconditioner, or adam_update's momentum, variance and
    decay) and, one candidate at a time, its flat gradient and modelled step; batched: the
    per-example gradients of the largest layer for the batch instead (adam_update, not linear in
    the gradient, keeps every layer's: batch x scored parameters); a partial backward
    (`top_layers`) keeps the activations of those layers only; adam_precond_forward: no backward,
    a saved copy of the weights instead of gradients."""
    block_tokens = block_tokens or shape.context
    scored = shape.params if method == "exact" else scored_params(shape, top_layers)
    tokens = (1 if method == "exact" else batch_size) * block_tokens
    # a partial backward keeps activations only of the layers it goes through
    backward_layers = (
        shape.layers if method == "exact" or top_layers is None else min(top_layers, shape.layers)
    )
    plan = {
        "weights_fp32": 4 * shape.params,
        "adamw_moments": 8 * shape.params,
        "gradients_fp32": 0 if method == "adam_precond_forward" else 4 * scored,
        "activations": 0
        if method == "adam_precond_forward"
        else 68 * shape.hidden * backward_layers * tokens,
        "logits_fp32": 4 * tokens * shape.vocab,
    }
    if method == "exact":
        plan["probe_snapshot_fp32"] = 12 * shape.params
    else:
        plan["task_directions_fp32"] = 4 * tasks * scored
        terms = {"grad_dot": 0, "adam_update": 3, "adam_precond_forward": 1}.get(method, 1)
        plan["method_terms_fp32"] = 4 * terms * scored
        if batch_size == 1:  # a candidate's flat gradient and modelled step
            plan["candidate_vectors_fp32"] = 4 * (3 if method == "adam_update" else 2) * scored
        elif method == "adam_update":  # batched: not linear in g, so every layer's are kept
            plan["per_example_gradients"] = 4 * batch_size * scored
        elif method != "adam_precond_forward":  # batched linear methods: one layer at a time
            largest = max(shape.hidden * shape.ffn, shape.embedding_params)
            plan["per_example_gradients"] = 4 * batch_size * largest
    plan = {key: value / GIB for key, value in plan.items()}
    plan["total"] = sum(plan.values())
    return plan


def format_scoring_plan(shape: ModelShape, plans: dict[str, dict[str, float]], tasks: int) -> str:
    """Stage 03's plan as a table: one column per method."""
    methods = list(plans)
    keys = list(dict.fromkeys(key for plan in plans.values() for key in plan if key != "total")) + ["total"]
    lines = [
        f"parameters: {shape.params / 1e9:.3f} B ({shape.layers} layers x {shape.hidden}, vocabulary {shape.vocab}); "
        f"{tasks} task(s)",
        "GiB per process        " + "".join(f"{m:>22s}" for m in methods),
    ]
    for key in keys:
        lines.append(f"{key:22s} " + "".join(f"{plans[m].get(key, 0.0):>22.2f}" for m in methods))
    return "\n".join(lines)


def format_plan(shape: ModelShape, plans: dict[int, dict[str, float]]) -> str:
    """A printable table: one column per GPU count."""
    counts = sorted(plans)
    lines = [
        f"parameters: {shape.params / 1e9:.3f} B ({shape.layers} layers x {shape.hidden}, vocabulary {shape.vocab})",
        f"training FLOPs per token: {shape.training_flops_per_token():.3e}",
        "GiB per GPU            " + "".join(f"{n:>10d} GPU" for n in counts),
    ]
    for key in plans[counts[0]]:
        if key == "tokens_per_step":
            lines.append(f"{'tokens per step':22s} " + "".join(f"{plans[n][key]:>14,.0f}" for n in counts))
        else:
            lines.append(f"{key:22s} " + "".join(f"{plans[n][key]:>14.2f}" for n in counts))
    return "\n".join(lines)


# The paper's setting, as the kit's 1B recipe assumes it (recipes/codellm-1b): the shape of
# TinyLlama-1.1B with StarCoder's vocabulary, 100B tokens of pretraining and a 100B-token pool.
PAPER_SCALE = {
    "vocab": 49152,
    "pretrain_tokens": 100e9,
    "pool_tokens": 100e9,
    "block_tokens": 2048,
    "validation_tokens": 60_000,  # six select halves, assumed (not tokenized offline)
    "label_fraction": 0.05,
}


def paper_scale_bill(label_fraction: float | None = None, mfu: float = 0.4) -> dict[str, float]:
    """H100-hours of the paper's 1B x 100B setting, with the predictor as the kit's n-gram + hidden
    state ridge (one forward of the 1B checkpoint per predicted token)."""
    from .modeling import VocabSpec, build_model_config

    shape = ModelShape.from_config(build_model_config("codellm-1b", VocabSpec(PAPER_SCALE["vocab"])))
    return selection_bill(
        shape,
        PAPER_SCALE["pretrain_tokens"],
        PAPER_SCALE["pool_tokens"],
        PAPER_SCALE["block_tokens"],
        PAPER_SCALE["validation_tokens"],
        label_fraction=PAPER_SCALE["label_fraction"] if label_fraction is None else label_fraction,
        predictor_flops_per_token=shape.forward_flops_per_token(PAPER_SCALE["block_tokens"]),
        mfu=mfu,
    )


def recipe_bill(recipe_dir, gpus: int = 8, validation_tokens: int = 60_000, mfu: float = 0.4) -> list[dict]:
    """H100-hours of the 1B recipe's own job, read from its YAMLs, each part in the precision the
    code runs it: training in bf16 (the recipe's `bf16: true`), stage 03's scores and stage 05's
    forward over the pool in float32. `gpus` and the validation tokens are assumed (the recipe's
    comment says 8 GPUs; the six select halves are not tokenized offline)."""
    import yaml

    from .modeling import VocabSpec, build_model_config

    def read(stage):
        return yaml.safe_load((Path(recipe_dir) / f"{stage}.yaml").read_text())

    pretrain, corpus, influence = read("pretrain"), read("corpus"), read("influence")
    experiment, selected = read("experiment"), read("pretrain_selected")
    shape = ModelShape.from_config(
        build_model_config(pretrain["model_preset"], VocabSpec(PAPER_SCALE["vocab"]))
    )
    block = corpus["seq_len"]
    blocks_per_step = pretrain["per_device_train_batch_size"] * pretrain["gradient_accumulation_steps"] * gpus
    train_per_block = shape.training_flops_per_token(block) * block
    warmup_steps = int(str(influence["checkpoint"][0]).rsplit("-", 1)[1])
    method = influence["methods"][0]
    parts = [
        ("pretrain the warm-up to the scored checkpoint", f"{warmup_steps:,} steps x {blocks_per_step} blocks",
         warmup_steps * blocks_per_step * train_per_block, H100_BF16_PEAK_FLOPS, "bf16"),
        (f"stage 03: label {influence['max_candidates']:,} candidates ({method})", f"{influence['max_candidates']:,} blocks",
         influence["max_candidates"] * scoring_flops_per_block(shape, method, block, validation_tokens),
         H100_FP32_PEAK_FLOPS, "fp32"),
        ("stage 05: predict the pool (one forward of the checkpoint)", f"{corpus['num_candidates']:,} blocks",
         corpus["num_candidates"] * shape.forward_flops_per_token(block) * block, H100_FP32_PEAK_FLOPS, "fp32"),
        (f"stage 06: {len(experiment['strategies'])} arms x {len(experiment['seeds'])} seed(s) of continued pretraining",
         f"{experiment['continue_steps']} steps x {blocks_per_step} blocks each",
         len(experiment["strategies"]) * len(experiment["seeds"]) * experiment["continue_steps"] * blocks_per_step * train_per_block,
         H100_BF16_PEAK_FLOPS, "bf16"),
        (f"pretrain_selected: {len(selected['arms'])} arms x {len(selected['seeds'])} seed(s) from scratch",
         f"{selected['steps']:,} steps x {blocks_per_step} blocks each",
         len(selected["arms"]) * len(selected["seeds"]) * selected["steps"] * blocks_per_step * train_per_block,
         H100_BF16_PEAK_FLOPS, "bf16"),
    ]  # fmt: skip
    return [
        {"work": work, "size": size, "precision": precision, "hours": gpu_hours(flops, peak, mfu)}
        for work, size, flops, peak, precision in parts
    ]


def recipe_bill_markdown(rows: list[dict]) -> str:
    lines = ["| work | size | precision | H100-hours at 40% MFU |", "|---|---|---|---|"]
    lines += [f"| {r['work']} | {r['size']} | {r['precision']} | {r['hours']:,.1f} |" for r in rows]
    lines.append(f"| total | | | {sum(r['hours'] for r in rows):,.1f} |")
    return "\n".join(lines)


def bill_markdown(bill: dict[str, float]) -> str:
    """The bill as a markdown table (docs/costs.md carries this output)."""
    labels = {
        "pretrain": "pretrain on 100B tokens",
        "score_pool_exact": "score the whole 100B-token pool, exact",
        "score_pool_adam_update": "score the whole pool, fast (one forward + backward per block)",
        "label_exact_and_predict": "exact labels on 5%, the rest predicted",
        "label_adam_update_and_predict": "fast labels on 5%, the rest predicted",
    }
    rows = [f"| {labels[k]} | {v:,.0f} | {v / bill['pretrain']:.2f} |" for k, v in bill.items()]
    return "\n".join(["| work | H100-hours at 40% MFU | x pretraining |", "|---|---|---|", *rows])


if __name__ == "__main__":
    print(bill_markdown(paper_scale_bill()))
    print()
    print(recipe_bill_markdown(recipe_bill(Path(__file__).resolve().parents[2] / "recipes" / "codellm-1b")))
