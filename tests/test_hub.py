"""Stage 07: exports in the Hub layout, cards, pushes to a local endpoint, revision branches, tokens."""

import json
import logging
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from datasets import Dataset, load_dataset
from helpers import ROOT, train
from hub_server import FakeHub
from transformers import AutoModelForCausalLM

from codesift.configs import SelectionArguments
from codesift.experiment import ExperimentError, choose_arm
from codesift.hub import (
    ExportSources,
    HubError,
    PushRevisionCallback,
    check_repo_id,
    dataset_card,
    export_dataset,
    export_model,
    gather_facts,
    load_published_dataset,
    push_folder,
)
from codesift.selection import run_selection_stage

TOKEN = "hf_codesiftTestToken0123456789abcdef"


@pytest.fixture(scope="module")
def sources(micro_corpus, scored_micro_run, tmp_path_factory):
    """A micro run, its pool scored, a Gumbel-top-k selection: what an export is made from."""
    run, _, scores = scored_micro_run
    root = tmp_path_factory.mktemp("hub")
    run_selection_stage(
        SelectionArguments(
            scores=str(scores),
            candidates=str(micro_corpus / "blocks"),
            documents=str(micro_corpus / "documents"),
            tasks=["humaneval"],
            output_dir=str(root / "selection"),
        )
    )
    return ExportSources(
        selection_dir=root / "selection",
        corpus_dir=micro_corpus,
        validation_sets=micro_corpus.parent / "validation_sets",
        recipe_dir=ROOT / "recipes" / "tiny",
        model_dir=run,
    )


@pytest.fixture(scope="module")
def exports(sources, tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    dataset = export_dataset(sources, root / "micro-selected", "me/micro-selected", "me/micro-model")
    model = export_model(sources, root / "micro-model", "me/micro-model", base_model="me/micro-warmup")
    return dataset, model


@pytest.fixture
def fake_hub(monkeypatch):
    from huggingface_hub import constants

    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        yield hub


def card_header(path) -> dict:
    text = path.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_exports_load_back_as_the_source_rows_and_weights(sources, exports):
    dataset_dir, model_dir = exports
    source = Dataset.from_parquet(str(sources.selection_dir / "data" / "train-00000-of-00001.parquet"))
    loaded = load_dataset(str(dataset_dir), split="train")
    assert loaded["block_id"] == source["block_id"] and loaded["input_ids"] == source["input_ids"]
    streamed = next(iter(load_published_dataset(str(dataset_dir), streaming=True)))
    assert streamed["input_ids"] == source[0]["input_ids"]
    original = AutoModelForCausalLM.from_pretrained(str(sources.model_dir)).state_dict()
    exported = AutoModelForCausalLM.from_pretrained(str(model_dir)).state_dict()
    assert original.keys() == exported.keys()
    assert all(torch.equal(original[k], exported[k]) for k in original)
    names = {p.name for p in model_dir.rglob("*")}
    assert "training_args.bin" not in names and "optimizer.pt" not in names
    assert (dataset_dir / "recipe" / "filter.yaml").is_file() and (
        model_dir / "recipe" / "pretrain.yaml"
    ).is_file()


def test_cards_carry_how_each_artifact_was_made(sources, exports):
    dataset_dir, model_dir = exports
    header = card_header(dataset_dir / "README.md")
    assert header["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/*.parquet"}]}
    ]
    assert header["task_categories"] == ["text-generation"] and "codesift" in header["tags"]
    assert header["license"]
    body = (dataset_dir / "README.md").read_text()
    selection = json.loads((sources.selection_dir / "selection.json").read_text())
    for expected in ("adam_update", "checkpoint step 4", "gumbel_top_k", f"{selection['kept_blocks']:,} of 40",
                     f"{selection['kept_tokens']:,} tokens", "assumed, following MATES", "temperature: 0.25",
                     "select / ", "codesift 0.1.0", "me/micro-selected",
                     "languages by tokens: python 100.0%"):  # fmt: skip
        assert expected in body, expected
    model_header = card_header(model_dir / "README.md")
    assert model_header["base_model"] == "me/micro-warmup"
    assert (
        model_header["library_name"] == "transformers" and model_header["pipeline_tag"] == "text-generation"
    )
    model_body = (model_dir / "README.md").read_text()
    assert "assumed, following MATES" in model_body and "# --- pretrain.yaml" in model_body
    assert "github.com/codesift" not in body + model_body  # no placeholder links
    for template in (ROOT / "src" / "codesift" / "hub" / "templates").glob(
        "*.md"
    ):  # and no recipe folder of this checkout
        assert "recipes/" not in template.read_text(), template.name


def test_the_dataset_export_decodes_its_own_blocks(sources, exports):
    from transformers import AutoTokenizer

    dataset_dir, _ = exports
    body = (dataset_dir / "README.md").read_text()
    assert (
        'allow_patterns="tokenizer/*"' in body
        and "[me/micro-model](https://huggingface.co/me/micro-model)" in body
    )
    exported = AutoTokenizer.from_pretrained(str(dataset_dir / "tokenizer"))
    original = AutoTokenizer.from_pretrained(str(sources.corpus_dir / "tokenizer"))
    block = load_published_dataset(str(dataset_dir))[0]["input_ids"]
    assert exported.decode(block) == original.decode(block) and len(exported) == len(original)


def test_bad_inputs_fail_before_any_upload(sources, exports, fake_hub, tmp_path):
    for bad in ("", "no-namespace", "a/b/c", "me/bad name", "me/" + "x" * 200):
        with pytest.raises(HubError):
            check_repo_id(bad)
    with pytest.raises(HubError, match="repo id"):
        push_folder(exports[0], "not a repo id", "dataset")
    empty = tmp_path / "empty_export"
    (empty / "data").mkdir(parents=True)
    (empty / "README.md").write_text("---\n---\n")
    with pytest.raises(HubError, match="missing its data"):
        push_folder(empty, "me/empty", "dataset")
    facts = gather_facts(sources)
    with pytest.raises(HubError, match=r"empty field\(s\) \['corpus_description'\]"):
        dataset_card({**facts, "corpus_description": ""}, "me/x", "recipe: 1")
    broken = tmp_path / "corpus"
    broken.mkdir()
    with pytest.raises(HubError, match="no tokenizer.json"):
        export_dataset(ExportSources(**{**vars(sources), "corpus_dir": broken}), tmp_path / "out", "me/x")
    shutil.copytree(sources.corpus_dir / "tokenizer", broken / "tokenizer")
    manifest = json.loads((sources.corpus_dir / "manifest.json").read_text())
    (broken / "manifest.json").write_text(json.dumps({**manifest, "licenses": {}}))
    with pytest.raises(HubError, match="licenses"):
        export_dataset(ExportSources(**{**vars(sources), "corpus_dir": broken}), tmp_path / "out", "me/x")
    assert not (tmp_path / "out").exists()
    assert fake_hub.requests == []  # nothing reached the server


def test_dry_run_lists_files_and_sends_nothing(exports, fake_hub):
    plan = push_folder(exports[0], "me/micro-selected", "dataset", dry_run=True)
    assert "README.md" in plan["files"] and "data/train-00000-of-00001.parquet" in plan["files"]
    assert fake_hub.requests == []


def test_push_arrives_whole_and_a_second_push_is_a_no_op(exports, fake_hub, caplog, capsys):
    dataset_dir, model_dir = exports
    caplog.set_level(logging.DEBUG)
    first = push_folder(dataset_dir, "me/micro-selected", "dataset", private=True)
    arrived = fake_hub.files("dataset", "me/micro-selected")
    local = {str(p.relative_to(dataset_dir)): p.read_bytes() for p in dataset_dir.rglob("*") if p.is_file()}
    assert arrived == local
    assert fake_hub.repos[("dataset", "me/micro-selected")].private
    assert fake_hub.validated and all(v["errors"] == [] for v in fake_hub.validated)  # the card's YAML passed
    push_folder(dataset_dir, "me/micro-selected", "dataset")
    commits = fake_hub.commits("dataset", "me/micro-selected")
    assert len(commits) == 1 and first["commit"] == commits[0]["oid"]  # unchanged files: no new commit
    assert fake_hub.files("dataset", "me/micro-selected") == local  # and never a duplicated file
    push_folder(model_dir, "me/micro-model", "model", revision="step-000004")
    assert "model.safetensors" in fake_hub.files("model", "me/micro-model", "step-000004")
    # the token went to the server, and nowhere else
    sent = dict(zip(fake_hub.requests, fake_hub.authorizations, strict=True))
    writes = [r for r in sent if r.startswith("POST") and "validate-yaml" not in r]
    assert writes and all(sent[r] == f"Bearer {TOKEN}" for r in writes)
    assert set(fake_hub.authorizations) <= {f"Bearer {TOKEN}", None}
    out = capsys.readouterr()
    assert TOKEN not in caplog.text and TOKEN not in out.out and TOKEN not in out.err


def test_checkpoints_go_to_revision_branches_during_training(micro_corpus, fake_hub, tmp_path):
    callback = PushRevisionCallback("me/micro-run", private=True)
    train(micro_corpus, tmp_path / "run", "--max_steps", 4, "--save_steps", 2, callbacks=[callback])
    assert callback.pushed == ["step-000002", "step-000004"] and callback.pending == []  # all waited for
    for branch in callback.pushed:
        files = fake_hub.files("model", "me/micro-run", branch)
        assert {"config.json", "model.safetensors", "README.md"} <= set(files)
        assert "optimizer.pt" not in files and "training_args.bin" not in files
    saved = (tmp_path / "run" / "checkpoint-2" / "model.safetensors").read_bytes()
    assert fake_hub.files("model", "me/micro-run", "step-000002")["model.safetensors"] == saved


def files_holding(secret: str, folders) -> list:
    """Every file under `folders` whose bytes contain `secret`."""
    return [
        p
        for folder in folders
        for p in Path(folder).rglob("*")
        if p.is_file() and secret.encode() in p.read_bytes()
    ]


def test_no_token_in_anything_written(sources, micro_corpus, fake_hub, tmp_path, caplog, capsys):
    """The token is set before training (HF_TOKEN and the Trainer's hub_token) and before exporting:
    it reaches the run's training state, and nothing that is exported, uploaded or logged."""
    caplog.set_level(logging.DEBUG)
    run = tmp_path / "run"
    train(micro_corpus, run, "--max_steps", 2, "--save_steps", 2, "--hub_token", TOKEN)
    assert files_holding(TOKEN, [run])  # the scan finds a token where one is written: training_args.bin
    with_token = ExportSources(**{**vars(sources), "model_dir": run})
    dataset = export_dataset(with_token, tmp_path / "exports" / "scan-data", "me/scan-data")
    model = export_model(with_token, tmp_path / "exports" / "scan-model", "me/scan-model")
    push_folder(dataset, "me/scan-data", "dataset")
    push_folder(model, "me/scan-model", "model")
    assert files_holding(TOKEN, [dataset, model]) == []
    for (_, _), repo in fake_hub.repos.items():
        for branch in repo.branches.values():
            assert all(TOKEN.encode() not in content for content in branch.files.values())
    out = capsys.readouterr()
    assert TOKEN not in caplog.text and TOKEN not in out.out and TOKEN not in out.err


def test_best_arm_is_the_influence_arm_with_the_lowest_report_loss(tmp_path):
    summary = {
        "random": {"loss/he/report": [3.0, None], "loss/mb/report": [3.0, None]},
        "perplexity_low": {"loss/he/report": [1.0, None], "loss/mb/report": [1.0, None]},  # a baseline
        "inf_he": {"loss/he/report": [2.5, None], "loss/mb/report": [2.9, None]},
        "inf_mean": {"loss/he/report": [2.6, None], "loss/mb/report": [2.6, None]},
    }
    arguments = {
        "strategies": [
            {"name": "random", "strategy": "random"},
            {"name": "perplexity_low", "strategy": "perplexity"},
            {"name": "inf_he", "strategy": "gumbel_top_k"},
            {"name": "inf_mean", "strategy": "top_k"},
        ],
        "table_tasks": ["he", "mb"],
        "seeds": [7],
    }
    (tmp_path / "results.json").write_text(json.dumps({"arguments": arguments, "summary": summary}))
    (tmp_path / "seed-7" / "inf_mean").mkdir(parents=True)
    (tmp_path / "seed-7" / "inf_mean" / "metrics.json").write_text("{}")
    assert choose_arm(tmp_path, "best", None) == ("inf_mean", 7, tmp_path / "seed-7" / "inf_mean")
    with pytest.raises(ExperimentError, match="no finished cell"):
        choose_arm(tmp_path, "inf_he", None)


def test_the_corpus_language_mix_is_stated_by_tokens():
    from codesift.hub.cards import language_mix

    manifest = {
        "tokens_by_language": {"python": 750, "cpp": 200, "c": 50},
        "documents_by_language": {"python": 3},
    }
    assert (
        language_mix(manifest)
        == "; languages by tokens: python 75.0%, cpp 20.0%, c 5.0% (documents: python 3)"
    )
    assert language_mix({}) == ""


def python_block(card: str, containing: str) -> str:
    """The card's python code block that contains `containing`."""
    blocks = re.findall(r"```python\n(.*?)```", card, re.S)
    found = [b for b in blocks if containing in b]
    assert found, f"no python block with {containing!r} in the card"
    return found[0]


STRANGER = """
import sys, importlib.abc
class Refuse(importlib.abc.MetaPathFinder):  # a stranger's machine: no codesift
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "codesift":
            raise ImportError("codesift is not installed here")
sys.meta_path.insert(0, Refuse())
"""


def test_a_stranger_continues_pretraining_from_the_hub_alone(sources, fake_hub, tmp_path):
    """Journey 3: the exports (warm-up with its Trainer state on a branch, dataset, model) go to the
    stand-in Hub; from an empty folder, with datasets and transformers only, the dataset card's
    snippet loads the dataset and the checkpoint by repo id and continues training 25 steps."""
    import subprocess
    import sys

    from codesift.hub import export_warmup
    from codesift.hub.cards import SIZE_BUCKETS

    model_dir = tmp_path / "arm" / "model"  # a model with its evaluation beside it, as an arm's is
    shutil.copytree(sources.model_dir, model_dir, ignore=shutil.ignore_patterns("checkpoint-*"))
    (model_dir.parent / "metrics.json").write_text(
        json.dumps({"loss/humaneval/report": 6.5, "loss/humaneval/select": 6.4})
    )
    sources = ExportSources(**{**sources.__dict__, "model_dir": model_dir})
    warmup, branch_dir, branch = export_warmup(sources, tmp_path / "out" / "warmup", "me/warmup")
    assert branch == "checkpoint-4" and (branch_dir / "optimizer.pt").is_file()
    assert not (warmup / "optimizer.pt").exists() and not list(tmp_path.glob("out/**/training_args.bin"))
    dataset = export_dataset(
        sources, tmp_path / "out" / "selected", "me/selected", "me/model", None, ("me/warmup", branch)
    )
    model = export_model(sources, tmp_path / "out" / "model", "me/model", "me/warmup", "me/selected")

    header = card_header(dataset / "README.md")
    assert header["size_categories"][0] in {label for _, label in SIZE_BUCKETS}
    assert header["source_datasets"] == ["original"]
    if header["license"] == "other":
        assert header["license_link"] == "LICENSES.md" and (dataset / "LICENSES.md").is_file()
    model_header = card_header(model / "README.md")
    assert model_header["datasets"] == ["me/selected"] and model_header["base_model"] == "me/warmup"
    result = model_header["model-index"][0]["results"][0]
    assert result["metrics"][0]["value"] == 6.5 and result["dataset"]["split"] == "report"

    for folder, repo_id, repo_type, revision in (
        (warmup, "me/warmup", "model", None),
        (branch_dir, "me/warmup", "model", branch),
        (dataset, "me/selected", "dataset", None),
        (model, "me/model", "model", None),
    ):
        push_folder(folder, repo_id, repo_type, private=False, revision=revision)
    snippet = python_block((dataset / "README.md").read_text(), "resume_from_checkpoint")
    check = (
        "\nprint('STEP', trainer.state.global_step)\n"
        "print('ADAM', int(next(iter(trainer.optimizer.state.values()))['step']))\n"
        "again = AutoModelForCausalLM.from_pretrained('me/model')\n"
        "print('MODEL', type(again).__name__, len(blocks))\n"
    )
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTHONPATH"))},
        "HF_ENDPOINT": fake_hub.endpoint,
        "HF_HOME": str(stranger / "hf_home"),
        "HF_HUB_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "0",
    }
    out = subprocess.run(
        [sys.executable, "-c", STRANGER + snippet + check],
        cwd=stranger, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "STEP 29" in out.stdout  # the warm-up's 4 steps and 25 more, on its optimizer state
    assert "ADAM 29" in out.stdout  # AdamW's own count: the moments came from the warm-up, not zeros
    assert "MODEL LlamaForCausalLM" in out.stdout
    assert "GET /api/datasets/me/selected/revision/main" in fake_hub.requests or any(
        r.startswith("GET /datasets/me/selected/resolve/") for r in fake_hub.requests
    )
