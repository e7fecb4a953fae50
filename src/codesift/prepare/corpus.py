"""The code corpus (stage 01): documents from local code, the Hub or JSONL/parquet files, filtered,
deduplicated, tokenized and packed into blocks.

The documents go through a datatrove pipeline (`codesift.prepare.pipeline`), which runs the same
way on a laptop and on a cluster and resumes at the first unfinished task; this module trains the
tokenizer between its stages, packs the tokenized documents into blocks (each task the blocks that
start in its shard: one stream's blocks, the same for any number of tasks), splits them into train
and candidates, and writes the manifest. Nothing holds the corpus in memory: documents and blocks stream from parquet to arrow.

Document columns: doc_id, text, path, source, package, language, license, sha256 (+ num_tokens).
Block columns: block_id, input_ids, doc_ids, language (the language of most of its tokens).
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import platform
import shutil
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ..configs import CorpusArguments
from ..data import parquet_rows
from ..errors import CodesiftError
from ..plots import plot_corpus_lengths, plot_dropped
from ..provenance import changes, make_record, read_record, up_to_date, write_record
from ..utils import atomic_directory, read_json, save_to_disk, set_seed, write_json
from .filters import validation_problems as problem_triples
from .packing import split_train_candidates
from .sources import DOCUMENT_COLUMNS, CorpusError, check_sources
from .tasks import tokenize_validation_sets
from .tokenizer import load_tokenizer, train_bpe_tokenizer

# Imported inside the functions that use them (heavy or optional): datasets, pyarrow, datatrove.

logger = logging.getLogger(__name__)
__all__ = ["CorpusError", "DOCUMENT_COLUMNS", "build_corpus", "collect_documents", "run_corpus_stage"]
# Arguments that change how the corpus is run, not what it holds (left out of its record), and
# with the split, not which documents it keeps (left out of the work folder's record).
HOW_IT_RUNS = ("output_dir", "work_dir", "keep_work_dir", "executor", "workers", "executor_options",
               "minhash_bucket_tasks")  # fmt: skip
NOT_DOCUMENT_ARGUMENTS = {*HOW_IT_RUNS, "num_candidates"}


# ----------------------------------------------------------------------------------------------
# What was kept and dropped, read back from the pipeline's records
# ----------------------------------------------------------------------------------------------


class CorpusStats:
    """Counts and bytes kept and dropped per reason, for the manifest; dropped records stream from
    the pipeline's parquet files (doc_id, path, reason, detail, bytes)."""

    def __init__(self, work: Path):
        self.work = Path(work)
        self.kept = Counter()
        self.dropped = Counter()
        self.dropped_bytes = Counter()
        for record in self.dropped_records():
            self.dropped[record["reason"]] += 1
            self.dropped_bytes[record["reason"]] += record["bytes"]
        excluded = self.work / "excluded.json"
        self.excluded_packages = json.loads(excluded.read_text()) if excluded.is_file() else {}

    def dropped_records(self) -> Iterator[dict]:
        for folder in sorted((self.work / "dropped").glob("*")):
            yield from parquet_rows(folder)

    @property
    def dropped_docs(self) -> list[dict]:
        return [{k: r[k] for k in ("doc_id", "path", "reason", "detail")} for r in self.dropped_records()]

    def summary(self) -> dict:
        return {
            "documents_read": self.kept["documents"] + sum(self.dropped.values()),
            "bytes_read": self.kept["bytes"] + sum(self.dropped_bytes.values()),
            "documents_kept": self.kept["documents"],
            "bytes_kept": self.kept["bytes"],
            "dropped": {
                reason: {"documents": n, "bytes": self.dropped_bytes[reason]}
                for reason, n in self.dropped.items()
            },
            "benchmark_package_files_excluded": dict(self.excluded_packages),
        }


# ----------------------------------------------------------------------------------------------
# The document pipeline: run (or resume) it in a work folder
# ----------------------------------------------------------------------------------------------


def validation_problems(validation_sets) -> list[tuple[str, str, str]] | None:
    """The decontamination triples of the validation sets (None without them)."""
    return None if validation_sets is None else problem_triples(validation_sets)


def work_record(args: CorpusArguments, validation_sets) -> dict:
    arguments = {k: v for k, v in asdict(args).items() if k not in NOT_DOCUMENT_ARGUMENTS}
    problems = validation_problems(validation_sets)
    return make_record(
        arguments,
        python=platform.python_version(),
        problems=len(problems or []),
        problems_hash=hash_of(problems),
    )


def hash_of(value) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(value, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def prepare_work_dir(work: Path, record: dict) -> None:
    """Keep a work folder made from the same arguments (finished tasks are skipped); start over
    when they changed, since datatrove's markers cannot tell."""
    if work.exists():
        changed = changes(read_record(work), record)
        if not changed:
            logger.info("resuming the corpus pipeline in %s (finished tasks are skipped)", work)
            return
        logger.info("starting the corpus pipeline over in %s: %s changed", work, ", ".join(changed))
        shutil.rmtree(work)
    write_record(work, record)


def collect_documents(args: CorpusArguments, validation_sets=None, work_dir=None):
    """Run (or resume) the document pipeline in `work_dir` (a temporary folder when None); returns
    the kept documents as a memory-mapped `datasets.Dataset` and the stats behind the manifest."""
    import tempfile

    from .pipeline import document_executors, run_executors

    check_sources(args.sources)
    if work_dir is None:
        work_dir = tempfile.mkdtemp(prefix="codesift-corpus-")
    work = Path(work_dir)
    prepare_work_dir(work, work_record(args, validation_sets))
    if not run_executors(document_executors(args, work, validation_problems(validation_sets)), work):
        raise CorpusPending(work)
    stats = CorpusStats(work)
    documents = documents_dataset(work, stats)
    check_not_empty(args, stats)
    return documents, stats


class CorpusPending(RuntimeError):
    """The pipeline was submitted to a cluster and has not finished: run the stage again later."""

    def __init__(self, work: Path):
        super().__init__(
            f"the corpus pipeline's tasks were submitted and are not all finished (logs: {work}/logs); "
            f"run the same command again once they are: finished tasks are skipped"
        )


def documents_dataset(work: Path, stats: CorpusStats):
    """The kept documents (in rank order) as a Dataset written to the work folder's cache; counts
    them into `stats`."""
    from datasets import Dataset, Features, Value

    features = Features({col: Value("string") for col in DOCUMENT_COLUMNS})
    stats.kept.clear()
    if not any((work / "documents").glob("*.parquet")):
        return Dataset.from_dict({col: [] for col in DOCUMENT_COLUMNS}, features=features)
    cache = work / "cache" / "documents"
    shutil.rmtree(cache, ignore_errors=True)  # never a stale cached table for changed files
    for row in parquet_rows(work / "documents", ["text"]):
        stats.kept["documents"] += 1
        stats.kept["bytes"] += len(row["text"].encode("utf-8"))
    return Dataset.from_generator(
        parquet_rows, gen_kwargs={"folder": work / "documents"}, features=features, cache_dir=str(cache)
    )


def check_not_empty(args: CorpusArguments, stats: CorpusStats) -> None:
    summary = stats.summary()
    if summary["documents_kept"]:
        return
    if summary["documents_read"] == 0:
        raise CorpusError(
            f"no document: no file of the languages {args.languages} was found in the sources "
            f"{args.sources} (the languages are matched by file extension)"
        )
    reasons = ", ".join(f"{reason}: {info['documents']}" for reason, info in summary["dropped"].items())
    raise CorpusError(
        f"no document survived: all {summary['documents_read']} files read were dropped ({reasons})"
    )


# ----------------------------------------------------------------------------------------------
# Tokenizer, tokens, blocks
# ----------------------------------------------------------------------------------------------


def corpus_tokenizer(args: CorpusArguments, work: Path, documents):
    """The recipe's tokenizer, or a byte-level BPE trained on the kept documents (streamed); kept
    in the work folder so that a resumed run tokenizes with the same one."""
    folder = work / "tokenizer"
    if (folder / "tokenizer.json").is_file():
        return load_tokenizer(str(folder))
    if args.tokenizer_name_or_path:
        tokenizer = load_tokenizer(args.tokenizer_name_or_path)
    else:
        texts = (row["text"] for row in parquet_rows(work / "documents", ["text"]))
        tokenizer = train_bpe_tokenizer(
            texts, vocab_size=args.vocab_size, model_max_length=args.seq_len, length=len(documents)
        )
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def tokenize_documents(args: CorpusArguments, work: Path) -> None:
    from .pipeline import run_executors, tokenize_executor

    if not run_executors([tokenize_executor(args, work, work / "tokenizer")], work):
        raise CorpusPending(work)


def blocks_dataset_dict(args: CorpusArguments, work: Path, eos_token_id: int):
    """The tokenized documents packed as one stream (in rank order; packed in `args.tasks` tasks,
    each from where its shard starts, the same blocks as one task), then split into `train` and
    `candidates`; returns (DatasetDict, packing stats)."""
    from datasets import Dataset, DatasetDict, Features, Sequence, Value

    from .pipeline import pack_executor, run_executors, shard_stream_tokens

    counts = shard_stream_tokens(work, args.tasks)
    if not run_executors([pack_executor(args, work, eos_token_id, counts)], work):
        raise CorpusPending(work)
    features = Features(
        {
            "block_id": Value("int64"),
            "input_ids": Sequence(Value("int32")),
            "doc_ids": Sequence(Value("string")),
            "language": Value("string"),
        }
    )
    cache = work / "cache" / "blocks"
    shutil.rmtree(cache, ignore_errors=True)
    blocks = Dataset.from_generator(
        parquet_rows, gen_kwargs={"folder": work / "blocks"}, features=features, cache_dir=str(cache)
    )
    train_idx, candidate_idx = split_train_candidates(len(blocks), args.num_candidates, args.seed)
    stats = {
        "seq_len": args.seq_len,
        "blocks": len(blocks),
        "train_blocks": len(train_idx),
        "candidate_blocks": len(candidate_idx),
        "tokens_in_blocks": len(blocks) * args.seq_len,
        "tail_tokens_dropped": sum(counts) - len(blocks) * args.seq_len,
    }
    return DatasetDict({"train": blocks.select(train_idx), "candidates": blocks.select(candidate_idx)}), stats


def documents_with_tokens(work: Path, documents):
    """The kept documents with num_tokens (under the corpus tokenizer) beside them, streamed."""
    from datasets import Dataset, Value

    def rows():
        tokenized = parquet_rows(work / "tokenized", ["doc_id", "input_ids"])
        for document, tokens in zip(parquet_rows(work / "documents"), tokenized, strict=True):
            yield {**document, "num_tokens": len(tokens["input_ids"])}

    features = documents.features.copy()
    features["num_tokens"] = Value("int64")
    cache = work / "cache" / "documents_with_tokens"
    shutil.rmtree(cache, ignore_errors=True)
    return Dataset.from_generator(rows, features=features, cache_dir=str(cache))


def count_by(dataset, column: str, weight: str | None = None) -> dict:
    counts = Counter()
    for batch in dataset.select_columns([column] + ([weight] if weight else [])).iter(batch_size=10_000):
        for i, value in enumerate(batch[column]):
            counts[value] += batch[weight][i] if weight else 1
    return dict(counts)


def environment_versions(args: CorpusArguments) -> dict:
    """Python and package versions, so that the corpus can be rebuilt and described in a card."""
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ["codesift", "datasets", "datatrove", "tokenizers", "transformers", "torch"]:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    if "site-packages" in args.sources:
        for name in args.site_packages:
            try:
                versions[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                versions[name] = None
    return versions


def build_corpus(
    args: CorpusArguments, output_dir: str | os.PathLike, validation_sets=None, work_dir=None
) -> dict:
    """Write documents/ (with num_tokens), tokenizer/, blocks/, validation_tokenized/ (when validation
    sets are given), dropped.jsonl and manifest.json into `output_dir` (which the caller makes
    atomic), running the document pipeline in `work_dir` (resumable; temporary when None).
    Returns the manifest."""
    import tempfile

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    work = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="codesift-corpus-"))
    timings = {}
    start = time.perf_counter()
    documents, stats = collect_documents(args, validation_sets, work)
    write_dropped(stats, output_dir / "dropped.jsonl")
    timings["documents_s"] = round(time.perf_counter() - start, 2)

    start = time.perf_counter()
    tokenizer = corpus_tokenizer(args, work, documents)
    tokenizer.save_pretrained(str(output_dir / "tokenizer"))
    timings["tokenizer_s"] = round(time.perf_counter() - start, 2)

    start = time.perf_counter()
    tokenize_documents(args, work)
    documents = documents_with_tokens(work, documents)
    save_to_disk(documents, output_dir / "documents")
    blocks, packing = blocks_dataset_dict(args, work, tokenizer.eos_token_id)
    save_to_disk(blocks, output_dir / "blocks")
    timings["blocks_s"] = round(time.perf_counter() - start, 2)

    validation_stats = None
    if validation_sets is not None:
        tokenized_sets, validation_stats = tokenize_validation_sets(validation_sets, tokenizer, args.seq_len)
        save_to_disk(tokenized_sets, output_dir / "validation_tokenized")
        write_json(output_dir / "validation_tokenized" / "stats.json", validation_stats)

    manifest = {
        "recipe": asdict(args),
        "versions": environment_versions(args),
        "documents": stats.summary(),
        "documents_by_source": count_by(documents, "source"),
        "documents_by_language": count_by(documents, "language"),
        "tokens_by_language": count_by(documents, "language", weight="num_tokens"),
        "blocks_by_language": {part: count_by(blocks[part], "language") for part in blocks},
        "licenses": license_summary(documents),
        "tokenizer": {
            "name_or_path": args.tokenizer_name_or_path or "trained here (byte-level BPE)",
            "vocab_size": len(tokenizer),
            "eos_token_id": tokenizer.eos_token_id,
        },
        "tokens": {"documents": sum(count_by(documents, "source", weight="num_tokens").values()), **packing},
        "validation_tokenized": validation_stats,
        "pipeline": {"executor": args.executor, "tasks": args.tasks, "near_dedup": minhash_summary(args)},
        "timings": timings,
    }
    write_json(output_dir / "manifest.json", manifest)
    if work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return manifest


def minhash_summary(args: CorpusArguments) -> dict | None:
    if not args.near_dedup:
        return None
    b, r = args.minhash_buckets, args.minhash_hashes_per_bucket
    # the Jaccard at which a pair collides in at least one bucket half the time
    return {
        "buckets": b,
        "hashes_per_bucket": r,
        "shingle_size": args.shingle_size,
        "threshold_approx": round((1 / b) ** (1 / r), 3),
    }


def write_dropped(stats: CorpusStats, path: Path) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for record in stats.dropped_records():
            record = {k: record[k] for k in ("doc_id", "path", "reason", "detail")}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def license_summary(documents) -> dict:
    """Documents per license, with the packages under each (what a dataset card must list)."""
    packages = defaultdict(set)
    counts = Counter()
    for batch in documents.select_columns(["license", "package"]).iter(batch_size=10_000):
        for license, package in zip(batch["license"], batch["package"], strict=True):
            counts[license] += 1
            packages[license].add(package)
    return {lic: {"documents": counts[lic], "packages": sorted(packages[lic])[:50]} for lic in counts}


def load_validation_sets(path: str | None):
    """The stage-01 validation sets for decontamination, or None when the recipe names none."""
    if path is None:
        return None
    from datasets import load_from_disk

    if not (Path(path) / "dataset_dict.json").is_file():
        raise CorpusError(
            f"validation sets not found at {path} (validation_sets in the corpus recipe): run "
            f"scripts/build_validation_sets.py first, or set validation_sets: null to skip decontamination"
        )
    return load_from_disk(str(path))


def corpus_record(args: CorpusArguments) -> dict:
    """What the corpus is made from: the arguments, the validation sets it was decontaminated
    against, the Python and the installed packages it read, and any folder source."""

    def installed(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    # every local folder a source reads (dir:, jsonl:, parquet:) is stamped, so a changed file redoes the corpus
    folders = {source: source.partition(":")[2] for source in args.sources if ":" in source}
    if args.hub_dataset and Path(args.hub_dataset).exists():
        folders["hub_dataset"] = args.hub_dataset
    arguments = {k: v for k, v in vars(args).items() if k not in HOW_IT_RUNS}
    return make_record(
        arguments,
        {"validation_sets": args.validation_sets, **folders},
        python=platform.python_version(),
        packages={name: installed(name) for name in args.site_packages},
    )


def run_corpus_stage(args: CorpusArguments) -> dict:
    """The whole stage for a `CorpusArguments`: documents, tokenizer, blocks, manifest and plots,
    written into `args.output_dir` whole or not at all. Returns the manifest. A corpus made from
    the same arguments and inputs is kept (provenance.json says what it was made from)."""
    from datasets import load_from_disk

    record = corpus_record(args)
    if up_to_date(args.output_dir, record, "corpus", "manifest.json"):
        return read_json(Path(args.output_dir) / "manifest.json")
    set_seed(args.seed)
    validation_sets = load_validation_sets(args.validation_sets)  # checked before anything is written
    work = corpus_work_dir(args)
    try:
        with atomic_directory(args.output_dir) as tmp:
            manifest = build_corpus(args, tmp, validation_sets, work)
            documents = load_from_disk(str(tmp / "documents"))
            blocks = load_from_disk(str(tmp / "blocks"))["train"]
            plot_corpus_lengths(documents["num_tokens"], blocks, args.seq_len, tmp / "plots" / "lengths.png")
            plot_dropped(manifest, tmp / "plots" / "dropped.png")
            write_record(tmp, record)
    except CodesiftError:
        # a bad input: fixing it changes the arguments or inputs, so nothing here would be resumed
        # (an interrupted or crashed run keeps its work folder, and the rerun resumes there)
        if not args.keep_work_dir:
            shutil.rmtree(work, ignore_errors=True)
        raise
    if not args.keep_work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return manifest


def corpus_work_dir(args: CorpusArguments) -> Path:
    """Where the pipeline's tasks write (kept until the corpus is finished, so a rerun resumes)."""
    if args.work_dir:
        return Path(args.work_dir)
    output = Path(args.output_dir)
    return output.with_name(f".{output.name}.work")
