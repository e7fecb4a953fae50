"""The stage scripts as a user runs them: recipe + CLI overrides, outputs, and clear errors."""

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import ROOT, run_script

from codesift.configs import (
    CorpusArguments,
    ValidationSetsArguments,
    load_config,
    parse_args,
    stage_arguments,
    stage_of_recipe,
)


@pytest.mark.parametrize(
    "recipe", sorted((ROOT / "recipes").glob("*/*.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_every_recipe_parses(recipe):
    if recipe.parent.name == "accelerate_configs":
        config = yaml.safe_load(recipe.read_text())
        assert config["distributed_type"] in {"NO", "MULTI_CPU", "MULTI_GPU", "FSDP", "DEEPSPEED"}
        return
    # TrainingArguments refuses bf16 where there is no GPU; every other key is checked as written
    no_bf16 = ["--bf16", "false"] if recipe.stem == "pretrain" and not torch.cuda.is_available() else []
    parsed = parse_args(
        *stage_arguments(stage_of_recipe(recipe.name)), args=["--config", str(recipe), *no_bf16]
    )
    parsed = parsed if isinstance(parsed, tuple) else (parsed,)
    assert parsed[-1].output_dir.startswith(f"outputs/{recipe.parent.name}/")


@pytest.mark.parametrize("recipe", ["tiny", "codellm-1b"])
def test_every_stage_has_a_recipe(recipe):
    """Both recipes cover every stage of the kit, and each 1B stage reads what the one before wrote."""
    from codesift.configs import recipe_stems

    missing = [
        stage for stage in recipe_stems() if not (ROOT / "recipes" / recipe / f"{stage}.yaml").is_file()
    ]
    assert missing == []
    if recipe == "codellm-1b":
        scores = yaml.safe_load((ROOT / "recipes/codellm-1b/influence.yaml").read_text())
        labels = yaml.safe_load((ROOT / "recipes/codellm-1b/predictor.yaml").read_text())
        step = scores["checkpoint"][0].rsplit("-", 1)[1]
        assert labels["scores"] == f"{scores['output_dir']}/step-{step}/{scores['methods'][0]}"
        for stage in ("filter", "experiment"):
            config = yaml.safe_load((ROOT / f"recipes/codellm-1b/{stage}.yaml").read_text())
            assert config["scores"] == f"{labels['output_dir']}/predictions"


def test_cli_overrides_the_recipe():
    args = parse_args(
        ValidationSetsArguments,
        args=["--config", "recipes/tiny/validation_sets.yaml", "--tasks", "humaneval", "--seed", "5"],
    )
    assert args.tasks == ["humaneval"] and args.seed == 5 and args.max_problems_per_task == 200
    with pytest.raises(ValueError, match="no field"):
        load_config(CorpusArguments, "recipes/tiny/corpus.yaml", vocab=10)


def test_stage_01_scripts_end_to_end(tmp_path):
    sets = tmp_path / "sets"
    done = run_script(
        "build_validation_sets.py",
        "--config",
        "recipes/tiny/validation_sets.yaml",
        "--tasks",
        "humaneval",
        "--output_dir",
        sets,
    )
    assert done.returncode == 0, done.stderr
    metadata = json.loads((sets / "metadata.json").read_text())
    assert metadata["tasks"]["humaneval"]["select"] == 82 and (sets / "plots" / "task_sizes.png").is_file()

    code = tmp_path / "code"
    code.mkdir()
    for module in ("json/decoder.py", "shlex.py", "textwrap.py", "csv.py"):
        source = Path(sys.modules["os"].__file__).parent / module
        (code / module.replace("/", "_")).write_text(source.read_text())
    corpus = tmp_path / "corpus"
    done = run_script(
        "build_corpus.py",
        "--config",
        "recipes/tiny/corpus.yaml",
        "--sources",
        f"dir:{code}",
        "--validation_sets",
        sets,
        "--vocab_size",
        "500",
        "--num_candidates",
        "10",
        "--output_dir",
        corpus,
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert manifest["documents"]["documents_kept"] == 4 and manifest["tokens"]["candidate_blocks"] == 10
    for part in (
        "documents",
        "tokenizer",
        "blocks",
        "validation_tokenized",
        "plots/lengths.png",
        "plots/dropped.png",
    ):
        assert (corpus / part).exists(), part
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_bad_recipe_key_fails_before_writing(tmp_path):
    done = run_script(
        "build_validation_sets.py",
        "--config",
        "recipes/tiny/validation_sets.yaml",
        "--max_problems",
        "3",
        "--output_dir",
        tmp_path / "out",
    )
    assert done.returncode != 0 and "--max_problems" in done.stderr
    assert not (tmp_path / "out").exists()


def test_missing_validation_sets_fail_before_writing(tmp_path):
    done = run_script(
        "build_corpus.py",
        "--config",
        "recipes/tiny/corpus.yaml",
        "--validation_sets",
        tmp_path / "none",
        "--output_dir",
        tmp_path / "corpus",
    )
    assert done.returncode != 0 and "run scripts/build_validation_sets.py first" in done.stderr
    assert not (tmp_path / "corpus").exists()


def test_a_known_error_is_one_line_and_debug_shows_the_traceback(tmp_path):
    bad = ["--config", "recipes/tiny/validation_sets.yaml", "--output_dir", tmp_path / "sets",
           "--tasks", "mbpp", "--task_sources", json.dumps({"mbpp": str(tmp_path / "missing.jsonl")})]  # fmt: skip
    plain = run_script("build_validation_sets.py", *bad)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines()[-1] == (
        f"error: task file not found: {tmp_path / 'missing.jsonl'} (resolved to {tmp_path / 'missing.jsonl'}) "
        "(run with --debug for the traceback)"
    )
    debug = run_script("build_validation_sets.py", *bad, "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "FileNotFoundError" in debug.stderr
    unknown = run_script(
        "build_validation_sets.py", "--config", "recipes/tiny/validation_sets.yaml", "--taks", "x"
    )
    assert unknown.returncode != 0 and "Traceback" not in unknown.stderr and "--taks" in unknown.stderr
    assert not (tmp_path / "sets").exists()


def test_dict_keys_take_json_on_the_command_line():
    args = parse_args(
        ValidationSetsArguments,
        args=[
            "--config",
            "recipes/tiny/validation_sets.yaml",
            "--task_sources",
            '{"mbpp": "data/mbpp/mbpp.jsonl"}',
        ],
    )
    assert args.task_sources == {"mbpp": "data/mbpp/mbpp.jsonl"}
    with pytest.raises(SystemExit):
        parse_args(
            ValidationSetsArguments,
            args=["--config", "recipes/tiny/validation_sets.yaml", "--task_sources", "[1]"],
        )


def test_a_recipe_variant_needs_only_a_yaml(tmp_path):
    assert stage_of_recipe("influence_exact.yaml") == "influence"
    assert stage_of_recipe("recipes/tiny/influence_second_checkpoint.yaml") == "influence"
    assert stage_of_recipe("validation_sets.yaml") == "validation_sets"
    with pytest.raises(ValueError, match="names no stage"):
        stage_of_recipe("exact_influence.yaml")
