"""Stage 06: a model's completion loss per task (report and select parts) and pass@k by execution.

    python scripts/evaluate_model.py --config recipes/tiny/evaluate.yaml
    python scripts/evaluate_model.py --config recipes/tiny/evaluate.yaml --model_name_or_path outputs/tiny/pretrain/checkpoint-300
    python scripts/evaluate_model.py --config recipes/tiny/evaluate.yaml --num_samples 10 --k 1 10

Writes <output_dir>/metrics.json and samples.jsonl (every generated program and its outcome).
"""

import logging

from codesift.cli import report_errors, setup_logging
from codesift.configs import EvaluationArguments, parse_args
from codesift.evaluation import run_evaluation_stage

logger = logging.getLogger(__name__)


def main(args: EvaluationArguments) -> None:
    results = run_evaluation_stage(args)
    logger.info(
        "evaluated %s in %.0f s -> %s/metrics.json",
        args.model_name_or_path,
        results["seconds"],
        args.output_dir,
    )


if __name__ == "__main__":
    with report_errors():
        args = parse_args(EvaluationArguments)
        setup_logging()
        main(args)
