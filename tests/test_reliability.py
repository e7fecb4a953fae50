"""Bad inputs and reruns as a user meets them: never a user's file deleted, never a stale or partial
corpus kept without a word, a one-line error for every mistake the kit can name, and a traceback for
everything else. docs/errors.md lists each case and what it gets."""

import gzip
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, run_script, train

from codesift.cli import report_errors
from codesift.configs import CorpusArguments, ValidationSetsArguments, parse_args
from codesift.errors import CodesiftError, ConfigError, OutputFolderError
from codesift.prepare.corpus import collect_documents, run_corpus_stage
from codesift.prepare.sources import CorpusError
from codesift.prepare.tasks import TaskDataError, build_validation_sets, read_records
from codesift.provenance import path_stamp
from codesift.training import PretrainError
from codesift.utils import KIT_MARK, atomic_directory


def one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and line.endswith("(run with --debug for the traceback)")
    return line


# ----------------------------------------------------------------------------------------------
# Output folders: the kit replaces only what it wrote
# ----------------------------------------------------------------------------------------------


def test_an_output_folder_the_kit_did_not_write_is_refused_and_kept(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    with pytest.raises(OutputFolderError, match="holds files codesift did not write"):
        with atomic_directory(mine) as tmp:
            (tmp / "x").write_text("never")
    assert (mine / "notes.txt").read_text() == "my notes" and sorted(os.listdir(tmp_path)) == ["mine"]
    done = run_script(
        "build_validation_sets.py", "--config", "recipes/tiny/validation_sets.yaml", "--output_dir", mine
    )
    assert "notes.txt" in one_error_line(done)
    assert sorted(os.listdir(mine)) == ["notes.txt"] and sorted(os.listdir(tmp_path)) == ["mine"]


def test_an_output_path_that_is_a_file_is_refused_and_not_renamed(tmp_path):
    target = tmp_path / "results"
    target.write_text("a file of mine")
    with pytest.raises(OutputFolderError, match="is not a folder"):
        with atomic_directory(target):
            pass
    assert target.read_text() == "a file of mine" and sorted(os.listdir(tmp_path)) == ["results"]


def test_the_kits_own_folder_is_replaced_whole(tmp_path):
    out = tmp_path / "out"
    with atomic_directory(out) as tmp:
        (tmp / "first.txt").write_text("1")
    assert (out / KIT_MARK).is_file()
    with atomic_directory(out) as tmp:
        (tmp / "second.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == [KIT_MARK, "second.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_directory(empty) as tmp:  # an empty folder is no one's
        (tmp / "x").write_text("x")
    assert (empty / "x").is_file()


def test_a_killed_runs_temporary_folders_are_removed_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
        dead_pid = int(dead.stdout)
        left = [
            tmp_path / f".out.tmp-{dead_pid}-0123abcd",  # a run killed while writing
            tmp_path / f".out.old-{dead_pid}-0123abcd",  # killed between the two renames
            tmp_path / ".out.tmp-89abcdef",  # from before pids were in the name
        ]
        live = tmp_path / f".out.tmp-{sleeper.pid}-feedbeef"  # another run, still writing
        for folder in [*left, live]:
            folder.mkdir()
        with atomic_directory(out) as tmp:
            (tmp / "x").write_text("x")
        assert not any(folder.exists() for folder in left) and live.is_dir()
    finally:
        sleeper.kill()


# ----------------------------------------------------------------------------------------------
# Table sources: a bad row is an error or a counted drop; the files are part of the input stamp
# ----------------------------------------------------------------------------------------------


def code_rows() -> list[dict]:
    import csv
    import inspect
    import shlex

    return [{"content": inspect.getsource(m), "where": f"{m.__name__}.py"} for m in (csv, shlex)]


def write_jsonl(folder: Path, lines: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "part.jsonl").write_text("".join(line + "\n" for line in lines))
    return folder


def table_args(folder, kind="jsonl", **overrides) -> CorpusArguments:
    mapping = {"text": "content", "path": "where"}
    return CorpusArguments(sources=[f"{kind}:{folder}"], validation_sets=None, hub_column_mapping=mapping,
                           vocab_size=300, seq_len=64, num_candidates=2, **overrides)  # fmt: skip


def test_a_broken_jsonl_line_names_file_and_line_or_is_a_counted_drop(tmp_path):
    first, second = (json.dumps(row) for row in code_rows())
    folder = write_jsonl(tmp_path / "rows", [first, '{"content": "cut off', second])
    with pytest.raises(CorpusError, match=r"part\.jsonl, line 2: broken JSON"):
        collect_documents(table_args(folder), None, tmp_path / "work")
    documents, stats = collect_documents(table_args(folder, skip_bad_rows=True), None, tmp_path / "work2")
    summary = stats.summary()
    assert len(documents) == 2 and summary["documents_read"] == 3
    assert summary["dropped"]["bad_row"]["documents"] == 1
    assert "line 2" in next(r for r in stats.dropped_docs if r["reason"] == "bad_row")["detail"]


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_a_row_without_text_is_not_skipped_without_a_word(tmp_path, kind):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [*code_rows(), {"content": "", "where": "empty.py"}]
    folder = tmp_path / kind
    if kind == "jsonl":
        write_jsonl(folder, [json.dumps(row) for row in rows])
    else:
        folder.mkdir()
        pq.write_table(pa.Table.from_pylist(rows), folder / "part.parquet")
    where = "line 3" if kind == "jsonl" else "row 3"
    with pytest.raises(CorpusError, match=f"{where}: empty or non-text 'content'"):
        collect_documents(table_args(folder, kind), None, tmp_path / "work")
    _, stats = collect_documents(table_args(folder, kind, skip_bad_rows=True), None, tmp_path / "work2")
    assert stats.summary()["documents_read"] == 3 and stats.summary()["dropped"]["bad_row"]["documents"] == 1


def test_a_clear_error_leaves_no_work_folder_behind(tmp_path):
    folder = write_jsonl(tmp_path / "rows", [json.dumps(code_rows()[0]), "not json"])
    args = table_args(folder, output_dir=str(tmp_path / "corpus"))
    with pytest.raises(CorpusError, match="line 2"):
        run_corpus_stage(args)
    assert sorted(os.listdir(tmp_path)) == ["rows"]  # no .corpus.work, no .corpus.tmp-*


def test_a_changed_jsonl_file_redoes_the_corpus(tmp_path, caplog):
    rows = code_rows()
    folder = write_jsonl(tmp_path / "rows", [json.dumps(row) for row in rows])
    args = table_args(folder, output_dir=str(tmp_path / "corpus"))
    assert run_corpus_stage(args)["documents"]["documents_read"] == 2
    write_jsonl(folder, [json.dumps(rows[0])])  # the file shrinks
    with caplog.at_level(logging.INFO, logger="codesift.provenance"):
        manifest = run_corpus_stage(args)
    assert "up to date" not in caplog.text and manifest["documents"]["documents_read"] == 1


# ----------------------------------------------------------------------------------------------
# A finished run rerun with other arguments
# ----------------------------------------------------------------------------------------------


def test_a_finished_pretraining_run_rerun_with_other_arguments_is_refused(micro_corpus, tmp_path):
    out = tmp_path / "run"
    first = train(micro_corpus, out, "--max_steps", 3, "--save_steps", 3)
    with pytest.raises(PretrainError, match="learning_rate.*seed|seed.*learning_rate") as refused:
        train(micro_corpus, out, "--max_steps", 3, "--save_steps", 3, "--learning_rate", 5e-3, "--seed", 7)
    assert "--start_over true" in str(refused.value)
    again = train(micro_corpus, out, "--max_steps", 3, "--save_steps", 3, "--learning_rate", 5e-3,
                  "--seed", 7, "--start_over", "true")  # fmt: skip
    assert again["eval_humaneval_loss"] != first["eval_humaneval_loss"]  # trained anew, not reused
    same = train(micro_corpus, out, "--max_steps", 3, "--save_steps", 3, "--learning_rate", 5e-3, "--seed", 7)
    assert same["eval_humaneval_loss"] == again["eval_humaneval_loss"]  # the same arguments: kept


# ----------------------------------------------------------------------------------------------
# Keys and files the kit would otherwise ignore or trip on
# ----------------------------------------------------------------------------------------------


def test_a_typo_in_task_sources_is_an_error_not_a_hub_download():
    with pytest.raises(TaskDataError, match=r"task_sources has unknown key\(s\) \['mbp'\]"):
        build_validation_sets(["mbpp"], task_sources={"mbp": "data/mbpp/mbpp.jsonl"})


def test_a_typo_in_the_column_mapping_is_an_error(tmp_path):
    folder = write_jsonl(tmp_path / "rows", [json.dumps(code_rows()[0])])
    args = table_args(folder)
    args.hub_column_mapping = {"text": "content", "paht": "where"}
    with pytest.raises(CorpusError, match=r"hub_column_mapping has unknown key\(s\) \['paht'\]"):
        collect_documents(args, None, tmp_path / "work")


def test_damaged_gzip_task_files_are_one_line_errors(tmp_path):
    whole = gzip.compress(
        b'{"task_id": "t/0", "prompt": "def f():\\n", "canonical_solution": "    return 1\\n"}\n' * 50
    )
    (tmp_path / "cut.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "plain.jsonl.gz").write_text('{"a": 1}\n')
    with pytest.raises(TaskDataError, match="cut short or damaged"):
        read_records(tmp_path / "cut.jsonl.gz")
    with pytest.raises(TaskDataError, match="not a gzip file"):
        read_records(tmp_path / "plain.jsonl.gz")


def test_an_unreadable_input_is_named(tmp_path, monkeypatch):
    file = tmp_path / "tasks.jsonl"
    file.write_text("{}\n")

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)  # as root, chmod 000 would still read
    with pytest.raises(CodesiftError, match=f"cannot read input {file}: Permission denied"):
        path_stamp(file)


def test_a_yaml_syntax_error_names_file_line_and_column(tmp_path):
    recipe = tmp_path / "validation_sets.yaml"
    recipe.write_text("tasks:\n  - humaneval\nseed: [42\noutput_dir: x\n")
    with pytest.raises(ConfigError, match=r"validation_sets\.yaml, line \d+, column \d+: not valid YAML"):
        parse_args(ValidationSetsArguments, args=["--config", str(recipe)])
    line = one_error_line(run_script("build_validation_sets.py", "--config", recipe))
    assert str(recipe) in line and "line" in line and "column" in line


def test_only_the_kits_errors_are_one_line_and_a_bug_keeps_its_traceback(capsys):
    with pytest.raises(SystemExit) as stopped, report_errors([]):
        raise TaskDataError("tasks.jsonl, line 3: no prompt")
    assert stopped.value.code == 1 and "error: tasks.jsonl, line 3: no prompt" in capsys.readouterr().err
    with pytest.raises(KeyError), report_errors([]):  # a kit bug: not dressed up as the user's mistake
        {}["missing"]
    with pytest.raises(ValueError), report_errors([]):
        int("x")


@pytest.mark.parametrize(
    "how",
    [["--dry_run"], ["--dry_run", "true"], ["--dry_run", "1"], "yaml"],
    ids=["bare", "true", "1", "yaml"],
)
def test_a_dry_run_is_read_from_the_parsed_arguments(tmp_path, how):
    recipe = ROOT / "recipes/codellm-1b/pretrain.yaml"
    if how == "yaml":
        copy = tmp_path / "pretrain.yaml"
        copy.write_text(recipe.read_text() + "\ndry_run: true\n")
        recipe, how = copy, []
    done = run_script("pretrain.py", "--config", recipe, *how, "--dry_run_vocab_size", 49152)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "64 GPU" in done.stdout or "64" in done.stdout
