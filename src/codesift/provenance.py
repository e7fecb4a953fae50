"""What a resumable unit was made from, so that a rerun reuses it only when nothing changed.

Every unit a rerun may skip (validation sets, the corpus, a score set and its shards, an experiment
cell) records its arguments and a stamp of each input it read. A rerun compares: equal, the unit is
kept; different, it is redone, with one log line naming what changed; never a mix of the two.

A stamp is cheap and conservative: a small file's content hash, a large file's size and mtime, a
folder's stamps of all its files. Rebuilding an input (new mtimes) therefore redoes what read it,
even when the rebuilt bytes are equal; reusing an unchanged input keeps its stamp.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from .errors import CodesiftError

logger = logging.getLogger(__name__)

RECORD = "provenance.json"
SMALL_FILE = 1 << 20  # files below 1 MiB are hashed whole; above, size and mtime stand for them


def path_stamp(path: str | os.PathLike | None) -> str | None:
    """A stamp of a file or folder that changes when it does; None for None, and the name itself for
    something that is not here (a Hub id: its content cannot be stamped offline)."""
    if path is None:
        return None
    path = Path(path)
    if not path.exists():
        return f"not local: {path}"
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and not derived(p))
    for file in files:
        digest.update(str(file.relative_to(path) if file != path else file.name).encode())
        try:
            stat = file.stat()
            digest.update(
                file.read_bytes()
                if stat.st_size < SMALL_FILE
                else f"{stat.st_size}:{stat.st_mtime_ns}".encode()
            )
        except OSError as err:
            raise CodesiftError(f"cannot read input {file}: {err.strerror}") from None
    return digest.hexdigest()[:16]


def derived(file: Path) -> bool:
    """Files a reader adds to an input folder without changing it: `datasets` writes its map/filter
    caches (cache-*.arrow) beside a dataset loaded from disk, and a record is not an input."""
    return file.name.startswith("cache-") or file.name == RECORD


def jsonable(value: Any) -> Any:
    """Arguments as plain JSON (dataclasses, paths, enums), so that records compare as written."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def make_record(arguments: Any, inputs: dict[str, str | os.PathLike | None] | None = None, **stamps) -> dict:
    """{"arguments": ..., "inputs": {name: stamp}}: `inputs` are paths to stamp, `stamps` are
    stamps already made (e.g. package versions)."""
    stamped = {name: path_stamp(path) for name, path in (inputs or {}).items()}
    return jsonable({"arguments": arguments, "inputs": {**stamped, **stamps}})


def changes(saved: dict | None, current: dict) -> list[str]:
    """The names of the arguments and inputs that differ ("nothing recorded" when there is no record)."""
    if saved is None:
        return ["nothing recorded"]
    names = []
    for part in ("arguments", "inputs"):
        old, new = saved.get(part, {}), current.get(part, {})
        names += [f"{key}" for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    return names


def read_record(folder: str | os.PathLike) -> dict | None:
    file = Path(folder) / RECORD
    return json.loads(file.read_text()) if file.is_file() else None


def write_record(folder: str | os.PathLike, record: dict) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def up_to_date(folder: str | os.PathLike, record: dict, what: str, done_marker: str | None = None) -> bool:
    """True when `folder` holds a finished unit (its `done_marker` file, if named) made from
    `record`; otherwise logs why it will be redone (unless it was never made) and returns False."""
    folder = Path(folder)
    finished = folder.is_dir() and (done_marker is None or (folder / done_marker).exists())
    if not finished:
        return False
    changed = changes(read_record(folder), record)
    if not changed:
        logger.info("%s is up to date in %s; kept", what, folder)
        return True
    logger.info("redoing %s in %s: %s changed since it was made", what, folder, ", ".join(changed))
    return False
