"""Where stage 01's documents come from: local code (the running Python's stdlib, installed
distributions, any folder), a Hub dataset, or a folder of JSONL/parquet files.

Every source yields the same document rows (DOCUMENT_COLUMNS), so the filters, the manifest and
the cards describe any corpus the same way. Local files are listed first (paths only, cheap) and
read later by the pipeline's reader, so that a task reads only its own share.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.metadata
import logging
import os
import re
import sysconfig
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..configs import CorpusArguments
from ..errors import CodesiftError

logger = logging.getLogger(__name__)

DOCUMENT_COLUMNS = ["doc_id", "text", "path", "source", "package", "language", "license", "sha256"]
LANGUAGE_BY_EXTENSION = {
    ".py": "python",
    ".pyi": "python",
    ".c": "c",
    ".h": "c",  # or cpp: decided from the text (header_language)
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
# A .h file is C++ when it uses what C lacks; `extern "C"` guards alone do not count.
CPP_MARKERS = re.compile(
    r"^\s*(namespace\s+\w|template\s*<|class\s+\w+[^;]*\{|using\s+namespace)|std::", re.M
)
FILE_SOURCES = ("stdlib", "site-packages", "dir:")
TABLE_SOURCES = ("hub", "jsonl:", "parquet:")


class CorpusError(CodesiftError):
    """A corpus recipe or source that cannot be built."""


def language_of(path: str, text: str | None = None) -> str | None:
    language = LANGUAGE_BY_EXTENSION.get(os.path.splitext(path)[1].lower())
    if language == "c" and path.lower().endswith(".h") and text is not None and CPP_MARKERS.search(text):
        return "cpp"
    return language


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


def check_sources(sources: list[str]) -> None:
    bad = [
        s
        for s in sources
        if not (s in ("stdlib", "site-packages", "hub") or s.startswith(("dir:", "jsonl:", "parquet:")))
    ]
    if bad:
        raise CorpusError(
            f"unknown corpus source(s) {bad}; use stdlib, site-packages, dir:<folder>, jsonl:<folder>, "
            f"parquet:<folder> or hub"
        )
    if any(s.startswith(FILE_SOURCES) for s in sources) and any(s.startswith(TABLE_SOURCES) for s in sources):
        raise CorpusError(
            f"sources {sources}: local files and tables (hub, jsonl:, parquet:) go in separate corpora"
        )


# ----------------------------------------------------------------------------------------------
# Local files: which files, owned by which package, under which license
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalFile:
    """One file to read: its document id, where it is, and what owns it."""

    doc_id: str
    file: str
    path: str
    source: str
    package: str
    license: str


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
    languages: list[str], include: list[str], exclude: list[str], patterns: list[str], excluded: Counter
) -> Iterator[tuple[Path, str, str, str]]:
    """(file, path relative to site-packages, distribution, license) for installed distributions.

    Ownership comes from each distribution's RECORD, so a file is tagged with the package that
    installed it. With `patterns`, only paths matching one of them are taken (e.g. a package's C
    headers but not its Python). Files of `exclude` distributions are counted in `excluded`.
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
            if patterns and not matches(str(record), patterns):
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


def matches(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(path, pattern) for pattern in patterns)


def local_files(args: CorpusArguments, excluded: Counter) -> Iterator[LocalFile]:
    """Every local file the recipe names, in a fixed order (paths only; nothing is read)."""
    for source in args.sources:
        if source == "stdlib":
            files = stdlib_files(args.languages)
        elif source == "site-packages":
            files = site_packages_files(
                args.languages,
                args.site_packages,
                args.exclude_packages,
                args.site_packages_path_patterns,
                excluded,
            )
        elif source.startswith("dir:"):
            files = directory_files(source.removeprefix("dir:"), args.languages)
        else:
            continue
        label = source.split(":")[0]
        for file, relative, package, license in files:
            path = f"{source.removeprefix('dir:')}/{relative}" if label == "dir" else relative
            yield LocalFile(f"{label}:{path}", str(file), path, label, package, license)


# ----------------------------------------------------------------------------------------------
# Tables: a Hub dataset (or local dataset folder), JSONL or parquet files, through a column mapping
# ----------------------------------------------------------------------------------------------


def table_document(row: dict, index, source: str, name: str, mapping: dict) -> dict:
    """One table row as a document, through `mapping` (our column -> the table's)."""
    missing = [col for col in mapping.values() if col not in row]
    if missing:
        raise CorpusError(
            f"{name} row {index} has no column(s) {missing} named in hub_column_mapping; its columns: {sorted(row)}"
        )
    path = str(row[mapping["path"]]) if "path" in mapping else f"{index}"
    language = row[mapping["language"]] if "language" in mapping else language_of(path) or "unknown"
    return make_document(
        f"{source}:{name}/{index}",
        row[mapping["text"]],
        path,
        source,
        str(row[mapping["package"]]) if "package" in mapping else name,
        str(language).lower(),
        str(row[mapping["license"]]) if "license" in mapping else "unknown",
    )


MAPPED_COLUMNS = ("text", "path", "license", "language", "package")


def check_mapping(args: CorpusArguments) -> dict:
    mapping = dict(args.hub_column_mapping)
    unknown = sorted(set(mapping) - set(MAPPED_COLUMNS))
    if unknown:
        raise CorpusError(
            f"hub_column_mapping has unknown key(s) {unknown}; its keys are our columns {', '.join(MAPPED_COLUMNS)}"
        )
    if "text" not in mapping:
        raise CorpusError("hub_column_mapping must name the column that holds the text (key 'text')")
    return mapping


def hub_stream(args: CorpusArguments, rank: int, world_size: int):
    """This task's share of the Hub dataset (or local dataset folder), streamed."""
    from datasets import load_dataset
    from datasets.distributed import split_dataset_by_node

    if not args.hub_dataset:
        raise CorpusError("the 'hub' source needs hub_dataset (a Hub id or a local dataset folder)")
    stream = load_dataset(
        args.hub_dataset, args.hub_config, data_dir=args.hub_data_dir, split=args.hub_split, streaming=True
    )
    if world_size == 1:
        return stream
    if stream.num_shards >= world_size:  # each task streams its own files, none reads another's
        return stream.shard(num_shards=world_size, index=rank, contiguous=True)
    logger.warning(
        "%s has %d file(s) for %d tasks: every task reads every file and keeps every %d-th row",
        args.hub_dataset, stream.num_shards, world_size, world_size,
    )  # fmt: skip
    return split_dataset_by_node(stream, rank=rank, world_size=world_size)
