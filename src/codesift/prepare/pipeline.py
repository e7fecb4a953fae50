"""Stage 01's document pipeline on datatrove: read, filter, deduplicate, tokenize, pack, in tasks.

    read (local code | Hub | JSONL | parquet) -> readable -> quality -> exact dedup -> decontaminate
        -> filtered/ parquet + MinHash signatures
    MinHash buckets -> clusters -> filter           -> documents/ parquet (the kept documents)
    [the tokenizer is trained here when the recipe names none]
    tokenize                                         -> tokenized/ parquet (doc_id, input_ids, language)
    pack (each task the blocks starting in its shard) -> blocks/ parquet (one stream's blocks)

Each step is a datatrove PipelineStep, so the same recipe runs on a laptop
(`LocalPipelineExecutor`), on Slurm or on Ray; datatrove's completion markers make a rerun skip
finished tasks. Every task writes its own `{rank:05d}.parquet`, and later stages read exactly the
file of their own rank, so MinHash's per-task document indices always line up. Local files are split
into contiguous ranges, so the kept documents, in rank order, are the same for any number of tasks.
Dropped documents are written per filter as parquet records (no text) for the manifest.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.word_tokenizers import WordTokenizer

from ..configs import CorpusArguments
from .filters import (
    EXCLUDED_PATH,
    DecontaminationFilter,
    Drop,
    ExactDedupFilter,
    QualityFilter,
    ReadableFilter,
    code_tokens,
)
from .sources import (
    DOCUMENT_COLUMNS,
    TABLE_SOURCES,
    CorpusError,
    check_mapping,
    hub_stream,
    language_of,
    local_files,
    make_document,
    matches,
    table_document,
)

logger = logging.getLogger(__name__)
NOT_A_FILE = Drop("not_a_regular_file", "a FIFO, socket, device or broken/looping symlink")


# ----------------------------------------------------------------------------------------------
# Documents <-> datatrove
# ----------------------------------------------------------------------------------------------


def to_document(row: dict, drop: Drop | None = None, size: int | None = None) -> Document:
    """A kit document row as a datatrove Document (the row's other columns ride in metadata)."""
    metadata = {k: row[k] for k in DOCUMENT_COLUMNS if k not in ("doc_id", "text")}
    metadata["bytes"] = size if size is not None else len(row["text"].encode("utf-8"))
    if drop is not None:
        metadata["drop"], metadata["drop_detail"] = drop.reason, drop.detail
    return Document(text=row["text"], id=row["doc_id"], metadata=metadata)


def document_row(writer, document: Document) -> dict:
    """ParquetWriter adapter: the kit's document columns."""
    return {
        "doc_id": document.id,
        "text": document.text,
        **{k: document.metadata[k] for k in DOCUMENT_COLUMNS[2:]},
    }


def dropped_record(writer, document: Document, reason: str | None = None) -> dict:
    """JSONL exclusion-writer adapter: what was dropped, why and how big; never the text."""
    meta = document.metadata
    if reason is None:
        reason = meta.get("filter_reason", "dropped")
    detail = meta.get("drop_detail", "")
    if "minhash_cluster_id" in meta:
        detail = f"in MinHash cluster {meta['minhash_cluster_id']} with an earlier document"
    return {
        "doc_id": document.id,
        "path": meta.get("path", ""),
        "reason": reason,
        "detail": detail,
        "bytes": meta["bytes"],
    }


def rank_files(folder: Path, rank: int) -> list[Path]:
    """The parquet file one task wrote (writers here never rotate files, so names are the rank)."""
    return sorted(folder.glob(f"{rank:05d}.parquet"))


class RankShardReader(PipelineStep):
    """Reads back exactly what the task of the same rank wrote in the previous stage."""

    name = "rank shard reader"
    type = "📖 - READER"

    def __init__(self, folder: str):
        super().__init__()
        self.folder = folder

    def run(self, data=None, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        import pyarrow.parquet as pq

        for file in rank_files(Path(self.folder), rank):
            for batch in pq.ParquetFile(file).iter_batches(batch_size=1000):
                for row in batch.to_pylist():
                    self.stat_update("documents")
                    yield to_document(row)


# ----------------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------------


class LocalCodeReader(PipelineStep):
    """The recipe's local files (stdlib, site-packages, dir:), a contiguous range per task.

    Files that cannot be documents (not a regular file, an excluded path, not UTF-8) come out as
    documents marked with the reason, so that the first filter drops and records them."""

    name = "local code reader"
    type = "📖 - READER"

    def __init__(self, args: CorpusArguments, excluded_file: str):
        super().__init__()
        self.args, self.excluded_file = args, excluded_file

    def run(self, data=None, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        if data:
            yield from data
        excluded = Counter()
        files = list(local_files(self.args, excluded))
        if self.args.max_documents is not None:
            files = files[: self.args.max_documents]
        if rank == 0:  # every task lists the same files; one writes the count of excluded ones
            Path(self.excluded_file).parent.mkdir(parents=True, exist_ok=True)
            Path(self.excluded_file).write_text(json.dumps(dict(excluded)))
        start, stop = rank * len(files) // world_size, (rank + 1) * len(files) // world_size
        for entry in files[start:stop]:
            self.stat_update("files")
            yield self.read(entry)

    def read(self, entry) -> Document:
        file = Path(entry.file)
        row = make_document(
            entry.doc_id, "", entry.path, entry.source, entry.package, language_of(entry.path), entry.license
        )
        if not file.is_file():  # a FIFO would hang the read, a symlink loop fail it
            return to_document(row, NOT_A_FILE, 0)
        if matches(entry.path, self.args.exclude_path_patterns):  # before reading: fixtures may not be UTF-8
            return to_document(row, EXCLUDED_PATH, file.stat().st_size)
        try:
            text = file.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError) as err:
            return to_document(row, Drop("unreadable", type(err).__name__), file.stat().st_size)
        language = language_of(entry.path, text)
        return to_document(
            make_document(
                entry.doc_id, text, entry.path, entry.source, entry.package, language, entry.license
            )
        )


class HubReader(PipelineStep):
    """A Hub dataset (or a local dataset folder) streamed through the column mapping; each task
    streams its own files (`IterableDataset.shard`; with fewer files than tasks, every task reads
    them all and keeps its share of the rows)."""

    name = "hub reader"
    type = "📖 - READER"

    def __init__(self, args: CorpusArguments):
        super().__init__()
        self.args = args

    def run(self, data=None, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        if data:
            yield from data
        mapping = check_mapping(self.args)
        limit = self.args.max_documents
        for index, row in enumerate(hub_stream(self.args, rank, world_size)):
            if limit is not None and index >= -(-limit // world_size):
                return
            self.stat_update("rows")
            yield to_document(
                table_document(
                    row, f"{rank}-{index}" if world_size > 1 else index, "hub", self.args.hub_dataset, mapping
                )
            )


class TableRows:
    """A JSONL/parquet row as a kit document, where a bad row (broken JSON, no text, a missing
    column) is an error naming file and line, or with `skip_bad_rows` a document marked to be
    dropped (the readable filter drops it, so the manifest counts it under `bad_row`)."""

    def __init__(self, source: str, folder: str, mapping: dict, skip_bad_rows: bool):
        self.source, self.folder, self.mapping, self.skip = source, folder, mapping, skip_bad_rows

    def where(self, path: str, index: int) -> str:
        return f"{Path(self.folder) / path}, {'line' if self.source == 'jsonl' else 'row'} {index + 1}"

    def document(self, data: dict | None, path: str, index: int, problem: str | None = None) -> Document:
        if problem is None:
            text = data.get(self.mapping["text"]) if isinstance(data, dict) else None
            if not isinstance(data, dict):
                problem = f"expected a JSON object, got {type(data).__name__}"
            elif self.mapping["text"] in data and not (isinstance(text, str) and text.strip()):
                problem = f"empty or non-text {self.mapping['text']!r} column"
        if problem is None:
            try:
                return to_document(
                    table_document(data, f"{path}/{index}", self.source, self.folder, self.mapping)
                )
            except CorpusError as err:
                problem = str(err)
        if not self.skip:
            raise CorpusError(f"{self.where(path, index)}: {problem} (skip_bad_rows: true drops such rows)")
        logger.warning("dropping %s: %s", self.where(path, index), problem)
        row = make_document(f"{self.source}:{self.folder}/{path}/{index}", " ", path, self.source,
                            self.folder, "unknown", "unknown")  # fmt: skip
        return to_document(row, Drop("bad_row", f"{self.where(path, index)}: {problem}"), size=0)


def strict_jsonl_reader(folder: str, rows: TableRows, limit: int):
    """datatrove's JsonlReader, but a line that is not JSON is not skipped without a word."""
    import orjson
    from datatrove.pipeline.readers import JsonlReader

    class StrictJsonlReader(JsonlReader):
        def read_file(self, filepath: str):
            with self.data_folder.open(filepath, "r", compression=self.compression) as handle:
                try:
                    for index, line in enumerate(handle):
                        if not line.strip():
                            continue
                        try:
                            data, problem = orjson.loads(line), None
                        except orjson.JSONDecodeError as err:
                            data, problem = None, f"broken JSON ({err})"
                        yield rows.document(data, filepath, index, problem)
                except (EOFError, UnicodeDecodeError, OSError) as err:  # a cut or damaged .gz, not UTF-8
                    raise CorpusError(
                        f"{Path(folder) / filepath}: cannot be read to its end ({err})"
                    ) from None

    return StrictJsonlReader(folder, glob_pattern="*.jsonl*", limit=limit)


def strict_parquet_reader(folder: str, rows: TableRows, limit: int):
    """datatrove's ParquetReader, but a row without text is not skipped without a word."""
    from datatrove.pipeline.readers import ParquetReader

    class StrictParquetReader(ParquetReader):
        def read_file(self, filepath: str):
            import pyarrow.parquet as pq

            with self.data_folder.open(filepath, "rb") as handle, pq.ParquetFile(handle) as table:
                index = 0
                for batch in table.iter_batches(batch_size=self.batch_size):
                    for data in batch.to_pylist():
                        yield rows.document(data, filepath, index)
                        index += 1

    return StrictParquetReader(folder, glob_pattern="*.parquet*", limit=limit, read_metadata=True)


def readers(args: CorpusArguments, work: Path) -> list:
    steps = []
    if any(s in ("stdlib", "site-packages") or s.startswith("dir:") for s in args.sources):
        steps.append(LocalCodeReader(args, str(work / "excluded.json")))
    mapping = check_mapping(args) if any(s.startswith(TABLE_SOURCES) for s in args.sources) else {}
    for source in args.sources:
        kind, _, folder = source.partition(":")
        if kind in ("jsonl", "parquet"):
            if not Path(folder).is_dir():
                raise CorpusError(f"corpus source {source}: {folder} is not a folder")
            reader = strict_jsonl_reader if kind == "jsonl" else strict_parquet_reader
            rows = TableRows(kind, folder, mapping, args.skip_bad_rows)
            steps.append(reader(folder, rows, limit=args.max_documents or -1))
        elif source == "hub":
            steps.append(HubReader(args))
    return steps


# ----------------------------------------------------------------------------------------------
# The kit's filters as datatrove filter steps
# ----------------------------------------------------------------------------------------------


def parquet_writer(folder: Path, adapter):
    """Every parquet file stage 01 writes: one file per task named by its rank (later stages read
    exactly their own rank's), never split by size."""
    from datatrove.pipeline.writers import ParquetWriter

    return ParquetWriter(
        str(folder),
        output_filename="${rank}.parquet",
        adapter=adapter,
        use_content_defined_chunking=False,
        max_file_size=-1,
    )


def exclusion_writer(work: Path, name: str, reason: str | None = None):
    """Dropped documents' records (no text), one parquet file per task under dropped/<name>/."""
    return parquet_writer(work / "dropped" / name, partial(dropped_record, reason=reason))


def filter_steps(args: CorpusArguments, work: Path, problems) -> list:
    """Cheapest first; near-dup (MinHash, after these) last, so that a contaminated file never
    becomes the representative its copies are measured against."""
    steps = [
        ReadableFilter(args.exclude_path_patterns, exclusion_writer(work, "readable")),
        QualityFilter(
            min_bytes=args.min_bytes,
            max_bytes=args.max_bytes,
            max_line_length=args.max_line_length,
            max_mean_line_length=args.max_mean_line_length,
            min_alnum_fraction=args.min_alnum_fraction,
            exclusion_writer=exclusion_writer(work, "quality"),
        ),
        ExactDedupFilter(exclusion_writer(work, "exact_duplicate")),
    ]
    if problems is not None:
        steps.append(
            DecontaminationFilter(
                problems,
                n=args.decontamination_ngram,
                threshold=args.decontamination_threshold,
                exclusion_writer=exclusion_writer(work, "contaminated"),
            )
        )
    return steps


# ----------------------------------------------------------------------------------------------
# MinHash on code tokens
# ----------------------------------------------------------------------------------------------


class CodeWordTokenizer(WordTokenizer):
    """Shingles from the kit's code tokens (words and single punctuation marks), not prose words."""

    def word_tokenize(self, text: str) -> list[str]:
        return code_tokens(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return text.splitlines()

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        raise NotImplementedError


def minhash_config(args: CorpusArguments):
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.utils.hashing import HashConfig
    from datatrove.utils.text import TextNormConfig

    # code is case- and punctuation-sensitive: shingle the code tokens as they are. sha1 because
    # datatrove's xxhash path hands xxhash a str, which the pinned xxhash refuses.
    off = TextNormConfig(
        lowercase=False,
        norm_whitespace=False,
        remove_punctuation=False,
        norm_unicode_diacritics=False,
        norm_numbers=False,
    )
    return MinhashConfig(
        n_grams=args.shingle_size,
        num_buckets=args.minhash_buckets,
        hashes_per_bucket=args.minhash_hashes_per_bucket,
        seed=args.seed,
        hash_config=HashConfig(hash_fc="sha1", precision=64),
        norm_config=off,
    )


# ----------------------------------------------------------------------------------------------
# Tokenizing
# ----------------------------------------------------------------------------------------------


class TokenizeDocuments(PipelineStep):
    """Adds each document's token ids (no special tokens; packing adds EOS) under the stage's tokenizer."""

    name = "tokenize"
    type = "🔢 - TOKENIZER"

    def __init__(self, tokenizer_dir: str, counts_dir: str, batch_size: int = 512):
        super().__init__()
        self.tokenizer_dir, self.counts_dir, self.batch_size = tokenizer_dir, counts_dir, batch_size

    def run(self, data, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        from datatrove.utils.batching import batched

        from .tokenizer import load_tokenizer

        tokenizer = load_tokenizer(self.tokenizer_dir)
        stream_tokens = 0
        for batch in batched(data, self.batch_size):
            encoded = tokenizer([d.text for d in batch], add_special_tokens=False, verbose=False)["input_ids"]
            for document, ids in zip(batch, encoded, strict=True):
                document.metadata["input_ids"] = ids
                self.stat_update("tokens", value=len(ids))
                stream_tokens += len(ids) + 1  # and the EOS packing adds
                yield document
        # what packing in parallel needs from each shard: where its tokens start in the one stream
        Path(self.counts_dir).mkdir(parents=True, exist_ok=True)
        (Path(self.counts_dir) / f"{rank:05d}.json").write_text(json.dumps({"stream_tokens": stream_tokens}))


def shard_stream_tokens(work: Path, shards: int) -> list[int]:
    """Each tokenized shard's tokens with their EOS, as the tokenize tasks counted them (counted
    from the parquet file for a work folder tokenized before they did)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    counts = []
    for rank in range(shards):
        file = work / "tokenized_counts" / f"{rank:05d}.json"
        if file.is_file():
            counts.append(json.loads(file.read_text())["stream_tokens"])
            continue
        found = rank_files(work / "tokenized", rank)
        table = pq.read_table(found[0], columns=["input_ids"]) if found else None
        counts.append(
            0
            if table is None
            else int(pc.sum(pc.list_value_length(table["input_ids"])).as_py() or 0) + len(table)
        )
    return counts


class PackBlocks(PipelineStep):
    """One task's blocks of the one stream (`packing.pack_slice`): those that start in its own
    tokenized shard, reading into the next shards for the last one."""

    name = "pack"
    type = "📦 - PACKER"

    def __init__(self, tokenized_dir: str, token_counts: list[int], seq_len: int, eos_token_id: int):
        super().__init__()
        self.tokenized_dir, self.token_counts = tokenized_dir, token_counts
        self.seq_len, self.eos_token_id = seq_len, eos_token_id

    def shard_rows(self, shard: int) -> Iterator[dict]:
        import pyarrow.parquet as pq

        for file in rank_files(Path(self.tokenized_dir), shard):
            for batch in pq.ParquetFile(file).iter_batches(batch_size=1000):
                yield from batch.to_pylist()

    def run(self, data=None, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        from .packing import pack_slice

        for block in pack_slice(self.shard_rows, rank, self.token_counts, self.seq_len, self.eos_token_id):
            self.stat_update("blocks")
            yield Document(text="", id=str(block["block_id"]), metadata={"block": block})


def block_row(writer, document: Document) -> dict:
    return document.metadata["block"]


def tokenized_row(writer, document: Document) -> dict:
    return {
        "doc_id": document.id,
        "input_ids": document.metadata["input_ids"],
        "language": document.metadata["language"],
    }


# ----------------------------------------------------------------------------------------------
# Executors and the pipelines
# ----------------------------------------------------------------------------------------------


PIPELINE_STAGES = ("filter", "minhash_buckets", "minhash_cluster", "minhash_filter", "tokenize", "pack")


def stage_options(executor_options: dict, stage: str) -> dict:
    """One stage's executor arguments: the common ones, then the stage's own under `stages`, e.g.
    `{partition: cpu, time: "4:00:00", stages: {minhash_buckets: {time: "12:00:00", mem_per_cpu_gb: 8}}}`
    (each datatrove stage asks for what it needs, as datatrove's own MinHash example does)."""
    own = executor_options.get("stages") or {}
    unknown = sorted(set(own) - set(PIPELINE_STAGES))
    if unknown:
        raise CorpusError(
            f"executor_options.stages: unknown stage(s) {unknown}; stages: {', '.join(PIPELINE_STAGES)}"
        )
    return {**{k: v for k, v in executor_options.items() if k != "stages"}, **own.get(stage, {})}


def make_executor(
    args: CorpusArguments, work: Path, name: str, pipeline: list, tasks: int, workers: int, depends=None
):
    """A datatrove executor for one stage: local (here), slurm or ray, from the recipe."""
    logging_dir = str(work / "logs" / name)
    options = stage_options(args.executor_options, name)
    if args.executor == "local":
        from datatrove.executor import LocalPipelineExecutor

        return LocalPipelineExecutor(
            pipeline, tasks=tasks, workers=workers, logging_dir=logging_dir, depends=depends
        )
    if args.executor == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        options.setdefault("job_name", f"codesift-corpus-{name}")
        return SlurmPipelineExecutor(
            pipeline, tasks=tasks, logging_dir=logging_dir, depends=depends, **options
        )
    if args.executor == "ray":
        from datatrove.executor import RayPipelineExecutor

        return RayPipelineExecutor(
            pipeline, tasks=tasks, workers=workers, logging_dir=logging_dir, depends=depends, **options
        )
    raise CorpusError(f"executor {args.executor!r}: use local, slurm or ray")


def document_executors(args: CorpusArguments, work: Path, problems) -> list:
    """filter -> MinHash buckets -> clusters -> filter, each depending on the one before."""
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )

    def write_documents(folder):
        return parquet_writer(folder, document_row)

    first = [*readers(args, work), *filter_steps(args, work, problems)]
    if not args.near_dedup:
        return [
            make_executor(
                args,
                work,
                "filter",
                [*first, write_documents(work / "documents")],
                args.tasks,
                args.workers,
            )
        ]
    config, minhash = minhash_config(args), work / "minhash"
    signature = MinhashDedupSignature(
        str(minhash / "signatures"), config=config, language=CodeWordTokenizer()
    )
    filtering = make_executor(
        args,
        work,
        "filter",
        [*first, write_documents(work / "filtered"), signature],
        args.tasks,
        args.workers,
    )
    # one worker: several bucket workers at once hung in datatrove's local executor
    buckets = make_executor(
        args,
        work,
        "minhash_buckets",
        [MinhashDedupBuckets(str(minhash / "signatures"), str(minhash / "buckets"), config=config)],
        config.num_buckets * args.minhash_bucket_tasks,
        1,
        depends=filtering,
    )
    cluster = make_executor(
        args,
        work,
        "minhash_cluster",
        [
            MinhashDedupCluster(
                str(minhash / "buckets"), str(minhash / "remove"), config=config, save_cluster_id=True
            )
        ],
        1,
        1,
        depends=buckets,
    )
    dedup = MinhashDedupFilter(
        str(minhash / "remove"),
        exclusion_writer=exclusion_writer(work, "near_duplicate", reason="near_duplicate"),
        load_cluster_ids=True,
    )
    final = make_executor(
        args,
        work,
        "minhash_filter",
        [RankShardReader(str(work / "filtered")), dedup, write_documents(work / "documents")],
        args.tasks,
        args.workers,
        depends=cluster,
    )
    return [filtering, buckets, cluster, final]


def tokenize_executor(args: CorpusArguments, work: Path, tokenizer_dir: Path):
    pipeline = [
        RankShardReader(str(work / "documents")),
        TokenizeDocuments(str(tokenizer_dir), str(work / "tokenized_counts")),
        parquet_writer(work / "tokenized", tokenized_row),
    ]
    return make_executor(args, work, "tokenize", pipeline, args.tasks, args.workers)


def pack_executor(args: CorpusArguments, work: Path, eos_token_id: int, counts: list[int]):
    """Packing in as many tasks as tokenizing: each task packs the blocks that start in its shard
    (`counts`: each shard's stream tokens, `shard_stream_tokens`)."""
    pipeline = [
        PackBlocks(str(work / "tokenized"), counts, args.seq_len, eos_token_id),
        parquet_writer(work / "blocks", block_row),
    ]
    return make_executor(args, work, "pack", pipeline, args.tasks, args.workers)


def join_ray() -> None:
    """Connect to the Ray cluster RAY_ADDRESS names (or that `ray start` runs here), else start one on
    this machine; a driver that already called `ray.init` keeps its own."""
    import ray

    if not ray.is_initialized():
        context = ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False)
        logger.info("corpus pipeline on Ray: %s", context.address_info.get("address", "a local cluster"))


def run_executors(executors: list, work: Path) -> bool:
    """Run (locally) or submit (Slurm, Ray) the chain; True when every task of every stage is done.

    datatrove logs every task at INFO on stderr; that goes to logs/datatrove.log in the work folder
    (each task's own log is under logs/<stage>/logs/), and one line per stage comes here."""
    log = work / "logs" / "datatrove.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    local = executors[0].__class__.__name__ == "LocalPipelineExecutor"
    if executors[0].__class__.__name__ == "RayPipelineExecutor":
        join_ray()
    with open(log, "a", encoding="utf-8") as sink, contextlib.redirect_stderr(sink):
        for executor in executors if local else executors[-1:]:
            stage = Path(str(executor.logging_dir.path)).name
            logger.info("corpus pipeline: %s (%d tasks; log %s)", stage, executor.world_size, log)
            if local:
                executor.depends = None  # run in order here, so a failure stops the chain at once
            executor.run()  # on a cluster: submits the chain, dependencies first
    return all(not executor.get_incomplete_ranks() for executor in executors)
