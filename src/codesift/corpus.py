"""The code corpus (stage 01): documents from local sources or the Hub, filtered, tokenized, packed.

Local sources (the embedded default) read the source files of the running Python: its stdlib
and its site-packages, each file tagged with the distribution that owns it and that
distribution's license. A `dir:<folder>` source reads any folder of code. The Hub source streams a
dataset by id (or a local dataset folder) through a column mapping. All sources yield the same
document rows and go through the same filters, so the manifest describes any corpus the same way.

Document columns: doc_id, text, path, source, package, language, license, sha256.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.metadata
import os
import platform
import sys
import sysconfig
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from tqdm.auto import tqdm

from .configs import CorpusArguments
from .filters import Decontaminator, Drop, ExactDeduplicator, NearDeduplicator, check_quality
from .packing import pack_documents, split_train_candidates
from .plots import plot_corpus_lengths, plot_dropped
from .provenance import make_record, up_to_date, write_record
from .tasks import tokenize_validation_sets
from .tokenizer import load_tokenizer, train_bpe_tokenizer
from .utils import atomic_directory, read_json, save_to_disk, set_seed, write_json, write_jsonl

# Imported inside the functions that use them (heavy or optional): datasets.

DOCUMENT_COLUMNS = ["doc_id", "text", "path", "source", "package", "language", "license", "sha256"]
LANGUAGE_BY_EXTENSION = {
    ".py": "python",
    ".pyi": "python",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".js": "javascript",
    ".mjs": "javascript",
    ".ts": "typescript",
    ".java": "java",
    ".go": "go",
    ".rs": "rust",
    ".sh": "shell",
}
SKIPPED_DIRS = {"__pycache__", "site-packages", "dist-packages", "lib-dynload", ".git"}


class CorpusError(ValueError):
    """A corpus recipe or source that cannot be built."""


def language_of(path: str) -> str | None:
    return LANGUAGE_BY_EXTENSION.get(os.path.splitext(path)[1].lower())


def make_document(doc_id, text, path, source, package, language, license) -> dict:
    return {
        "doc_id": doc_id,
        "text": text,
        "path": path,
        "source": source,
        "package": package,
        "language": language,
        "license": license or "unknown",
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
    }


# ----------------------------------------------------------------------------------------------
# Local files: which files, owned by which package, under which license
# ----------------------------------------------------------------------------------------------


def distribution_license(dist: importlib.metadata.Distribution) -> str:
    """License-Expression, else a short License field, else the license classifiers, else unknown."""
    meta = dist.metadata
    expression = meta.get("License-Expression")
    if expression:
        return expression
    declared = (meta.get("License") or "").strip()
    if declared and len(declared) <= 80 and "\n" not in declared:
        return declared
    classifiers = [
        c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License ::")
    ]
    return "; ".join(classifiers) or "unknown"


def normalize_name(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def stdlib_files(languages: list[str]) -> Iterator[tuple[Path, str, str, str]]:
    """(file, path relative to the stdlib, package, license) for the running Python's stdlib."""
    root = Path(sysconfig.get_paths()["stdlib"])
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(files):
            file = Path(folder) / name
            if language_of(name) in languages:
                relative = file.relative_to(root).as_posix()
                yield file, relative, relative.split("/")[0].removesuffix(".py"), "PSF-2.0"


def site_packages_files(
    languages: list[str], include: list[str], exclude: list[str], excluded: Counter
) -> Iterator[tuple[Path, str, str, str]]:
    """(file, path relative to site-packages, distribution, license) for installed distributions.

    Ownership comes from each distribution's RECORD, so a file is tagged with the package that
    installed it. Files of `exclude` distributions are counted in `excluded` and skipped.
    """
    roots = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
    wanted = {normalize_name(n) for n in include}
    unwanted = {normalize_name(n) for n in exclude}
    seen = set()
    for dist in sorted(
        importlib.metadata.distributions(), key=lambda d: normalize_name(d.metadata["Name"] or "")
    ):
        name = normalize_name(dist.metadata["Name"] or "")
        if not name or name in seen or (wanted and name not in wanted):
            continue
        seen.add(name)
        license = distribution_license(dist)
        for record in sorted(dist.files or [], key=str):
            if language_of(str(record)) not in languages:
                continue
            file = Path(dist.locate_file(record)).resolve()
            root = next((r for r in roots if file.is_relative_to(r)), None)
            if root is None or not file.is_file():
                continue  # an editable install's source tree, or a file outside site-packages
            if name in unwanted:
                excluded[name] += 1
                continue
            yield file, file.relative_to(root).as_posix(), name, license


def directory_files(folder: str, languages: list[str]) -> Iterator[tuple[Path, str, str, str]]:
    root = Path(folder)
    if not root.is_dir():
        raise CorpusError(f"corpus source dir:{folder} is not a folder (resolved to {root.resolve()})")
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(files):
            if language_of(name) in languages:
                file = Path(dirpath) / name
                yield file, file.relative_to(root).as_posix(), root.resolve().name, "unknown"


EXCLUDED_PATH = Drop("excluded_path", "matches exclude_path_patterns")
NOT_A_FILE = Drop("not_a_regular_file", "a FIFO, socket, device or broken/looping symlink")


def excluded_path(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(path, pattern) for pattern in patterns)


def local_documents(args: CorpusArguments, stats: CorpusStats) -> Iterator[dict]:
    """Documents of the local sources named in the recipe, read as UTF-8."""
    for source in args.sources:
        if source == "stdlib":
            files = stdlib_files(args.languages)
        elif source == "site-packages":
            files = site_packages_files(
                args.languages, args.site_packages, args.exclude_packages, stats.excluded_packages
            )
        elif source.startswith("dir:"):
            files = directory_files(source.removeprefix("dir:"), args.languages)
        else:
            continue
        label = source.split(":")[0]
        for file, relative, package, license in files:
            path = f"{source.removeprefix('dir:')}/{relative}" if label == "dir" else relative
            if not file.is_file():  # a FIFO would hang the read, a symlink loop fail it
                stats.drop(f"{label}:{path}", path, 0, NOT_A_FILE)
                continue
            if excluded_path(path, args.exclude_path_patterns):  # before reading: fixtures may not be UTF-8
                stats.drop(f"{label}:{path}", path, file.stat().st_size, EXCLUDED_PATH)
                continue
            try:
                text = file.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError) as err:
                stats.drop(
                    f"{label}:{path}", path, file.stat().st_size, Drop("unreadable", type(err).__name__)
                )
                continue
            yield make_document(f"{label}:{path}", text, path, label, package, language_of(path), license)


def hub_documents(args: CorpusArguments) -> Iterator[dict]:
    """Documents streamed from a Hub dataset (or a local dataset folder), through the column mapping."""
    from datasets import load_dataset

    if not args.hub_dataset:
        raise CorpusError("the 'hub' source needs hub_dataset (a Hub id or a local dataset folder)")
    mapping = dict(args.hub_column_mapping)
    if "text" not in mapping:
        raise CorpusError("hub_column_mapping must name the column that holds the text (key 'text')")
    stream = load_dataset(
        args.hub_dataset, args.hub_config, data_dir=args.hub_data_dir, split=args.hub_split, streaming=True
    )
    for index, row in enumerate(stream):
        missing = [col for col in mapping.values() if col not in row]
        if missing:
            raise CorpusError(
                f"{args.hub_dataset} row {index} has no column(s) {missing} named in hub_column_mapping; "
                f"its columns: {sorted(row)}"
            )
        path = str(row[mapping["path"]]) if "path" in mapping else f"{index}"
        language = row[mapping["language"]] if "language" in mapping else language_of(path) or "unknown"
        yield make_document(
            f"hub:{args.hub_dataset}/{index}",
            row[mapping["text"]],
            path,
            "hub",
            str(row[mapping["package"]]) if "package" in mapping else args.hub_dataset,
            str(language).lower(),
            str(row[mapping["license"]]) if "license" in mapping else "unknown",
        )


def iter_documents(args: CorpusArguments, stats: CorpusStats) -> Iterator[dict]:
    known = {"stdlib", "site-packages", "hub"}
    bad = [s for s in args.sources if s not in known and not s.startswith("dir:")]
    if bad:
        raise CorpusError(f"unknown corpus source(s) {bad}; use stdlib, site-packages, dir:<folder> or hub")
    count = 0
    streams = [local_documents(args, stats)] + ([hub_documents(args)] if "hub" in args.sources else [])
    for stream in streams:
        for doc in stream:
            if args.max_documents is not None and count >= args.max_documents:
                return
            count += 1
            yield doc


# ----------------------------------------------------------------------------------------------
# Filtering, with every drop counted
# ----------------------------------------------------------------------------------------------


class CorpusStats:
    """Counts and bytes kept and dropped per reason, and every dropped document, for the manifest."""

    def __init__(self):
        self.kept = Counter()
        self.dropped = Counter()
        self.dropped_bytes = Counter()
        self.dropped_docs: list[dict] = []
        self.excluded_packages = Counter()

    def drop(self, doc_id: str, path: str, size: int, drop: Drop) -> None:
        self.dropped[drop.reason] += 1
        self.dropped_bytes[drop.reason] += size
        self.dropped_docs.append(
            {"doc_id": doc_id, "path": path, "reason": drop.reason, "detail": drop.detail}
        )

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


def build_filters(args: CorpusArguments, validation_sets=None) -> list:
    """The filter chain, cheapest first; near-dup last so a contaminated file never becomes the
    representative that its copies are measured against."""

    def quality(doc_id, text):
        return check_quality(
            text,
            args.min_bytes,
            args.max_bytes,
            args.max_line_length,
            args.max_mean_line_length,
            args.min_alnum_fraction,
        )

    chain = [quality, ExactDeduplicator()]
    if validation_sets is not None:
        chain.append(
            Decontaminator.from_validation_sets(
                validation_sets, n=args.decontamination_ngram, threshold=args.decontamination_threshold
            )
        )
    if args.near_dup_threshold is not None:
        chain.append(
            NearDeduplicator(
                args.near_dup_threshold, args.minhash_num_perm, args.shingle_size, seed=args.seed
            )
        )
    return chain


def filter_documents(documents, filters, stats: CorpusStats, patterns: list[str]) -> Iterator[dict]:
    for doc in documents:
        size = len(doc["text"].encode("utf-8"))
        if excluded_path(doc["path"], patterns):
            stats.drop(doc["doc_id"], doc["path"], size, EXCLUDED_PATH)
            continue
        drop = next((d for d in (f(doc["doc_id"], doc["text"]) for f in filters) if d is not None), None)
        if drop is not None:
            stats.drop(doc["doc_id"], doc["path"], size, drop)
            continue
        stats.kept["documents"] += 1
        stats.kept["bytes"] += size
        yield doc


def collect_documents(args: CorpusArguments, validation_sets=None):
    """The filtered documents as a `datasets.Dataset`, and the stats behind the manifest."""
    from datasets import Dataset

    stats = CorpusStats()
    filters = build_filters(args, validation_sets)
    documents = filter_documents(iter_documents(args, stats), filters, stats, args.exclude_path_patterns)
    rows = list(tqdm(documents, desc="reading and filtering documents", unit="doc"))
    if not rows:
        summary = stats.summary()
        if summary["documents_read"] == 0:
            raise CorpusError(
                f"no document: no file of the languages {args.languages} was found in the sources "
                f"{args.sources} (the languages are matched by file extension)"
            )
        reasons = ", ".join(f"{reason}: {info['documents']}" for reason, info in summary["dropped"].items())
        raise CorpusError(
            f"no document survived: all {summary['documents_read']} files read were dropped ({reasons})"
        )
    columns = {col: [row[col] for row in rows] for col in DOCUMENT_COLUMNS}
    return Dataset.from_dict(columns), stats


# ----------------------------------------------------------------------------------------------
# The whole stage: documents -> tokenizer -> blocks (+ tokenized validation sets), and the manifest
# ----------------------------------------------------------------------------------------------


def tokenize_documents(documents, tokenizer, num_proc: int):
    def encode(batch):
        return {"input_ids": tokenizer(batch["text"], add_special_tokens=False, verbose=False)["input_ids"]}

    return documents.map(
        encode,
        batched=True,
        num_proc=num_proc if num_proc and num_proc > 1 else None,
        remove_columns=[c for c in documents.column_names if c != "doc_id"],
        desc="tokenizing documents",
    )


def blocks_dataset_dict(tokenized, seq_len: int, eos_token_id: int, num_candidates: int, seed: int):
    """Pack, then split into `train` and `candidates`; returns (DatasetDict, packing stats)."""
    from datasets import Dataset, DatasetDict, Features, Sequence, Value

    pairs = ((row["doc_id"], row["input_ids"]) for row in tqdm(tokenized, desc="packing blocks", unit="doc"))
    blocks, tail = pack_documents(pairs, seq_len, eos_token_id)
    train_idx, candidate_idx = split_train_candidates(len(blocks), num_candidates, seed)
    features = Features(
        {
            "block_id": Value("int64"),
            "input_ids": Sequence(Value("int32")),
            "doc_ids": Sequence(Value("string")),
        }
    )

    def part(indices):
        return Dataset.from_dict(
            {key: [blocks[i][key] for i in indices] for key in ("block_id", "input_ids", "doc_ids")},
            features=features,
        )

    stats = {
        "seq_len": seq_len,
        "blocks": len(blocks),
        "train_blocks": len(train_idx),
        "candidate_blocks": len(candidate_idx),
        "tokens_in_blocks": len(blocks) * seq_len,
        "tail_tokens_dropped": tail,
    }
    return DatasetDict({"train": part(train_idx), "candidates": part(candidate_idx)}), stats


def environment_versions(args: CorpusArguments) -> dict:
    """Python and package versions, so that the corpus can be rebuilt and described in a card."""
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ["codesift", "datasets", "tokenizers", "transformers", "datasketch", "torch"]:
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


def build_corpus(args: CorpusArguments, output_dir: str | os.PathLike, validation_sets=None) -> dict:
    """Write documents/ (with num_tokens), tokenizer/, blocks/, validation_tokenized/ (when validation sets are given),
    dropped.jsonl and manifest.json into `output_dir` (which the caller makes atomic). Returns the
    manifest."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    timings = {}
    start = time.perf_counter()
    documents, stats = collect_documents(args, validation_sets)
    write_jsonl(output_dir / "dropped.jsonl", stats.dropped_docs)
    timings["documents_s"] = round(time.perf_counter() - start, 2)

    start = time.perf_counter()
    if args.tokenizer_name_or_path:
        tokenizer = load_tokenizer(args.tokenizer_name_or_path)
    else:
        tokenizer = train_bpe_tokenizer(
            documents["text"],
            vocab_size=args.vocab_size,
            model_max_length=args.seq_len,
            length=len(documents),
        )
    tokenizer.save_pretrained(str(output_dir / "tokenizer"))
    timings["tokenizer_s"] = round(time.perf_counter() - start, 2)

    start = time.perf_counter()
    tokenized = tokenize_documents(documents, tokenizer, args.num_proc)
    # num_tokens (under this tokenizer) rides along with the documents for plots and cards
    documents = documents.add_column("num_tokens", [len(ids) for ids in tokenized["input_ids"]])
    save_to_disk(documents, output_dir / "documents")
    blocks, packing = blocks_dataset_dict(
        tokenized, args.seq_len, tokenizer.eos_token_id, args.num_candidates, args.seed
    )
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
        "documents_by_source": dict(Counter(documents["source"])),
        "documents_by_language": dict(Counter(documents["language"])),
        "licenses": license_summary(documents),
        "tokenizer": {
            "name_or_path": args.tokenizer_name_or_path or "trained here (byte-level BPE)",
            "vocab_size": len(tokenizer),
            "eos_token_id": tokenizer.eos_token_id,
        },
        "tokens": {"documents": int(sum(documents["num_tokens"])), **packing},
        "validation_tokenized": validation_stats,
        "timings": timings,
    }
    write_json(output_dir / "manifest.json", manifest)
    return manifest


def license_summary(documents) -> dict:
    """Documents per license, with the packages under each (what a dataset card must list)."""
    packages = defaultdict(set)
    counts = Counter()
    for license, package in zip(documents["license"], documents["package"], strict=True):
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

    folders = {source: source[4:] for source in args.sources if source.startswith("dir:")}
    arguments = {k: v for k, v in vars(args).items() if k not in ("output_dir", "num_proc")}
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
    with atomic_directory(args.output_dir) as tmp:
        manifest = build_corpus(args, tmp, validation_sets)
        documents = load_from_disk(str(tmp / "documents"))
        blocks = load_from_disk(str(tmp / "blocks"))["train"]
        plot_corpus_lengths(documents["num_tokens"], blocks, args.seq_len, tmp / "plots" / "lengths.png")
        plot_dropped(manifest, tmp / "plots" / "dropped.png")
        write_record(tmp, record)
    return manifest
