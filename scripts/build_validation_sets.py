"""Stage 01: turn downstream coding tasks into validation sets (one split per task and part).

    python scripts/build_validation_sets.py --config recipes/tiny/validation_sets.yaml
    python scripts/build_validation_sets.py --config recipes/tiny/validation_sets.yaml \
        --tasks humaneval mbpp --select_fraction 0.5 --output_dir outputs/my_sets
"""

import logging

from codesift.cli import report_errors, setup_logging
from codesift.configs import ValidationSetsArguments, parse_args
from codesift.prepare.tasks import run_validation_sets_stage

logger = logging.getLogger(__name__)


def main(args: ValidationSetsArguments) -> None:
    result = run_validation_sets_stage(args)
    for name, info in result.metadata["tasks"].items():
        logger.info(
            "%-20s %4d problems (select %d, report %d)", name, info["sampled"], info["select"], info["report"]
        )
    logger.info("validation sets written to %s", args.output_dir)


if __name__ == "__main__":
    with report_errors():
        args = parse_args(ValidationSetsArguments)
        setup_logging()
        main(args)
