"""Small helpers every stage shares: atomic output folders, JSON, seeds, the project root."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import threading
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

# Imported inside the functions that use them (heavy or optional): datasets, torch.


# Written into every folder the kit makes whole, so that a rerun knows the folder is the kit's to
# replace. A folder without it (and without a provenance record) is the user's: never removed.
KIT_MARK = ".codesift"


@contextlib.contextmanager
def atomic_directory(final_path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `final_path`; on success it replaces `final_path` whole.

    An interrupted or failed build leaves the previous output (if any) untouched and removes its
    half-written folder, so a reader never sees a mix of two runs. What `final_path` holds is
    checked first: a file, or a folder the kit did not write, is an error before any work.
    Temporary folders left by a killed run (its process gone) are removed on the way in.
    """
    final_path = Path(final_path)
    check_replaceable(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(final_path)
    tmp = final_path.with_name(f".{final_path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        with terminate_as_interrupt():
            yield tmp
        (tmp / KIT_MARK).write_text("written by codesift; a rerun may replace this folder whole\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final_path.exists():
        old = final_path.with_name(f".{final_path.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        final_path.rename(old)
    tmp.rename(final_path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def kit_folder(path: Path) -> bool:
    """A folder the kit wrote (its mark, or a provenance record from before the mark), or an empty one."""
    return (path / KIT_MARK).exists() or (path / "provenance.json").exists() or not any(path.iterdir())


def check_replaceable(final_path: Path) -> None:
    """Refuse, before any work, an output path that holds a file or a folder the kit did not write."""
    from .errors import OutputFolderError

    if final_path.is_symlink() or (final_path.exists() and not final_path.is_dir()):
        raise OutputFolderError(
            f"output path {final_path} exists and is not a folder; choose another output_dir or move it away"
        )
    if final_path.is_dir() and not kit_folder(final_path):
        some = sorted(p.name for p in final_path.iterdir())[:3]
        raise OutputFolderError(
            f"output_dir {final_path} holds files codesift did not write ({', '.join(some)}); the kit replaces "
            f"its output folder whole, so choose a new or empty folder (nothing was changed)"
        )


def remove_stale_siblings(final_path: Path) -> None:
    """Remove `.NAME.tmp-PID-*` and `.NAME.old-PID-*` folders whose process is gone (a killed run)."""
    for sibling in final_path.parent.glob(f".{final_path.name}.*-*"):
        kind, _, rest = sibling.name[len(final_path.name) + 2 :].partition("-")
        if kind not in ("tmp", "old") or not sibling.is_dir():
            continue
        pid = rest.split("-")[0]
        if not (pid.isdigit() and process_alive(int(pid))):  # no pid: made before pids were in the name
            shutil.rmtree(sibling, ignore_errors=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (what `kill` and job schedulers send) raises KeyboardInterrupt inside the block, so
    that cleanup runs as it does for Ctrl-C. Only the main thread can take signals; elsewhere this
    does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    Path(path).write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_jsonl(path: str | os.PathLike, rows: list[dict]) -> None:
    with open(path, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def process_state():
    """accelerate's PartialState, joining a torchrun / `accelerate launch` when there is one. On
    CPU it joins only when told gloo, and must not be told so in one process (a notebook where a
    Trainer already made the state)."""
    import torch
    from accelerate import PartialState

    cpu = not torch.cuda.is_available()
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return PartialState(cpu=cpu, **({"backend": "gloo"} if cpu and launched else {}))


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch so that a run can be repeated."""
    import torch  # heavy: loaded when a stage seeds, not when utils is imported

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The folder holding `recipes/` and `src/codesift`, found by walking up from `start` (or cwd).

    Notebooks live in `notebooks/` but recipes name paths relative to the project root, so a
    notebook calls `os.chdir(project_root())` first.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "recipes").is_dir() and (folder / "src" / "codesift").is_dir():
            return folder
    raise FileNotFoundError(f"no codesift project (a folder with recipes/ and src/codesift/) above {here}")


def stable_seed(seed: int, name: str) -> int:
    """A seed for one named thing (a task, a split) that does not move when other names are added."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**32)


def save_to_disk(dataset, path: str | os.PathLike) -> None:
    """`save_to_disk` without a progress bar per split (they drown the log of a many-split dict)."""
    from datasets.utils import logging as datasets_logging

    was_enabled = datasets_logging.is_progress_bar_enabled()
    datasets_logging.disable_progress_bar()
    try:
        dataset.save_to_disk(str(path))
    finally:
        if was_enabled:
            datasets_logging.enable_progress_bar()
