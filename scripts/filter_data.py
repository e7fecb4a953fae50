"""Stage 04: keep the best candidate blocks by their influence scores, with datasets.filter.

    python scripts/filter_data.py --config recipes/tiny/filter.yaml
    python scripts/filter_data.py --config recipes/tiny/filter.yaml --strategy top_k --tasks humaneval
    python scripts/filter_data.py --config recipes/tiny/filter.yaml --strategy random --output_dir outputs/tiny/selection-random

Writes <output_dir>/blocks (save_to_disk; `scripts/pretrain.py --blocks` reads it), data/*.parquet
(for publishing), selection.json and plots/. Bad input stops with a clear error and writes nothing.
"""

import logging

from codesift.cli import report_errors, setup_logging
from codesift.configs import SelectionArguments, parse_args
from codesift.selection import run_selection_stage

logger = logging.getLogger(__name__)


def main(args: SelectionArguments) -> None:
    metadata = run_selection_stage(args)
    logger.info(
        "kept %d of %d blocks (%d tokens) in %.1f s -> %s",
        metadata["kept_blocks"],
        metadata["candidates_total"],
        metadata["kept_tokens"],
        metadata["selection_seconds"],
        args.output_dir,
    )


if __name__ == "__main__":
    with report_errors():
        args = parse_args(SelectionArguments)
        setup_logging()
        main(args)
