"""Reading what the stages hand each other: blocks, validation sets, candidates, score sets and
stage 01's parquet files. Only `datasets` and `pyarrow` (imported where used), so a stage or the
report that only reads a dataset imports neither the Trainer nor a scorer, and no torch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from .errors import CodesiftError

# Imported inside the functions that use them (heavy): datasets, pyarrow.


PARTS = (
    "select",
    "report",
)  # a task's validation split halves: choose data (select), report results (report)


class DataError(CodesiftError):
    """A stage's input dataset that is missing or cannot work (wrong split, lengths, vocabulary)."""


def task_names(dataset_dict) -> list[str]:
    """The task names in a validation DatasetDict (its splits without the part suffixes)."""
    return [name for name in dataset_dict if not name.endswith(tuple(f"_{p}" for p in PARTS))]


def task_part(dataset_dict, task: str, part: str | None = None):
    """One task's `select` or `report` part; the whole task when it was not split (paper mode)."""
    if part is not None and part not in PARTS:
        raise DataError(f"part must be one of {PARTS} or None, got {part!r}")
    if part and f"{task}_{part}" in dataset_dict:
        return dataset_dict[f"{task}_{part}"]
    if task not in dataset_dict:
        raise DataError(f"no task {task!r} in the validation sets; tasks: {task_names(dataset_dict)}")
    return dataset_dict[task]


def load_blocks(name_or_path: str, split: str = "train", streaming: bool = False):
    """Blocks from a `save_to_disk` folder (Dataset or DatasetDict), a parquet folder or a Hub id;
    the last two can be streamed (an IterableDataset, for corpora larger than the disk)."""
    from datasets import DatasetDict, load_dataset, load_from_disk

    path = Path(name_or_path)
    if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file()):
        blocks = load_from_disk(str(path))
        if isinstance(blocks, DatasetDict):
            if split not in blocks:
                raise DataError(f"{path} has no split {split!r}; splits: {list(blocks)}")
            blocks = blocks[split]
        return blocks
    if path.is_dir():
        return load_dataset(str(path), split=split, streaming=streaming)
    if name_or_path.startswith((".", "/", "~")) or "outputs/" in name_or_path:
        raise DataError(f"blocks not found at {name_or_path}: run scripts/build_corpus.py first")
    return load_dataset(name_or_path, split=split, streaming=streaming)


def check_blocks(blocks, config, source: str, sample: int = 2000) -> int:
    """Blocks must have one length that fits the model's context, and ids inside its vocabulary.
    Returns the block length."""
    from datasets import IterableDataset

    if isinstance(blocks, IterableDataset):
        head = [row["input_ids"] for row in blocks.take(sample)]
    elif "input_ids" in blocks.column_names:
        head = blocks.select(range(min(sample, len(blocks))))["input_ids"]
    if not blocks.column_names or "input_ids" not in blocks.column_names:
        raise DataError(f"{source}: no input_ids column; columns: {blocks.column_names}")
    lengths = {len(ids) for ids in head}
    if len(lengths) != 1:
        raise DataError(f"{source}: blocks of several lengths {sorted(lengths)[:5]}; packed blocks have one")
    seq_len = lengths.pop()
    if seq_len > config.max_position_embeddings:
        raise DataError(
            f"{source}: blocks of {seq_len} tokens but the model's context is {config.max_position_embeddings}"
        )
    top = max(max(ids) for ids in head)
    if top >= config.vocab_size:
        raise DataError(
            f"{source}: token id {top} but the model's vocabulary has {config.vocab_size} entries "
            "(blocks made with another tokenizer?)"
        )
    return seq_len


def load_eval_datasets(path: str | None, tasks: list[str], part: str | None) -> dict:
    """{task: tokenized validation split}, so that the Trainer logs eval_<task>_loss."""
    if path is None:
        return {}
    from datasets import load_from_disk

    if not (Path(path) / "dataset_dict.json").is_file():
        raise DataError(f"tokenized validation sets not found at {path}: run scripts/build_corpus.py first")
    sets = load_from_disk(path)
    available = task_names(sets)
    missing = [t for t in tasks if t not in available]
    if missing:
        raise DataError(f"eval_tasks {missing} not in {path}; tasks there: {available}")
    return {task: task_part(sets, task, part) for task in tasks or available}


def load_candidates(path: str, split: str, max_candidates: int | None):
    """Stage 03's pool: the candidate blocks, the first `max_candidates` of them when set."""
    candidates = load_blocks(path, split)
    if max_candidates is not None:
        candidates = candidates.select(range(min(max_candidates, len(candidates))))
    return candidates


def load_scores_dataset(path: str):
    """One score set (stage 03's scores or stage 05's predictions) from its folder."""
    from datasets import load_from_disk

    if not (Path(path) / "dataset_info.json").is_file():
        raise DataError(f"no scores dataset at {path}: run scripts/compute_influence.py first")
    return load_from_disk(str(path))


def load_scores(output_dir) -> dict[tuple[int, str], object]:
    """{(step, method): scores Dataset} for every finished folder `output_dir/step-<k>/<method>`."""
    from datasets import load_from_disk

    found = {}
    for folder in sorted(Path(output_dir).glob("step-*/*")):
        if (folder / "dataset_info.json").is_file():
            found[(int(folder.parent.name.split("-")[1]), folder.name)] = load_from_disk(str(folder)).sort(
                "block_id"
            )
    return found


def parquet_rows(folder: Path, columns: list[str] | None = None, batch_size: int = 1000) -> Iterator[dict]:
    """Rows of every task's parquet files under `folder`, in rank order, streamed."""
    import pyarrow.parquet as pq

    for file in sorted(Path(folder).glob("*.parquet")):
        for batch in pq.ParquetFile(file).iter_batches(batch_size=batch_size, columns=columns):
            yield from batch.to_pylist()


def not_the_table(results_file: Path, recipe_dir: Path) -> str | None:
    """Why a results.json is not `make table`'s (None when it is): `make demo` and notebook 06
    write their own, shorter table into the same folder, and README's headline is the table's."""
    import yaml

    table = Path(recipe_dir) / "experiment_table.yaml"
    if not table.is_file():
        return None
    wanted = [
        spec.get("name") or spec["strategy"] for spec in yaml.safe_load(table.read_text())["strategies"]
    ]
    found = [
        spec.get("name") or spec["strategy"]
        for spec in json.loads(Path(results_file).read_text())["arguments"]["strategies"]
    ]
    return (
        None
        if found == wanted
        else f"is another run's table ({len(found)} arms, the table has {len(wanted)})"
    )
