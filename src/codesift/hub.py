"""Stage 07: export filtered datasets and checkpoints in a Hub repo's layout, with cards that say how
each was made; push them (or checkpoints during training, to revision branches); load them back.

An export is a folder laid out exactly as the Hub repo will be: a dataset has `data/*.parquet`, a
README.md card whose YAML names the data files (`configs`), and `recipe/` (the recipe files that
made it); a model has its config, weights and tokenizer, a card and `recipe/`. `load_dataset(folder)`
and `from_pretrained(folder)` read an export as they read the Hub repo, which is also the offline
path. The token comes from the usual Hugging Face login or HF_TOKEN and is only ever handed to
`HfApi`: nothing here prints, logs or writes it.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from transformers import TrainerCallback

from .selection import SCORE_STRATEGIES

logger = logging.getLogger(__name__)

MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
# SPDX ids of the corpus' licenses -> the Hub's license ids (others: `other` with the list in the card)
HUB_LICENSES = {
    "MIT": "mit",
    "Apache-2.0": "apache-2.0",
    "BSD-3-Clause": "bsd-3-clause",
    "BSD-2-Clause": "bsd-2-clause",
    "PSF-2.0": "other",
    "MPL-2.0": "mpl-2.0",
    "ISC": "isc",
}
ASSUMED = [
    "the probe step (one AdamW step on one candidate block, from the checkpoint's own moments, next "
    "learning rate, betas, weight decay and gradient clipping) is MATES's; the paper's exact probe "
    "settings are not available to us",
    "the validation loss is the token-weighted mean over reference completions (prompts masked)",
    "the task list (HumanEval, MBPP, HumanEval-X) and at most 200 problems per task",
    "each task is split into seeded `select` (scores data) and `report` (judges the model) halves; "
    "the paper's protocol may use whole tasks",
]


class HubError(ValueError):
    """An export or push input that cannot work; raised before anything is uploaded."""


def kit_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("codesift")
    except PackageNotFoundError:
        return "unknown"


def templates_dir() -> Path:
    from .utils import project_root

    return project_root(Path(__file__).parent) / "hub_cards"


def check_repo_id(repo_id: str | None) -> str:
    """`namespace/name` as the Hub accepts it; anything else is refused before any request."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not repo_id or "/" not in repo_id:
        raise HubError(f"repo id must be '<namespace>/<name>', got {repo_id!r}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise HubError(f"invalid repo id {repo_id!r}: {error}") from None
    return repo_id


# ----------------------------------------------------------------------------------------------
# Facts the cards are made of, read from the stages' own outputs
# ----------------------------------------------------------------------------------------------


@dataclass
class ExportSources:
    """Where an export's pieces are: a selection (stage 04), optionally a model, and the stage
    outputs and recipe folder that say how they were made."""

    selection_dir: Path
    corpus_dir: Path
    validation_sets: Path
    recipe_dir: Path
    model_dir: Path | None = None
    results_json: Path | None = None
    arm: str | None = None


def read_json_file(path: Path, what: str) -> dict:
    if not Path(path).is_file():
        raise HubError(f"{what} not found at {path}")
    return json.loads(Path(path).read_text())


def license_metadata(manifest: dict) -> tuple[dict, str]:
    """(card YAML fields, a sentence) for the licenses of the corpus documents."""
    licenses = {name: info["documents"] for name, info in manifest.get("licenses", {}).items()}
    if not licenses:
        raise HubError("the corpus manifest lists no licenses; a card must name the sources' licenses")
    described = ", ".join(f"{name} ({count} documents)" for name, count in sorted(licenses.items()))
    hub_ids = {HUB_LICENSES.get(name, "other") for name in licenses}
    if len(hub_ids) == 1 and hub_ids != {"other"}:
        return {"license": hub_ids.pop()}, described
    return {
        "license": "other",
        "license_name": "mixed-source-licenses",
    }, described + " (see each row's documents)"


def corpus_description(manifest: dict) -> str:
    docs, tokens = manifest["documents"], manifest["tokens"]
    sources = ", ".join(f"{k}: {v}" for k, v in manifest.get("documents_by_source", {}).items())
    return (
        f"{docs['documents_kept']:,} of {docs['documents_read']:,} documents kept after filtering "
        f"({sources}; dropped: "
        + ", ".join(f"{k} {v['documents']}" for k, v in docs.get("dropped", {}).items())
        + f"), {tokens['tokens_in_blocks']:,} tokens in {tokens['blocks']:,} blocks of {tokens['seq_len']}"
    )


def validation_description(metadata: dict, scoring: dict) -> str:
    tasks = metadata["tasks"]
    parts = "; ".join(
        f"{t}: {tasks[t]['select']} select / {tasks[t]['report']} report of {tasks[t]['sampled']}"
        for t in scoring.get("tasks", tasks)
        if t in tasks
    )
    return (
        f"the `{scoring.get('part') or 'whole'}` part of {', '.join(scoring.get('tasks', list(tasks)))} "
        f"(seed {metadata['seed']}; {parts})"
    )


def selection_description(selection: dict) -> str:
    strategy = selection["strategy"]
    text = f"`{strategy}`, keep {selection['fraction']:.0%}, seed {selection['seed']}"
    if strategy in SCORE_STRATEGIES:
        tasks = selection.get("tasks") or ["all tasks"]
        text += f", ranked by {'the ' + selection.get('aggregate', '') + ' of ' if len(tasks) > 1 else ''}"
        text += f"influence on {', '.join(tasks)}"
    if strategy == "gumbel_top_k":
        text += f", Gumbel temperature {selection['temperature']} on z-scores"
    if strategy == "threshold":
        text += f", threshold {selection['threshold']}"
    if strategy == "perplexity":
        text += f", {selection.get('perplexity_band')} band of the candidates' own loss"
    return text


def results_row(results_json: Path | None, arm: str | None) -> str:
    """The results table's header and this arm's row (with random's for comparison), or ''."""
    if not results_json or not Path(results_json).is_file() or not arm:
        return ""
    lines = Path(results_json).with_suffix(".md").read_text().splitlines()
    table = [line for line in lines if line.startswith("|")]
    if len(table) < 3:
        return ""
    keep = [row for row in table[2:] if row.split("|")[1].strip() in (arm, "random")]
    return "\n".join(table[:2] + keep)


def recipe_files(recipe_dir: Path) -> list[Path]:
    files = sorted(Path(recipe_dir).glob("*.yaml"))
    if not files:
        raise HubError(f"no recipe files in {recipe_dir}; a card must carry the recipe that made it")
    return files


def gather_facts(sources: ExportSources) -> dict:
    """Everything a card says, read from the stage outputs (errors name the missing file)."""
    selection = read_json_file(sources.selection_dir / "selection.json", "selection report (stage 04)")
    scoring = (
        read_json_file(Path(selection["scores"]) / "scoring.json", "scoring.json of the scores")
        if selection.get("scores")
        else {}
    )
    manifest = read_json_file(sources.corpus_dir / "manifest.json", "corpus manifest (stage 01)")
    metadata = read_json_file(
        sources.validation_sets / "metadata.json", "validation sets metadata (stage 01)"
    )
    license_yaml, license_text = license_metadata(manifest)
    assumed = list(ASSUMED)
    if selection["strategy"] == "gumbel_top_k":
        assumed.append(f"the Gumbel-top-k temperature ({selection['temperature']}, on z-scored values)")
    return {
        "selection": selection,
        "scoring": scoring,
        "manifest": manifest,
        "license_yaml": license_yaml,
        "license_description": license_text,
        "corpus_description": corpus_description(manifest),
        "validation_description": validation_description(metadata, scoring),
        "selection_description": selection_description(selection),
        "method": scoring.get("method", "none (baseline)"),
        "step": scoring.get("step", "-"),
        "checkpoint": scoring.get("checkpoint", "-"),
        "seq_len": manifest["tokens"]["seq_len"],
        "tokenizer_description": f"{manifest['tokenizer']['name_or_path']}, vocabulary {manifest['tokenizer']['vocab_size']:,}",
        "results_row": results_row(sources.results_json, sources.arm),
        "assumed": assumed,
        "versions": ", ".join(f"{k} {v}" for k, v in manifest.get("versions", {}).items()),
        "kit_version": kit_version(),
    }


# ----------------------------------------------------------------------------------------------
# Cards
# ----------------------------------------------------------------------------------------------


def require_fields(fields: dict, names: list[str], card: str) -> None:
    empty = [name for name in names if fields.get(name) in (None, "", [], {})]
    if empty:
        raise HubError(f"the {card} card would have empty field(s) {empty}; nothing was exported")


def size_category(n: int) -> str:
    for bound, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < bound:
            return label
    return "n>1M"


def dataset_card(facts: dict, repo_id: str, recipe_yaml: str):
    """The filtered dataset's card (huggingface_hub DatasetCard from hub_cards/dataset_card.md)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    selection = facts["selection"]
    fields = {
        "repo_id": repo_id,
        "pretty_name": f"{repo_id.split('/')[-1]}: {selection['name']} selection",
        "summary": (
            f"Training blocks of code kept by codesift's `{selection['name']}` selection: "
            f"{selection['kept_blocks']:,} of {selection['candidates_total']:,} candidate blocks."
        ),
        "kept_blocks": f"{selection['kept_blocks']:,}",
        "candidates_total": f"{selection['candidates_total']:,}",
        "kept_tokens": f"{selection['kept_tokens']:,}",
        "recipe_yaml": recipe_yaml,
        **{k: facts[k] for k in facts if isinstance(facts[k], str | int | list) and k != "license_yaml"},
    }
    require_fields(
        fields,
        [
            "license_description",
            "corpus_description",
            "validation_description",
            "selection_description",
            "method",
            "kept_tokens",
            "recipe_yaml",
            "kit_version",
            "assumed",
        ],  # fmt: skip
        "dataset",
    )
    data = DatasetCardData(
        **facts["license_yaml"],
        language=["code"],
        pretty_name=fields["pretty_name"],
        task_categories=["text-generation"],
        size_categories=[size_category(selection["kept_blocks"])],
        tags=["codesift", "code", "pretraining", "data-selection", "influence", selection["strategy"]],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "data/*.parquet"}]}],
    )
    return DatasetCard.from_template(data, template_path=str(templates_dir() / "dataset_card.md"), **fields)


def evaluation_table(metrics: dict) -> str:
    rows = [(k, v) for k, v in metrics.items() if k.startswith(("loss/", "pass@")) and isinstance(v, float)]
    if not rows:
        return "Not evaluated."
    lines = ["| measure | task / part | value |", "|---|---|---|"]
    for key, value in rows:
        measure, _, where = key.partition("/")
        lines.append(f"| {'completion loss' if measure == 'loss' else measure} | {where} | {value:.4f} |")
    return "\n".join(lines)


def training_description(state: dict, metrics: dict) -> str:
    text = f"{state.get('global_step')} optimizer steps in all"
    if isinstance(metrics.get("tokens_trained"), int):
        text += f"; the continued part: {metrics['tokens_trained']:,} tokens"
    return text


def model_card(facts: dict, repo_id: str, model_dir: Path, recipe_yaml: str, base_model: str | None):
    """The checkpoint's card (huggingface_hub ModelCard from hub_cards/model_card.md)."""
    from huggingface_hub import ModelCard, ModelCardData
    from transformers import AutoConfig

    from .modeling import count_parameters

    config = AutoConfig.from_pretrained(str(model_dir))
    state = read_json_file(model_dir / "trainer_state.json", "trainer_state.json of the model")
    metrics_file = model_dir.parent / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    selection = facts["selection"]
    fields = {
        "repo_id": repo_id,
        "pretty_name": repo_id.split("/")[-1],
        "summary": f"A Llama-style code model continued on the `{selection['name']}` selection of codesift.",
        "model_description": (
            f"Llama, {count_parameters(config):,} parameters ({config.num_hidden_layers} layers, hidden "
            f"{config.hidden_size}, context {config.max_position_embeddings}, vocabulary {config.vocab_size})"
        ),
        "start_description": (
            f"continued from `{facts['checkpoint']}` (step {facts['step']}): its weights, AdamW moments and "
            "place in the learning-rate schedule" + (f"; published as `{base_model}`" if base_model else "")
        ),
        "data_description": f"{selection['kept_blocks']:,} blocks ({selection['kept_tokens']:,} tokens), "
        + facts["selection_description"],
        "training_description": training_description(state, metrics),
        "evaluation_table": evaluation_table(metrics),
        "recipe_yaml": recipe_yaml,
        **{k: facts[k] for k in facts if isinstance(facts[k], str | int | list) and k != "license_yaml"},
    }
    require_fields(
        fields,
        [
            "license_description",
            "model_description",
            "start_description",
            "data_description",
            "validation_description",
            "recipe_yaml",
            "kit_version",
            "assumed",
        ],  # fmt: skip
        "model",
    )
    extra = {"base_model": base_model, "base_model_relation": "finetune"} if base_model else {}
    data = ModelCardData(
        **facts["license_yaml"],
        language=["code"],
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=["codesift", "code", "llama", "pretraining", "data-selection", "influence"],
        **extra,
    )
    return ModelCard.from_template(data, template_path=str(templates_dir() / "model_card.md"), **fields)


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


def export_dataset(sources: ExportSources, export_dir, repo_id: str) -> Path:
    """The filtered dataset as a Hub dataset repo folder: data/*.parquet, README.md, recipe/."""
    from .utils import atomic_directory

    check_repo_id(repo_id)
    parquet = sorted((sources.selection_dir / "data").glob("*.parquet"))
    if not parquet:
        raise HubError(f"no data/*.parquet in {sources.selection_dir}: run scripts/filter_data.py first")
    facts = gather_facts(sources)
    with atomic_directory(export_dir) as tmp:
        _copy_recipe(sources.recipe_dir, tmp / "recipe")
        # the selection's exact parameters (an experiment arm's are not filter.yaml's)
        parameters = {k: v for k, v in facts["selection"].items() if k not in ("packages", "sources")}
        card = dataset_card(facts, repo_id, yaml.safe_dump(parameters, sort_keys=False).strip())
        (tmp / "data").mkdir()
        for path in parquet:
            shutil.copy(path, tmp / "data" / path.name)
        card.save(tmp / "README.md")
        shutil.copy(sources.selection_dir / "selection.json", tmp / "selection.json")
    return Path(export_dir)


def copy_model_files(source: Path, target: Path) -> None:
    """The files a model repo needs (MODEL_FILES that exist), never the training state."""
    for name in MODEL_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, target / name)


def export_model(sources: ExportSources, export_dir, repo_id: str, base_model: str | None = None) -> Path:
    """A model folder as a Hub model repo: weights, config, tokenizer, README.md, recipe/. Training
    state (optimizer, training_args.bin, which can hold a hub token) is never exported."""
    from .utils import atomic_directory

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
        card = model_card(facts, repo_id, Path(model_dir), recipe_yaml, base_model)
        copy_model_files(Path(model_dir), tmp)
        card.save(tmp / "README.md")
    return Path(export_dir)


def check_export(folder, repo_type: str) -> list[str]:
    """The files an export would upload; refuses a folder missing its card or its data."""
    folder = Path(folder)
    if not (folder / "README.md").is_file():
        raise HubError(f"{folder} has no README.md card; export it with scripts/push_to_hub.py first")
    if repo_type == "dataset" and not list(folder.glob("data/*.parquet")):
        raise HubError(f"{folder} has no data/*.parquet: an export folder missing its data")
    if repo_type == "model" and not (folder / "config.json").is_file():
        raise HubError(f"{folder} has no config.json: an export folder missing its model")
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------------------------
# Push
# ----------------------------------------------------------------------------------------------


def push_folder(
    folder,
    repo_id: str,
    repo_type: str = "dataset",
    private: bool = True,
    revision: str | None = None,
    commit_message: str = "Upload with codesift",
    dry_run: bool = False,
) -> dict:
    """Create the repo (if needed) and the branch `revision` (if given), then upload the folder in
    one commit. A push of unchanged files is a no-op (the Hub client compares file hashes). With
    `dry_run`, only lists what would be uploaded. The token: the HF login or HF_TOKEN."""
    from huggingface_hub import HfApi

    check_repo_id(repo_id)
    if repo_type not in ("dataset", "model"):
        raise HubError(f"repo_type must be dataset or model, got {repo_type!r}")
    files = check_export(folder, repo_type)
    plan = {"repo_id": repo_id, "repo_type": repo_type, "revision": revision or "main", "files": files}
    if dry_run:
        return {**plan, "dry_run": True}
    api = HfApi()
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    if revision and revision != "main":
        api.create_branch(repo_id, repo_type=repo_type, branch=revision, exist_ok=True)
    commit = api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type=repo_type,
        revision=revision,
        commit_message=commit_message,
    )
    logger.info(
        "pushed %d files to %s %s@%s: %s", len(files), repo_type, repo_id, plan["revision"], commit.commit_url
    )
    return {**plan, "commit_url": commit.commit_url, "commit": commit.oid}


def load_published_dataset(name_or_path: str, split: str = "train", streaming: bool = False):
    """A published filtered dataset, from the Hub (`<org>/<name>`) or an export folder.

    An export folder is read through the parquet builder with its files named: `load_dataset(folder)`
    caches a folder's dataset under the folder's NAME, so two exports both called `dataset/` would
    share (stale) features in streaming mode (seen with datasets 5.2)."""
    from datasets import load_dataset

    folder = Path(name_or_path)
    if not folder.is_dir():
        return load_dataset(name_or_path, split=split, streaming=streaming)
    files = sorted(str(p) for p in folder.glob("data/*.parquet"))
    if not files:
        raise HubError(f"{folder} has no data/*.parquet")
    return load_dataset("parquet", data_files={split: files}, split=split, streaming=streaming)


# ----------------------------------------------------------------------------------------------
# Pushing checkpoints during training, to revision branches (as open-r1 does)
# ----------------------------------------------------------------------------------------------


class PushRevisionCallback(TrainerCallback):
    """On every save, push the checkpoint's model files to branch `step-<global step, 6 digits>` of
    `repo_id`, as open-r1's push-revision callback does (recipe: `callbacks: [push_to_hub_revision]`,
    `callback_kwargs: {push_to_hub_revision: {repo_id: org/name}}`). Optimizer state stays local."""

    def __init__(self, repo_id: str, private: bool = True, branch_format: str = "step-{step:06d}"):
        self.repo_id = check_repo_id(repo_id)
        self.private = private
        self.branch_format = branch_format
        self.pushed: list[str] = []

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        branch = self.branch_format.format(step=state.global_step)
        with tempfile.TemporaryDirectory() as tmp:
            copy_model_files(checkpoint, Path(tmp))
            (Path(tmp) / "README.md").write_text(
                f"---\nlibrary_name: transformers\ntags: [codesift, checkpoint]\n---\n# {self.repo_id} at step "
                f"{state.global_step}\n\nA pretraining checkpoint pushed by codesift's PushRevisionCallback "
                f"(branch `{branch}`).\n"
            )
            push_folder(
                tmp, self.repo_id, "model", self.private, branch, f"checkpoint at step {state.global_step}"
            )
        self.pushed.append(branch)


# ----------------------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------------------


def choose_arm(experiment_dir: Path, arm: str, seed: int | None) -> tuple[str, int, Path]:
    """(arm, seed, cell folder): `best` is the influence arm with the lowest mean report loss."""
    results = read_json_file(experiment_dir / "results.json", "experiment results (stage 06)")
    arguments = results["arguments"]
    if arm == "best":
        scored = [
            s.get("name") or s["strategy"]
            for s in arguments["strategies"]
            if s.get("strategy") in SCORE_STRATEGIES
        ]
        keys = [f"loss/{t}/report" for t in arguments["table_tasks"]]
        ranked = [
            (sum(results["summary"][a][k][0] for k in keys) / len(keys), a)
            for a in scored
            if a in results["summary"]
        ]
        if not ranked:
            raise HubError(f"no influence arm in {experiment_dir}/results.json to export")
        arm = min(ranked)[1]
    seed = seed if seed is not None else arguments["seeds"][0]
    cell = experiment_dir / f"seed-{seed}" / arm
    if not (cell / "metrics.json").is_file():
        raise HubError(f"arm {arm!r} at seed {seed} has no finished cell under {experiment_dir}")
    return arm, seed, cell


def run_hub_stage(args) -> dict:
    """Export the chosen selection and its model under `args.output_dir/<repo name>`;
    push them when `args.push` (after every check)."""
    experiment_dir = Path(args.experiment_dir)
    arm, cell = None, None
    if args.selection_dir is None or args.model_dir is None:
        arm, _, cell = choose_arm(experiment_dir, args.arm, args.seed)
    sources = ExportSources(
        selection_dir=Path(args.selection_dir) if args.selection_dir else cell / "selection",
        model_dir=Path(args.model_dir) if args.model_dir else cell / "model",
        corpus_dir=Path(args.corpus_dir),
        validation_sets=Path(args.validation_sets),
        recipe_dir=Path(args.recipe_dir),
        results_json=experiment_dir / "results.json",
        arm=arm,
    )
    check_repo_id(args.dataset_repo_id)
    check_repo_id(args.model_repo_id)
    # one folder per repo, named after it (datasets caches a local folder's dataset by its name)
    export_root = Path(args.output_dir)
    dataset_dir = export_dataset(
        sources, export_root / args.dataset_repo_id.split("/")[-1], args.dataset_repo_id
    )
    model_dir = export_model(
        sources, export_root / args.model_repo_id.split("/")[-1], args.model_repo_id, args.base_model
    )
    report = {"arm": arm, "dataset_export": str(dataset_dir), "model_export": str(model_dir)}
    if args.push or args.dry_run:
        report["dataset_push"] = push_folder(
            dataset_dir,
            args.dataset_repo_id,
            "dataset",
            args.private,
            args.revision,
            args.commit_message,
            args.dry_run,
        )
        report["model_push"] = push_folder(
            model_dir,
            args.model_repo_id,
            "model",
            args.private,
            args.revision,
            args.commit_message,
            args.dry_run,
        )
    return report
