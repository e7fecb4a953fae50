"""Stage 05: learn influence scores from oracle labels on part of the pool, predict the rest.

    python scripts/train_predictor.py --config recipes/tiny/predictor.yaml
    python scripts/train_predictor.py --config recipes/tiny/predictor.yaml --features ngrams --output_dir outputs/tiny/predictor-ngrams
    python scripts/train_predictor.py --config recipes/tiny/predictor.yaml --predictor finetuned --model_name_or_path bert-base-uncased

Writes <output_dir>/predictor (the fitted predictor), predictions (block_id, predicted_<task>;
stage 04 and 06 select from it like stage-03 scores), metrics.json (held-out agreement, learning
curve, costs) and plots/. Bad input stops with a clear error and writes nothing.
"""

import logging

from codesift.cli import report_errors, setup_logging
from codesift.configs import PredictorArguments, parse_args
from codesift.predictor import run_predictor_stage

logger = logging.getLogger(__name__)


def main(args: PredictorArguments) -> None:
    metrics = run_predictor_stage(args)
    for task, stats in metrics["heldout"].items():
        logger.info(
            "%s: held-out Spearman %.3f, Pearson %.3f, top-20%% precision %.2f (%d held-out blocks)",
            task, stats["spearman"], stats["pearson"], stats["top20_precision"], metrics["labels"]["heldout"],
        )  # fmt: skip
    cost = metrics["cost"]
    logger.info(
        "cost: %d oracle labels %.1f s + training %.1f s + predicting %d blocks %.1f s = %.1f s (oracle on the "
        "whole pool: %.1f s) -> %s",
        cost["oracle_labels"], cost["label_seconds"], cost["train_seconds"], cost["candidates"],
        cost["predict_seconds"], cost["seconds"], cost["oracle_pool_seconds"], args.output_dir,
    )  # fmt: skip


if __name__ == "__main__":
    with report_errors():
        args = parse_args(PredictorArguments)
        setup_logging()
        main(args)
