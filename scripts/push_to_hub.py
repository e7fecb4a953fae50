"""Stage 07: export the best selection and its model as Hub repo folders with cards; push on request.

    python scripts/push_to_hub.py --config recipes/tiny/push_to_hub.yaml                 # export only (offline)
    python scripts/push_to_hub.py --config recipes/tiny/push_to_hub.yaml --dry_run true  # list the uploads
    python scripts/push_to_hub.py --config recipes/tiny/push_to_hub.yaml --push true \
        --dataset_repo_id <you>/<dataset> --model_repo_id <you>/<model>                  # upload

The exports (outputs/<recipe>/hub/dataset and model) load with `load_dataset(<folder>)` and
`from_pretrained(<folder>)` exactly as the Hub repos will. The token comes from `hf auth login` or
HF_TOKEN; it is never printed, logged or written.
"""

import json
import logging

from codesift.cli import report_errors, setup_logging
from codesift.configs import HubArguments, parse_args
from codesift.hub import run_hub_stage

logger = logging.getLogger(__name__)


def main(args: HubArguments) -> None:
    report = run_hub_stage(args)
    print(json.dumps({k: v for k, v in report.items() if not k.endswith("_push")}, indent=2))
    exports = [report[k] for k in ("dataset_export", "model_export", "predictor_export") if k in report]
    logger.info("exports of arm %s: %s", report["arm"], ", ".join(exports))
    for key in ("dataset_push", "model_push", "predictor_push"):
        if key in report:
            push = report[key]
            where = push.get("commit_url") or f"dry run, {len(push['files'])} files"
            logger.info("%s -> %s: %s", key.split("_")[0], push["repo_id"], where)


if __name__ == "__main__":
    with report_errors():
        args = parse_args(HubArguments)
        setup_logging()
        main(args)
