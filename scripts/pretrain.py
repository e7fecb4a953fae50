"""Stage 02: pretrain a Llama-style code model with the HF Trainer (or continue from a checkpoint).

    python scripts/pretrain.py --config recipes/tiny/pretrain.yaml
    python scripts/pretrain.py --config recipes/tiny/pretrain.yaml --max_steps 20 --output_dir outputs/try
    accelerate launch --config_file recipes/accelerate_configs/ddp.yaml scripts/pretrain.py \
        --config recipes/codellm-1b/pretrain.yaml
    # the 1B recipe's memory plan and tokens per step on 1, 8 and 64 GPUs, without a GPU or the network
    python scripts/pretrain.py --config recipes/codellm-1b/pretrain.yaml --dry_run true --dry_run_vocab_size 49152
    # continued pretraining: a checkpoint's weights, AdamW moments and schedule, other blocks, 100 more steps
    python scripts/pretrain.py --config recipes/tiny/pretrain.yaml \
        --continue_from outputs/tiny/pretrain/checkpoint-300 --blocks outputs/tiny/filtered/blocks \
        --max_steps 100 --output_dir outputs/tiny/continued
"""

import logging
import sys

from transformers import TrainingArguments

from codesift.cli import report_errors, setup_logging
from codesift.configs import ModelArguments, PretrainArguments, parse_args
from codesift.training import dry_run_plan, run_pretraining

logger = logging.getLogger(__name__)


def main(
    model_args: ModelArguments, pretrain_args: PretrainArguments, training_args: TrainingArguments
) -> None:
    if pretrain_args.dry_run:  # the plan of the recipe, from its YAML alone
        print(dry_run_plan(model_args, pretrain_args, training_args))
        return
    # seed, start (fresh / resume / continue / already finished), data, tokenizer, model, trainer,
    # train, save, model card: codesift.training.run_pretraining, section by section
    metrics = run_pretraining(model_args, pretrain_args, training_args)
    losses = {k: round(v, 4) for k, v in metrics.items() if k.startswith("eval_") and k.endswith("_loss")}
    logger.info("validation losses: %s", losses or "not evaluated")
    logger.info("model, checkpoints, card and plots/training_curves.png in %s", training_args.output_dir)


def parse_command_line(args: list[str] | None = None):
    """The arguments. A dry run plans a GPU recipe on any machine, so TrainingArguments is told the
    CPU is meant (it refuses bf16 without a GPU, and the plan reads only sizes from it). Whether it
    is a dry run is read from the parsed arguments (`--dry_run`, `--dry_run true`, or the YAML)."""
    args = list(sys.argv[1:] if args is None else args)
    planned = parse_args(
        ModelArguments, PretrainArguments, TrainingArguments, args=[*args, "--use_cpu", "true"]
    )
    if planned[1].dry_run:
        return planned
    return parse_args(ModelArguments, PretrainArguments, TrainingArguments, args=args)


if __name__ == "__main__":
    with report_errors():
        model_args, pretrain_args, training_args = parse_command_line()
        setup_logging(training_args)
        main(model_args, pretrain_args, training_args)
