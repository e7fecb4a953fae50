"""The findings report: the paper's findings as numbers with intervals, figures and captions.

    python scripts/compute_influence.py --config recipes/tiny/influence_stages.yaml   # scores at steps 100-300, all tasks
    python scripts/analyze.py --config recipes/tiny/analyze.yaml                      # (both: make report)

Writes <output_dir>.md (outputs/tiny/report.md: the findings table: finding | paper | tiny run | agrees?, then each
section with its figures), and report.json and figures/ under <output_dir>.
"""

import logging

from codesift.analysis import run_analysis_stage
from codesift.cli import report_errors, setup_logging
from codesift.configs import AnalysisArguments, parse_args

logger = logging.getLogger(__name__)


def main(args: AnalysisArguments) -> None:
    path = run_analysis_stage(args)
    logger.info("report written: %s", path)


if __name__ == "__main__":
    with report_errors():
        args = parse_args(AnalysisArguments)
        setup_logging()
        main(args)
