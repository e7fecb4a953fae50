"""Stage 06, the paper's design: pretrain fresh models ON selected data, against random and unfiltered.

    python scripts/pretrain_selected.py --config recipes/tiny/pretrain_selected.yaml          # make pretrain_selected
    python scripts/pretrain_selected.py --config recipes/tiny/pretrain_selected.yaml --arms random mates --seeds 42

Arms: full (the whole corpus), random (a random keep_fraction), filtered (the top keep_fraction by the
stage-05 reference predictor), mates (MATES's loop: reselect every stage_steps from fresh oracle labels).
Every arm trains `steps` steps from scratch at the same batch size, so at equal tokens. Finished cells
(<output_dir>/seed-<s>/<arm>/metrics.json) are kept; the table is <output_dir>/results.md, .png, .json.
"""

import logging

from codesift.cli import report_errors, setup_logging
from codesift.configs import PretrainSelectedArguments, parse_args
from codesift.pretrain_selected import run_pretrain_selected

logger = logging.getLogger(__name__)


def main(args: PretrainSelectedArguments) -> None:
    run_pretrain_selected(args)
    print(open(f"{args.output_dir}/results.md").read())
    logger.info("results: %s/results.md (figure: results.png)", args.output_dir)


if __name__ == "__main__":
    with report_errors():
        args = parse_args(PretrainSelectedArguments)
        setup_logging()
        main(args)
