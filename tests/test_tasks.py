import gzip
import json

import pytest

from codesift.tasks import (
    TaskDataError,
    build_validation_sets,
    encode_prompt_completion,
    format_masked_example,
    load_humaneval,
    looks_like_local_path,
    split_select_report,
    task_names,
    task_part,
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
    return {"mine": {"path": path, "prompt_field": "q", "completion_field": "a", "id_field": "id", **fields}}


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
        ([{"id": 1, "q": "p"}], [], r"t\.jsonl, row 1: missing field 'a'"),
        (
            [{"id": 1, "q": "p", "a": "c"}, {"id": 2, "q": 7, "a": "c"}],
            [],
            r"row 2: field 'q' .* must be a string, got int",
        ),
        ([{"id": 1, "q": "p", "a": "   "}], [], r"row 1: field 'a' \(the completion\) is empty"),
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
    with pytest.raises(KeyError, match="unknown task 'humaneval_plus'"):
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
