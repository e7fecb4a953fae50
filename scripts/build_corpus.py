"""Stage 01: the code corpus: filtered documents, a tokenizer, packed blocks (train + candidates).

    python scripts/build_corpus.py --config recipes/tiny/corpus.yaml
    python scripts/build_corpus.py --config recipes/tiny/corpus.yaml --sources stdlib dir:my_code \
        --num_candidates 500 --output_dir outputs/my_corpus
    python scripts/build_corpus.py --config recipes/tiny/corpus.yaml --tasks 4 --workers 2   # in 4 shards

The documents go through a datatrove pipeline (codesift.prepare.pipeline); on Slurm the command submits
it and stops, and the same command run again once the jobs are done packs the blocks.
"""

import logging

from codesift.cli import report_errors, setup_logging
from codesift.configs import CorpusArguments, parse_args
from codesift.prepare.corpus import CorpusPending, run_corpus_stage

logger = logging.getLogger(__name__)


def main(args: CorpusArguments) -> None:
    try:
        manifest = run_corpus_stage(args)
    except CorpusPending as pending:  # Slurm: the data stages were submitted; not an error
        logger.info("%s", pending)
        return
    docs, tokens = manifest["documents"], manifest["tokens"]
    dropped = {reason: info["documents"] for reason, info in docs["dropped"].items()}
    logger.info(
        "documents: %d kept of %d read; dropped %s", docs["documents_kept"], docs["documents_read"], dropped
    )
    logger.info(
        "blocks: %d train + %d candidates of %d tokens (%d tail tokens dropped)",
        tokens["train_blocks"],
        tokens["candidate_blocks"],
        tokens["seq_len"],
        tokens["tail_tokens_dropped"],
    )
    logger.info("timings: %s; corpus written to %s", manifest["timings"], args.output_dir)


if __name__ == "__main__":
    with report_errors():
        args = parse_args(CorpusArguments)
        setup_logging()
        main(args)
