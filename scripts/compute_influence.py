"""Stage 03: score candidate blocks at one or more checkpoints (exact and fast methods).

    python scripts/compute_influence.py --config recipes/tiny/influence.yaml
    python scripts/compute_influence.py --config recipes/tiny/influence.yaml \
        --checkpoint outputs/tiny/pretrain/checkpoint-300 --methods exact adam_update --max_candidates 200
    accelerate launch --num_processes 4 scripts/compute_influence.py --config recipes/tiny/influence.yaml
    python scripts/compute_influence.py --config recipes/codellm-1b/influence.yaml --dry_run true \
        --dry_run_model_preset codellm-1b --dry_run_vocab_size 49152     # memory per process, per method

A killed run resumes where it stopped: finished shards are kept and only the rest is scored.
"""

import logging

from codesift.cli import report_errors, setup_logging
from codesift.configs import InfluenceArguments, parse_args
from codesift.influence import run_influence_stage
from codesift.influence.scoring import dry_run_plan, write_influence_plots

logger = logging.getLogger(__name__)


def main(args: InfluenceArguments) -> None:
    if args.dry_run:  # the memory plan of the recipe; nothing is loaded or scored
        print(dry_run_plan(args))
        return
    timings = run_influence_stage(args)
    for (step, method), seconds in timings.items():
        logger.info("step %d, %s: %.3f s per candidate", step, method, seconds)
    logger.info("scores written under %s/step-<step>/<method>", args.output_dir)
    plots = write_influence_plots(args.output_dir)
    logger.info("%d plots in %s/plots", len(plots), args.output_dir)


if __name__ == "__main__":
    with report_errors():
        args = parse_args(InfluenceArguments)
        setup_logging()
        main(args)
