import gzip
import json

import pytest

from codesift.data import task_names, task_part
from codesift.prepare.tasks import (
    TaskDataError,
    build_validation_sets,
    encode_prompt_completion,
    format_masked_example,
    load_humaneval,
    looks_like_local_path,
    split_select_report,
    tokenize_validation_split,
)


def sources(data):
    return {"mbpp": str(data / "mbpp" / "mbpp.jsonl"), "humaneval_x": str(data / "humaneval-x")}


def test_task_counts(task_data):
    tasks = [
        "humaneval",
        "mbpp",
        "humaneval_x_cpp",
        "humaneval_x_java",
        "humaneval_x_js",
        "humaneval_x_python",
    ]
    result = build_validation_sets(tasks, sources(task_data), max_problems_per_task=200, seed=0)
    counts = {name: len(rows) for name, rows in result.splits.items()}
    assert counts == {
        "humaneval": 164,
        "mbpp": 200,
        **{f"humaneval_x_{x}": 164 for x in ("cpp", "java", "js", "python")},
    }
    assert result.metadata["tasks"]["mbpp"]["available"] == 500  # the test split, task_ids 11-510
    mbpp_ids = {int(r["task_id"].split("/")[1]) for r in result.splits["mbpp"]}
    assert min(mbpp_ids) >= 11 and max(mbpp_ids) <= 510
    assert {r["language"] for r in result.splits["humaneval_x_java"]} == {"java"}
    dataset_dict = result.to_dataset_dict()
    for split in dataset_dict.values():
        assert split.column_names == ["task_id", "prompt", "completion", "test", "entry_point", "language"]


def test_mbpp_prompt_is_incoder_style(task_data):
    rows = build_validation_sets(["mbpp"], sources(task_data), max_problems_per_task=None).splits["mbpp"]
    first = next(r for r in rows if r["task_id"] == "MBPP/11")
    assert first["prompt"].startswith('"""\nWrite a python function to remove first and last occurrence')
    assert "assert remove_Occ(" in first["prompt"] and first["prompt"].endswith('"""\n')
    assert first["entry_point"] == "remove_Occ" and "\r" not in first["completion"]
    assert first["test"].count("assert") == 3


def test_sample_is_seeded_and_changes_with_seed(task_data):
    def ids(seed):
        rows = build_validation_sets(["mbpp"], sources(task_data), seed=seed).splits["mbpp"]
        return [r["task_id"] for r in rows]

    assert ids(1) == ids(1)
    assert ids(1) != ids(2)


def test_select_report_disjoint_and_deterministic():
    rows = load_humaneval()
    select, report = split_select_report(rows, 0.5, seed=3, task="humaneval")
    again = split_select_report(rows, 0.5, seed=3, task="humaneval")
    select_ids, report_ids = {r["task_id"] for r in select}, {r["task_id"] for r in report}
    assert not select_ids & report_ids
    assert select_ids | report_ids == {r["task_id"] for r in rows}
    assert len(select) == 82
    assert [r["task_id"] for r in again[0]] == [r["task_id"] for r in select]
    other = split_select_report(rows, 0.5, seed=4, task="humaneval")[0]
    assert {r["task_id"] for r in other} != select_ids


def test_paper_mode_uses_the_same_problems_for_both_parts():
    result = build_validation_sets(["humaneval"], select_fraction=0.0)
    dataset_dict = result.to_dataset_dict()
    assert list(dataset_dict) == ["humaneval"]
    select, report = (
        task_part(dataset_dict, "humaneval", "select"),
        task_part(dataset_dict, "humaneval", "report"),
    )
    assert len(select) == 164 and list(select["task_id"]) == list(report["task_id"])
    split = build_validation_sets(["humaneval"], select_fraction=0.25).to_dataset_dict()
    assert task_names(split) == ["humaneval"]
    assert len(task_part(split, "humaneval", "select")) == 41
    assert len(task_part(split, "humaneval", "report")) == 123


def test_label_masking_is_exact(small_tokenizer):
    prompt, completion = "def add(a, b):\n", "    return a + b\n"
    encoded = encode_prompt_completion(prompt, completion, small_tokenizer, max_length=128)
    n_prompt = len(small_tokenizer(prompt, add_special_tokens=False)["input_ids"])
    completion_ids = small_tokenizer(completion, add_special_tokens=False)["input_ids"]
    assert encoded["labels"][:n_prompt] == [-100] * n_prompt
    assert encoded["labels"][n_prompt:] == completion_ids == encoded["input_ids"][n_prompt:]
    assert small_tokenizer.decode(encoded["input_ids"][n_prompt:]) == completion


def test_long_prompt_is_cut_from_the_left_never_the_completion(small_tokenizer):
    prompt = "".join(f"# line {i}\n" for i in range(200))
    completion = "    return 1\n"
    encoded = encode_prompt_completion(prompt, completion, small_tokenizer, max_length=32)
    completion_ids = small_tokenizer(completion, add_special_tokens=False)["input_ids"]
    assert len(encoded["input_ids"]) == 32 and encoded["prompt_truncated"]
    assert encoded["input_ids"][-len(completion_ids) :] == completion_ids
    assert small_tokenizer.decode(encoded["input_ids"][: 32 - len(completion_ids)]).endswith("# line 199\n")


def test_completion_too_long_is_dropped_and_counted(small_tokenizer):
    from datasets import Dataset

    rows = [
        {"task_id": "short", "prompt": "x = ", "completion": "1\n"},
        {"task_id": "long", "prompt": "x = ", "completion": "[" + ", ".join(map(str, range(200))) + "]\n"},
    ]
    dataset, stats = tokenize_validation_split(Dataset.from_list(rows), small_tokenizer, max_length=32)
    assert list(dataset["task_id"]) == ["short"]
    assert stats["dropped_completion_too_long"] == 1 and stats["dropped_task_ids"] == ["long"]
    assert "dropped" in format_masked_example(rows[1], small_tokenizer, 32)


def write_jsonl(path, rows, raw_lines=()):
    with open(path, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
        for line in raw_lines:
            handle.write(line + "\n")
    return str(path)


def custom(path, **fields):
    spec = {
        "path": path,
        "language": "python",
        "prompt_field": "q",
        "completion_field": "a",
        "id_field": "id",
    }
    return {"mine": {**spec, **fields}}


def test_custom_jsonl_task(tmp_path):
    path = write_jsonl(
        tmp_path / "t.jsonl", [{"id": i, "q": f"# {i}\n", "a": f"x = {i}\n"} for i in range(5)]
    )
    result = build_validation_sets(["mine"], custom_tasks=custom(path), select_fraction=0.4)
    assert [r["task_id"] for r in result.splits["mine"]] == ["0", "1", "2", "3", "4"]
    assert len(result.splits["mine_select"]) == 2 and len(result.splits["mine_report"]) == 3


def test_custom_json_array_and_gzip(tmp_path):
    rows = [{"id": "a", "q": "p", "a": "c"}]
    (tmp_path / "t.json").write_text(json.dumps(rows))
    with gzip.open(tmp_path / "t.jsonl.gz", "wt") as handle:
        handle.write(json.dumps(rows[0]) + "\n")
    for name in ("t.json", "t.jsonl.gz"):
        result = build_validation_sets(["mine"], custom_tasks=custom(str(tmp_path / name)))
        assert result.splits["mine"][0]["completion"] == "c"


@pytest.mark.parametrize(
    "rows, raw, message",
    [
        ([{"id": 1, "q": "p"}], [], r"t\.jsonl, line 1: missing field 'a'"),
        (
            [{"id": 1, "q": "p", "a": "c"}, {"id": 2, "q": 7, "a": "c"}],
            [],
            r"line 2: field 'q' .* must be a string, got int",
        ),
        ([{"id": 1, "q": "p", "a": "   "}], [], r"line 1: field 'a' \(the completion\) is empty"),
        ([{"id": 1, "q": "p", "a": "c"}], ["{not json"], r"t\.jsonl, line 2: broken JSON"),
        (
            [{"id": 1, "q": "p", "a": "c"}, {"id": 1, "q": "p", "a": "d"}],
            [],
            r"task id '1' appears more than once",
        ),
    ],
)
def test_custom_jsonl_errors_name_file_and_row(tmp_path, rows, raw, message):
    path = write_jsonl(tmp_path / "t.jsonl", rows, raw)
    with pytest.raises(TaskDataError, match=message):
        build_validation_sets(["mine"], custom_tasks=custom(path))


def test_unknown_task_and_missing_file_are_clear(tmp_path):
    with pytest.raises(TaskDataError, match="unknown task 'humaneval_plus'"):
        build_validation_sets(["humaneval_plus"])
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        build_validation_sets(["mbpp"], {"mbpp": str(tmp_path / "nope.jsonl")})
    with pytest.raises(ValueError, match="unknown"):
        build_validation_sets(["mine"], custom_tasks={"mine": {"path": "x.jsonl", "promt_field": "q"}})


def test_hub_ids_and_paths_are_told_apart():
    assert not looks_like_local_path("google-research-datasets/mbpp")
    assert not looks_like_local_path("openai_humaneval")
    assert looks_like_local_path("../elsewhere/mbpp/mbpp.jsonl")
    assert looks_like_local_path("data/humaneval-x")  # shaped like org/name, but the folder exists here
    assert looks_like_local_path("data/mbpp.jsonl") and looks_like_local_path("/abs/folder")


def test_hub_id_goes_to_load_dataset(monkeypatch):
    """A Hub id is loaded with datasets.load_dataset (here intercepted: no network in tests)."""
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        return datasets.Dataset.from_list(
            [
                {
                    "task_id": 11,
                    "text": "Add.",
                    "code": "def f(a):\r\n    return a",
                    "test_list": ["assert f(1) == 1"],
                    "test_setup_code": "",
                    "challenge_test_list": [],
                }
            ]
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    result = build_validation_sets(["mbpp"], {"mbpp": "google-research-datasets/mbpp"})
    assert calls == [("google-research-datasets/mbpp", "full", "test")]
    assert result.splits["mbpp"][0]["completion"] == "def f(a):\n    return a"


def test_a_rerun_keeps_the_sets_unless_an_argument_or_a_task_file_changed(tmp_path, caplog):
    import logging

    from codesift.configs import ValidationSetsArguments
    from codesift.prepare.tasks import run_validation_sets_stage

    task = tmp_path / "mine.jsonl"
    task.write_text("".join(json.dumps({"q": f"# {i}\n", "a": f"x = {i}\n"}) + "\n" for i in range(6)))
    fields = dict(
        tasks=["mine"],
        custom_tasks={
            "mine": {"path": str(task), "language": "python", "prompt_field": "q", "completion_field": "a"}
        },
        select_fraction=0.5,
        output_dir=str(tmp_path / "sets"),
    )
    run_validation_sets_stage(ValidationSetsArguments(**fields))
    metadata = tmp_path / "sets" / "metadata.json"
    made = metadata.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="codesift.provenance"):
        kept = run_validation_sets_stage(ValidationSetsArguments(**fields))
    assert metadata.stat().st_mtime_ns == made and "up to date" in caplog.text
    assert len(kept.splits["mine"]) == 6 and kept.metadata["tasks"]["mine"]["select"] == 3
    for change, changed in [({"seed": 7}, "seed"), ({}, "custom_tasks.mine")]:
        if not change:  # the task file itself gains a problem
            task.write_text(task.read_text() + json.dumps({"q": "# 6\n", "a": "x = 6\n"}) + "\n")
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="codesift.provenance"):
            rebuilt = run_validation_sets_stage(ValidationSetsArguments(**{**fields, "seed": 7}))
        assert f"{changed} changed" in caplog.text and metadata.stat().st_mtime_ns != made
        made = metadata.stat().st_mtime_ns
    assert len(rebuilt.splits["mine"]) == 7


def test_names_that_would_overwrite_each_other_are_refused(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"id": i, "q": "p", "a": "c"} for i in range(4)])
    with pytest.raises(TaskDataError, match="'humaneval' has the name of a built-in task"):
        build_validation_sets(["humaneval"], custom_tasks={"humaneval": custom(path)["mine"]})
    clash = {"my": custom(path)["mine"], "my_select": custom(path)["mine"]}
    with pytest.raises(TaskDataError, match="'my_select' ends like a part split .* task 'my'"):
        build_validation_sets(["my", "my_select"], custom_tasks=clash, select_fraction=0.5)
    with pytest.raises(TaskDataError, match="more than once"):
        build_validation_sets(["humaneval", "humaneval"])


@pytest.mark.parametrize(
    "max_problems, fraction, message",
    [
        (0, 0.0, "whole number >= 1"),
        (-1, 0.0, "whole number >= 1"),
        (2.5, 0.0, "whole number >= 1"),
        (1, 0.5, "leaves a part empty"),
        (None, 1.0, r"select_fraction must be in \[0, 1\)"),
    ],
)
def test_arguments_are_checked_before_anything_is_read(max_problems, fraction, message):
    with pytest.raises(TaskDataError, match=message):
        build_validation_sets(["mbpp"], {"mbpp": "does/not/exist.jsonl"}, None, max_problems, fraction)


def test_a_task_too_small_to_split_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"id": 1, "q": "p", "a": "c"}])
    with pytest.raises(TaskDataError, match="'mine' has 1 problem.*at least 2"):
        build_validation_sets(["mine"], custom_tasks=custom(path), select_fraction=0.5)
    assert len(build_validation_sets(["mine"], custom_tasks=custom(path)).splits["mine"]) == 1  # paper mode


def test_file_errors_name_the_file_and_the_editor_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"id": 1, "q": "p", "a": "c"}\n\n\n{"id": 2, "q": "p"}\n')
    with pytest.raises(TaskDataError, match=r"t\.jsonl, line 4: missing field 'a'"):
        build_validation_sets(["mine"], custom_tasks=custom(str(path)))
    path.write_bytes(b'{"id": 1, "q": "caf\xe9", "a": "c"}\n')
    with pytest.raises(TaskDataError, match=r"t\.jsonl: not UTF-8 text \(byte 19"):
        build_validation_sets(["mine"], custom_tasks=custom(str(path)))
    path.write_text("\n\n")
    with pytest.raises(TaskDataError, match=r"'mine' has no problems: .*t\.jsonl holds no rows"):
        build_validation_sets(["mine"], custom_tasks=custom(str(path)))


def test_a_custom_task_names_its_language_and_may_join_prompt_fields(tmp_path):
    rows = [
        {"id": i, "decl": "use std::cmp;\n", "doc": f"/* {i} */\nfn f() -> i32 {{\n", "a": f"    {i}\n}}\n"}
        for i in range(3)
    ]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    spec = {"path": path, "prompt_fields": ["decl", "doc"], "completion_field": "a", "id_field": "id"}
    with pytest.raises(TaskDataError, match="needs 'path' and 'language'.*missing \\['language'\\]"):
        build_validation_sets(["mine"], custom_tasks={"mine": spec})
    built = build_validation_sets(["mine"], custom_tasks={"mine": {**spec, "language": "rust"}})
    first = built.splits["mine"][0]
    assert first["prompt"] == "use std::cmp;\n/* 0 */\nfn f() -> i32 {\n" and first["language"] == "rust"
    with pytest.raises(TaskDataError, match="prompt_fields must be a non-empty list"):
        build_validation_sets(
            ["mine"], custom_tasks={"mine": {**spec, "language": "rust", "prompt_fields": "decl"}}
        )


def test_humaneval_x_rust_prompt_keeps_its_declaration(tmp_path):
    from codesift.prepare.tasks import load_humaneval_x

    row = {"task_id": "Rust/0", "declaration": "use std::collections::HashMap;\n",
           "prompt": "/* doc */\nfn f() -> i32 {\n", "canonical_solution": "    1\n}\n", "test": ""}  # fmt: skip
    with gzip.open(tmp_path / "humaneval_rust.jsonl.gz", "wt") as handle:
        handle.write(json.dumps(row) + "\n")
    rust = load_humaneval_x(str(tmp_path), "rust")[0]
    assert rust["prompt"] == row["declaration"] + row["prompt"]
    cpp = load_humaneval_x("data/humaneval-x", "cpp")[0]  # C++ keeps its signature in the prompt already
    assert cpp["prompt"].rstrip().endswith("bool has_close_elements(vector<float> numbers, float threshold){")


def test_shipped_task_files_match_their_recorded_sha256(task_data):
    """Every data file named in a SOURCE.md is in the repository, byte for byte as recorded."""
    import hashlib
    import re

    checked = 0
    for source in sorted(task_data.glob("*/SOURCE.md")):
        for name, digest in re.findall(
            r"^\| *([\w.-]+\.(?:jsonl|json|gz)) *\|.*\| *([0-9a-f]{64}) *\|$", source.read_text(), re.M
        ):
            assert hashlib.sha256((source.parent / name).read_bytes()).hexdigest() == digest, name
            checked += 1
    assert checked == 6  # mbpp.jsonl, sanitized-mbpp.json, HumanEval-X in four languages
    assert {p.name for p in task_data.glob("*/LICENSE*")} == {"LICENSE", "LICENSE-CC-BY-4.0.txt"}


def test_tasks_that_share_problems_share_their_split_by_problem():
    """HumanEval and every HumanEval-X language pose the same 164 problems: a problem that judges
    one task (report) never chose data for another (select)."""
    from codesift.configs import ValidationSetsArguments, load_config
    from codesift.prepare.tasks import build_from_arguments, problem_family, problem_key

    args = load_config(ValidationSetsArguments, "recipes/tiny/validation_sets.yaml")
    result = build_from_arguments(args)
    keys = {
        (task, part): {problem_key(task, row) for row in result.splits[f"{task}_{part}"]}
        for task in args.tasks
        for part in ("select", "report")
    }
    related = [
        (a, b) for a in args.tasks for b in args.tasks if a != b and problem_family(a) == problem_family(b)
    ]
    assert len(related) == 5 * 4  # humaneval and four HumanEval-X languages in the tiny recipe
    for a, b in related:
        assert not keys[(a, "report")] & keys[(b, "select")], (a, b)
    assert len(keys[("humaneval", "select")]) == 82  # the family's split is HumanEval's own
    assert keys[("humaneval_x_cpp", "select")] == keys[("humaneval", "select")]
