"""Stage 07, the cards: facts read from the stages' own outputs (licenses, corpus, tasks, scores,
selection, results, recipe), rendered into the dataset and model cards from the templates in `codesift/hub/templates/`."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ..errors import CodesiftError
from ..modeling import count_parameters
from ..selection import SCORE_STRATEGIES

# Imported inside the functions that use them (heavy or optional): huggingface_hub, transformers.

logger = logging.getLogger(__name__)

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


class HubError(CodesiftError):
    """An export or push input that cannot work; raised before anything is uploaded."""


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


def kit_version() -> str:

    try:
        return version("codesift")
    except PackageNotFoundError:
        return "unknown"


def templates_dir() -> Path:
    """The card templates ship inside the package (as TRL's model-card template does)."""
    return Path(__file__).parent / "templates"


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
        + language_mix(manifest)
    )


def language_mix(manifest: dict) -> str:
    """'; languages by tokens: python 85%, cpp 11%, ...' from the manifest (older ones have none)."""
    by_tokens = manifest.get("tokens_by_language") or {}
    total = sum(by_tokens.values())
    if not total:
        return ""
    parts = [
        f"{lang} {count / total:.1%}" for lang, count in sorted(by_tokens.items(), key=lambda kv: -kv[1])
    ]
    documents = manifest.get("documents_by_language", {})
    return (
        "; languages by tokens: "
        + ", ".join(parts)
        + " (documents: "
        + ", ".join(f"{k} {v}" for k, v in documents.items())
        + ")"
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


def predictor_description(predictor: dict | None) -> str:
    """'' for oracle scores; for stage 05's predictions, what predicted them and how well."""
    if not predictor:
        return ""
    labels = predictor["labels"]
    agreement = ", ".join(f"{task} {stats['spearman']:.2f}" for task, stats in predictor["heldout"].items())
    return (
        f"{predictor['description']}, trained on `{labels['method']}` scores of {labels['labelled']} of "
        f"{labels['pool']} candidates; held-out Spearman with the oracle: {agreement}"
    )


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
        "predictor_description": predictor_description(scoring.get("predictor")),
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


# The Hub's size_categories buckets (its dataset-card metadata accepts only these).
SIZE_BUCKETS = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"),
    (100_000_000_000, "10B<n<100B"),
    (1_000_000_000_000, "100B<n<1T"),
)


def size_category(n: int) -> str:
    for bound, label in SIZE_BUCKETS:
        if n < bound:
            return label
    return "n>1T"


def source_datasets(manifest: dict) -> list[str]:
    """The card's `source_datasets`: `extended|<id>` for a Hub dataset the corpus read, else
    `original` (local files: the tiny recipe's installed packages)."""
    recipe = manifest.get("recipe") or {}
    hub = recipe.get("hub_dataset") if "hub" in (recipe.get("sources") or []) else None
    return [f"extended|{hub}"] if hub and "/" in str(hub) and not Path(str(hub)).exists() else ["original"]


def dataset_card(
    facts: dict,
    repo_id: str,
    recipe_yaml: str,
    model_repo_id: str | None = None,
    predictor_repo_id: str | None = None,
    warmup: tuple[str, str] | None = None,
):
    """The filtered dataset's card (huggingface_hub DatasetCard from templates/dataset_card.md).
    `model_repo_id`: the model trained on it, which holds the same tokenizer; `predictor_repo_id`: the
    stage-05 predictor whose predictions chose it, when they did."""
    from huggingface_hub import DatasetCard, DatasetCardData

    selection = facts["selection"]
    fields = {
        "repo_id": repo_id,
        "model_repo_id": model_repo_id or "",
        "predictor_repo_id": predictor_repo_id or "",
        "pretty_name": f"{repo_id.split('/')[-1]}: {selection['name']} selection",
        "summary": (
            f"Training blocks of code kept by codesift's `{selection['name']}` selection: "
            f"{selection['kept_blocks']:,} of {selection['candidates_total']:,} candidate blocks."
        ),
        "kept_blocks": f"{selection['kept_blocks']:,}",
        "candidates_total": f"{selection['candidates_total']:,}",
        "kept_tokens": f"{selection['kept_tokens']:,}",
        "recipe_yaml": recipe_yaml,
        "warmup_repo_id": warmup[0] if warmup else "",
        "warmup_branch": warmup[1] if warmup else "",
        "warmup_step": str(facts["step"]),
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
        **license_fields(facts["license_yaml"]),
        language=["code"],
        source_datasets=source_datasets(facts["manifest"]),
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


def license_fields(license_yaml: dict) -> dict:
    """A mixed `license: other` links to the repo's LICENSES.md (the Hub asks for a license_link)."""
    return (
        {**license_yaml, "license_link": "LICENSES.md"}
        if license_yaml.get("license") == "other"
        else license_yaml
    )


def evaluation_results(metrics: dict, model_name: str) -> list:
    """The report-half losses as the card's model-index (huggingface_hub EvalResult)."""
    from huggingface_hub import EvalResult

    return [
        EvalResult(
            task_type="text-generation",
            dataset_type=key.split("/")[1],
            dataset_name=f"{key.split('/')[1]} (report half, never used to choose data)",
            dataset_split="report",
            metric_type="loss",
            metric_name="completion loss (nats per token)",
            metric_value=round(float(value), 4),
        )
        for key, value in metrics.items()
        if key.startswith("loss/") and key.endswith("/report") and isinstance(value, float)
    ]


def model_card(
    facts: dict,
    repo_id: str,
    model_dir: Path,
    recipe_yaml: str,
    base_model: str | None,
    dataset_repo_id: str | None = None,
):
    """The checkpoint's card (huggingface_hub ModelCard from templates/model_card.md): `datasets:`
    links the dataset repo it was trained on, `model-index` holds its report losses."""
    from huggingface_hub import ModelCard, ModelCardData
    from transformers import AutoConfig

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
    if dataset_repo_id:
        extra["datasets"] = [dataset_repo_id]
    results = evaluation_results(metrics, repo_id.split("/")[-1])
    if results:
        extra |= {"eval_results": results, "model_name": repo_id.split("/")[-1]}
    data = ModelCardData(
        **license_fields(facts["license_yaml"]),
        language=["code"],
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=["codesift", "code", "llama", "pretraining", "data-selection", "influence"],
        **extra,
    )
    return ModelCard.from_template(data, template_path=str(templates_dir() / "model_card.md"), **fields)


# ----------------------------------------------------------------------------------------------
# The stage-05 predictor's card
# ----------------------------------------------------------------------------------------------


def _heldout_table(heldout: dict) -> str:
    lines = ["| task | Spearman | Pearson | top-20% precision |", "|---|---|---|---|"]
    for task, stats in heldout.items():
        lines.append(
            f"| {task} | {stats['spearman']:.3f} | {stats['pearson']:.3f} | {stats['top20_precision']:.2f} |"
        )
    return "\n".join(lines)


def _curve_table(curve: list[dict], tasks: list[str]) -> str:
    if not curve:
        return ""
    lines = ["| training labels | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for point in curve:
        lines.append(
            f"| {point['labels']} | " + " | ".join(f"{point[t]['spearman']:.3f}" for t in tasks) + " |"
        )
    return "\n".join(lines)


def _cost_table(cost: dict) -> str:
    return "\n".join(
        [
            "| part | seconds |",
            "|---|---|",
            f"| oracle labels ({cost['oracle_labels']} blocks x {cost['oracle_seconds_per_block']:.4f} s) | {cost['label_seconds']:.1f} |",
            f"| training | {cost['train_seconds']:.1f} |",
            f"| predicting {cost['candidates']} blocks ({cost['predict_seconds_per_block'] * 1e3:.2f} ms each) | {cost['predict_seconds']:.1f} |",
            f"| **all** | **{cost['seconds']:.1f}** |",
            f"| the oracle on all {cost['candidates']} blocks instead | {cost['oracle_pool_seconds']:.1f} |",
        ]
    )


def predictor_card(meta: dict, repo_id: str, recipe_yaml: str, license_yaml: dict):
    """The predictor's card (huggingface_hub ModelCard from templates/predictor_card.md), from the
    stage's own predictor.json: the labels' provenance, held-out numbers, learning curve, cost.
    Its license is the corpus's (`license_yaml`): the weights are fitted to that corpus's blocks."""
    from huggingface_hub import ModelCard, ModelCardData

    labels, arguments = meta["labels"], meta["arguments"]
    tasks = labels["tasks"]
    if meta["predictor"] == "ridge":
        groups = {
            "ngrams": "hashed token n-grams",
            "hand": "hand-made text features and the block's own loss",
            "embeddings": f"the mean-pooled hidden states of every layer of `{arguments['encoder']}`",
        }
        description = "closed-form ridge on " + "; ".join(groups[g] for g in meta["features"])
    else:
        description = f"`{meta['model_name_or_path']}` fine-tuned with a regression head (HF Trainer)"
    fields = {
        "repo_id": repo_id,
        "pretty_name": repo_id.split("/")[-1],
        "summary": f"Predicts codesift influence scores on {', '.join(tasks)} for blocks of code, from {labels['labelled']} oracle labels.",
        "predictor_description": description,
        "labels_description": (
            f"`{labels['method']}` scores at checkpoint step {labels['step']} (`{labels['checkpoint']}`), "
            f"against the `{labels['part'] or 'whole'}` part of each task; {labels['labelled']} of "
            f"{labels['pool']} candidate blocks labelled (seeded), z-scored per task"
        ),
        "heldout_count": str(labels["heldout"]),
        "labels_count": str(labels["train"]),
        "heldout_table": _heldout_table(meta["heldout"]),
        "curve_table": _curve_table(meta.get("learning_curve") or [], tasks),
        "cost_table": _cost_table(meta["cost"]),
        "tasks": ", ".join(tasks),
        "step": str(labels["step"]),
        "seq_len": str(meta["seq_len"]),
        "needs_encoder": meta["predictor"] == "ridge"
        and bool({"embeddings", "hand"} & set(meta["features"] or [])),
        "encoder": str(arguments.get("encoder")),
        "recipe_yaml": recipe_yaml,
        "assumed": list(ASSUMED)
        + [f"the predictor's settings ({description}; MATES fine-tunes bert-base-uncased)"],
        "kit_version": kit_version(),
    }
    require_fields(fields, ["labels_description", "heldout_table", "cost_table", "recipe_yaml"], "predictor")
    model = str(arguments.get("model_name_or_path"))
    hub_model = meta["predictor"] == "finetuned" and model != "scratch" and not Path(model).exists()
    data = ModelCardData(
        **license_yaml,
        library_name="codesift",
        tags=["codesift", "data-selection", "influence", "data-influence-model", "code"],
        **({"base_model": model} if hub_model else {}),
    )
    return ModelCard.from_template(data, template_path=str(templates_dir() / "predictor_card.md"), **fields)


def warmup_card(facts: dict, repo_id: str, checkpoint: Path, branch: str):
    """The warm-up checkpoint's card (templates/warmup_card.md): what it is, and that the branch
    holds the Trainer state that continuing from it needs."""
    from huggingface_hub import ModelCard, ModelCardData
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(checkpoint))
    fields = {
        "repo_id": repo_id,
        "branch": branch,
        "step": str(facts["step"]),
        "model_description": (
            f"Llama, {count_parameters(config):,} parameters ({config.num_hidden_layers} layers, hidden "
            f"{config.hidden_size}, context {config.max_position_embeddings}, vocabulary {config.vocab_size})"
        ),
        **{k: facts[k] for k in facts if isinstance(facts[k], str | int | list) and k != "license_yaml"},
    }
    data = ModelCardData(
        **license_fields(facts["license_yaml"]),
        language=["code"],
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=["codesift", "code", "llama", "pretraining", "checkpoint"],
    )
    return ModelCard.from_template(data, template_path=str(templates_dir() / "warmup_card.md"), **fields)
