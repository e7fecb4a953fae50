"""Stages 04 + 06: select by every arm, continue pretraining each from one checkpoint, evaluate, table.

    python scripts/run_experiment.py --config recipes/tiny/experiment.yaml                 # one seed (make demo)
    python scripts/run_experiment.py --config recipes/tiny/experiment.yaml --seeds 42 43 44  # the table (make table)
    accelerate launch --num_processes 8 scripts/run_experiment.py --config recipes/codellm-1b/experiment.yaml

Finished cells (outputs/<recipe>/experiment/seed-<s>/<arm>/metrics.json) are kept, so a stopped run
resumes. The table is written to <output_dir>/results.md, results.png and results.json.
"""

import logging

from codesift.cli import report_errors, setup_logging
from codesift.configs import ExperimentArguments, parse_args
from codesift.experiment import run_experiment

logger = logging.getLogger(__name__)


def main(args: ExperimentArguments) -> None:
    paths = run_experiment(args)
    if paths is None:  # another process of a multi-process launch: the main one writes and prints
        return
    print(open(paths["markdown"]).read())
    logger.info("results table: %s (plot: %s)", paths["markdown"], paths["png"])


if __name__ == "__main__":
    with report_errors():
        args = parse_args(ExperimentArguments)
        setup_logging()
        main(args)
