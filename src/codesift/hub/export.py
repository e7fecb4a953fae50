"""Stage 07, the exports: a filtered dataset or a model as a folder laid out exactly as its Hub repo
will be (`load_dataset(folder)` and `from_pretrained(folder)` read it as they read the repo)."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from ..utils import atomic_directory
from .cards import (
    ExportSources,
    HubError,
    check_repo_id,
    dataset_card,
    gather_facts,
    license_metadata,
    model_card,
    predictor_card,
    read_json_file,
    recipe_files,
    warmup_card,
)

MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
# ----------------------------------------------------------------------------------------------
# Export: a folder in the Hub repo's layout
# ----------------------------------------------------------------------------------------------


def _copy_recipe(recipe_dir: Path, target: Path) -> str:
    target.mkdir(parents=True, exist_ok=True)
    texts = []
    for path in recipe_files(recipe_dir):
        shutil.copy(path, target / path.name)
        texts.append(f"# --- {path.name}\n{path.read_text().strip()}")
    return "\n".join(texts)


def export_dataset(
    sources: ExportSources,
    export_dir,
    repo_id: str,
    model_repo_id: str | None = None,
    predictor_repo_id: str | None = None,
    warmup: tuple[str, str] | None = None,
) -> Path:
    """The filtered dataset as a Hub dataset repo folder: data/*.parquet, README.md, recipe/, and the
    tokenizer that decodes its blocks under tokenizer/ (the card also names the model repo that
    has it, `model_repo_id`, when there is one). `warmup`: (repo id, branch) of the published warm-up
    checkpoint, for the card's continue-pretraining snippet. LICENSES.md lists the sources' licenses
    (the card's `license_link` for a mixed `license: other`)."""
    check_repo_id(repo_id)
    parquet = sorted((sources.selection_dir / "data").glob("*.parquet"))
    if not parquet:
        raise HubError(f"no data/*.parquet in {sources.selection_dir}: run scripts/filter_data.py first")
    tokenizer = sources.corpus_dir / "tokenizer"
    if not (tokenizer / "tokenizer.json").is_file():
        raise HubError(f"no tokenizer.json in {tokenizer}: the blocks could not be decoded")
    facts = gather_facts(sources)
    with atomic_directory(export_dir) as tmp:
        _copy_recipe(sources.recipe_dir, tmp / "recipe")
        shutil.copytree(tokenizer, tmp / "tokenizer")
        # the selection's exact parameters (an experiment arm's are not filter.yaml's)
        parameters = {k: v for k, v in facts["selection"].items() if k not in ("packages", "sources")}
        card = dataset_card(
            facts,
            repo_id,
            yaml.safe_dump(parameters, sort_keys=False).strip(),
            model_repo_id,
            predictor_repo_id,
            warmup,
        )
        (tmp / "LICENSES.md").write_text(licenses_page(facts))
        (tmp / "data").mkdir()
        for path in parquet:
            shutil.copy(path, tmp / "data" / path.name)
        card.save(tmp / "README.md")
        shutil.copy(sources.selection_dir / "selection.json", tmp / "selection.json")
    return Path(export_dir)


def licenses_page(facts: dict) -> str:
    return (
        "# Licenses of the sources\n\nEvery block comes from corpus documents (`doc_ids`) under these "
        f"licenses:\n\n{facts['license_description']}\n"
    )


def copy_model_files(source: Path, target: Path) -> None:
    """The files a model repo needs (MODEL_FILES that exist), never the training state."""
    for name in MODEL_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, target / name)


def export_model(
    sources: ExportSources,
    export_dir,
    repo_id: str,
    base_model: str | None = None,
    dataset_repo_id: str | None = None,
) -> Path:
    """A model folder as a Hub model repo: weights, config, tokenizer, README.md, recipe/. Training
    state (optimizer, training_args.bin, which can hold a hub token) is never exported."""
    check_repo_id(repo_id)
    if base_model is not None:
        check_repo_id(base_model)
    model_dir = sources.model_dir
    if model_dir is None or not (Path(model_dir) / "config.json").is_file():
        raise HubError(f"no model (config.json) at {model_dir}")
    if not (Path(model_dir) / "model.safetensors").is_file():
        raise HubError(f"no model.safetensors at {model_dir}")
    facts = gather_facts(sources)
    with atomic_directory(export_dir) as tmp:
        recipe_yaml = _copy_recipe(sources.recipe_dir, tmp / "recipe")
        card = model_card(facts, repo_id, Path(model_dir), recipe_yaml, base_model, dataset_repo_id)
        copy_model_files(Path(model_dir), tmp)
        card.save(tmp / "README.md")
        (tmp / "LICENSES.md").write_text(licenses_page(facts))
    return Path(export_dir)


# What a Trainer needs to go on from a checkpoint, besides the model files; training_args.bin is
# left out on purpose (it can hold a hub token, and resuming does not read it).
TRAINING_STATE = ("optimizer.pt", "scheduler.pt", "trainer_state.json", "rng_state.pth", "schedule.json")


def export_warmup(sources: ExportSources, export_dir, repo_id: str) -> tuple[Path, Path, str]:
    """The warm-up checkpoint the arms continued from, as a model repo: `export_dir` (main: weights,
    tokenizer, card) and `export_dir@checkpoint-<step>` (the branch: the same plus the AdamW state,
    LR schedule and RNG state a Trainer resumes from). Returns (main, branch folder, branch name)."""
    check_repo_id(repo_id)
    facts = gather_facts(sources)
    checkpoint = Path(facts["checkpoint"])
    missing = [
        name
        for name in ("config.json", "model.safetensors", *TRAINING_STATE[:3])
        if not (checkpoint / name).is_file()
    ]
    if missing:
        raise HubError(
            f"the warm-up checkpoint {checkpoint} lacks {missing}: it cannot be continued from the Hub"
        )
    branch = f"checkpoint-{facts['step']}"
    branch_dir = Path(f"{export_dir}@{branch}")
    with atomic_directory(export_dir) as tmp:
        copy_model_files(checkpoint, tmp)
        warmup_card(facts, repo_id, checkpoint, branch).save(tmp / "README.md")
        (tmp / "LICENSES.md").write_text(licenses_page(facts))
    with atomic_directory(branch_dir) as tmp:
        copy_model_files(checkpoint, tmp)
        for name in TRAINING_STATE:
            if (checkpoint / name).is_file():
                shutil.copy(checkpoint / name, tmp / name)
        warmup_card(facts, repo_id, checkpoint, branch).save(tmp / "README.md")
        (tmp / "LICENSES.md").write_text(licenses_page(facts))
    return Path(export_dir), branch_dir, branch


def export_predictor(predictor_dir, corpus_dir, recipe_dir, export_dir, repo_id: str) -> Path:
    """A stage-05 predictor as a Hub model repo: its files (ridge weights or a Transformers model,
    predictor.json, the blocks' tokenizer), its plots, README.md and recipe/."""
    check_repo_id(repo_id)
    predictor_dir = Path(predictor_dir)
    meta = read_json_file(predictor_dir / "predictor" / "predictor.json", "predictor.json (stage 05)")
    manifest = read_json_file(Path(corpus_dir) / "manifest.json", "corpus manifest (stage 01)")
    with atomic_directory(export_dir) as tmp:
        recipe_yaml = _copy_recipe(Path(recipe_dir), tmp / "recipe")
        shutil.copytree(predictor_dir / "predictor", tmp, dirs_exist_ok=True)
        if (predictor_dir / "plots").is_dir():
            shutil.copytree(predictor_dir / "plots", tmp / "plots")
        predictor_card(meta, repo_id, recipe_yaml, license_metadata(manifest)[0]).save(tmp / "README.md")
    return Path(export_dir)


def check_export(folder, repo_type: str) -> list[str]:
    """The files an export would upload; refuses a folder missing its card or its data."""
    folder = Path(folder)
    if not (folder / "README.md").is_file():
        raise HubError(f"{folder} has no README.md card; export it with scripts/push_to_hub.py first")
    if repo_type == "dataset" and not list(folder.glob("data/*.parquet")):
        raise HubError(f"{folder} has no data/*.parquet: an export folder missing its data")
    if repo_type == "model" and not any(
        (folder / name).is_file() for name in ("config.json", "predictor.json")
    ):
        raise HubError(f"{folder} has no config.json or predictor.json: an export folder missing its model")
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
