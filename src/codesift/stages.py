"""The stages in the order they run: each with its number, its one name, the library modules that
make it, and the steps a person runs (script, argument classes, entry function, tiny recipe).

Stage 05 runs before stage 04: stage 04 can keep blocks by stage 05's predicted scores. The Makefile's
demo order, README's stage table and the house test's import layers are checked against this list
(tests/test_house.py), so a stage added or moved here is added or moved everywhere or a test says where.
Everything is named by string, so reading the registry imports no stage.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One command of a stage: `python scripts/<script> --config recipes/<recipe>/<config>`."""

    script: str
    arguments: tuple[str, ...]  # dataclass names in codesift.configs (or transformers' TrainingArguments)
    entry: str  # "module:function", the library function the script calls
    config: str  # the tiny recipe's YAML
    in_demo: bool = True  # `make demo` runs it

    def entry_function(self):
        module, function = self.entry.split(":")
        return getattr(importlib.import_module(module), function)


@dataclass(frozen=True)
class Stage:
    number: str
    name: str
    summary: str
    modules: tuple[str, ...]  # codesift modules and packages that belong to this stage
    steps: tuple[Step, ...]
    notebook: str
    docs: str
    other_configs: tuple[str, ...] = ()  # variants of a step's recipe (`<stage>_<variant>.yaml`)


STAGES: tuple[Stage, ...] = (
    Stage(
        "01",
        "prepare",
        "validation sets, code corpus (a datatrove pipeline), tokenizer, blocks",
        ("prepare",),
        (
            Step(
                "build_validation_sets.py",
                ("ValidationSetsArguments",),
                "codesift.prepare.tasks:run_validation_sets_stage",
                "validation_sets.yaml",
            ),
            Step(
                "build_corpus.py",
                ("CorpusArguments",),
                "codesift.prepare.corpus:run_corpus_stage",
                "corpus.yaml",
            ),
        ),
        "01_build_validation_sets",
        "01_validation_sets_and_corpus.md",
    ),
    Stage(
        "02",
        "pretrain",
        "pretraining (and continued pretraining)",
        ("modeling", "costs", "training"),
        (
            Step(
                "pretrain.py",
                ("ModelArguments", "PretrainArguments", "TrainingArguments"),
                "codesift.training:run_pretraining",
                "pretrain.yaml",
            ),
        ),
        "02_pretrain",
        "02_pretrain.md",
    ),
    Stage(
        "03",
        "influence",
        "influence scores (exact and fast; script and callback)",
        ("influence",),
        (
            Step(
                "compute_influence.py",
                ("InfluenceArguments",),
                "codesift.influence.scoring:run_influence_stage",
                "influence.yaml",
            ),
        ),
        "03_compute_influence",
        "03_influence.md",
        ("influence_exact.yaml",),
    ),
    Stage(
        "05",
        "predictor",
        "predicted scores: label a sample with the oracle, predict the pool (runs before 04)",
        ("predictor",),
        (
            Step(
                "train_predictor.py",
                ("PredictorArguments",),
                "codesift.predictor.stage:run_predictor_stage",
                "predictor.yaml",
            ),
        ),
        "05_predict_influence",
        "05_predictor.md",
    ),
    Stage(
        "04",
        "filter",
        "keep the best blocks with `datasets.filter` (by stage 03's or stage 05's scores)",
        # selection: the strategies stages 04 and 06 share; dsir and raters: two of them
        ("dsir", "raters", "selection"),
        (
            Step(
                "filter_data.py",
                ("SelectionArguments",),
                "codesift.selection:run_selection_stage",
                "filter.yaml",
            ),
        ),
        "04_filter",
        "04_filter.md",
    ),
    Stage(
        "06",
        "experiment",
        "continued pretraining, evaluation, results table",
        ("evaluation", "experiment"),
        (
            Step(
                "run_experiment.py",
                ("ExperimentArguments",),
                "codesift.experiment:run_experiment",
                "experiment.yaml",
            ),
            Step(
                "evaluate_model.py",
                ("EvaluationArguments",),
                "codesift.evaluation:run_evaluation_stage",
                "evaluate.yaml",
                in_demo=False,
            ),
        ),
        "06_continue_and_evaluate",
        "06_experiment.md",
        ("experiment_table.yaml",),
    ),
    Stage(
        "06",
        "pretrain_selected",
        "pretraining from scratch on selected data (filtered, MATES's loop)",
        ("pretrain_selected",),
        (
            Step(
                "pretrain_selected.py",
                ("PretrainSelectedArguments",),
                "codesift.pretrain_selected:run_pretrain_selected",
                "pretrain_selected.yaml",
                in_demo=False,
            ),
        ),
        "06_continue_and_evaluate",
        "06_experiment.md",
    ),
    Stage(
        "07",
        "hub",
        "publishing to the Hub (export, cards, push)",
        ("hub",),
        (Step("push_to_hub.py", ("HubArguments",), "codesift.hub:run_hub_stage", "push_to_hub.yaml"),),
        "07_push_to_hub",
        "07_hub.md",
    ),
    Stage(
        "findings",
        "findings",
        "the paper's second question as numbers with intervals (`make report`)",
        ("findings", "analysis", "reporting"),
        (
            Step(
                "analyze.py",
                ("AnalysisArguments",),
                "codesift.analysis:run_analysis_stage",
                "analyze.yaml",
                in_demo=False,
            ),
        ),
        "08_findings",
        "findings.md",
        ("influence_stages.yaml",),
    ),
)

# Modules that know no stage (shared by all), and the one that calls stages 01-05 for a notebook.
SHARED_MODULES = (
    "codesift", "errors", "utils", "configs", "provenance", "intervals", "plots", "figure_checks",
    "report_page", "cli", "notebooks", "ngrams", "generation", "callbacks", "metrics", "stats",
    "data", "stages", "predictor.ridge",
)  # fmt: skip
ABOVE_THE_STAGES = ("pipeline",)


def module_layers() -> dict[str, int]:
    """{module name: layer}: the shared modules 0, each stage its place in STAGES (from 1), the
    modules above the stages last. A module imports only its own layer or lower."""
    layers = dict.fromkeys(SHARED_MODULES, 0)
    for place, stage in enumerate(STAGES, start=1):
        layers.update(dict.fromkeys(stage.modules, place))
    layers.update(dict.fromkeys(ABOVE_THE_STAGES, len(STAGES) + 1))
    return layers


def demo_commands() -> list[tuple[str, str]]:
    """(script, tiny config) of every step `make demo` runs, in order."""
    return [(step.script, step.config) for stage in STAGES for step in stage.steps if step.in_demo]


def stage_table() -> str:
    """README's stage table, in the order the stages run."""
    rows = [
        "| # | stage | what it does | script | notebook | recipe (tiny) | docs |",
        "|---|---|---|---|---|---|---|",
    ]
    for stage in STAGES:
        configs = [step.config for step in stage.steps] + list(stage.other_configs)
        rows.append(
            f"| {stage.number} | `{stage.name}` | {stage.summary} | "
            f"{', '.join(f'`{step.script}`' for step in stage.steps)} | `{stage.notebook}` | "
            f"{', '.join(f'`{c}`' for c in configs)} | [{stage.number}](docs/{stage.docs}) |"
        )
    rows.append("")
    rows.append(
        "The rows are in the order the stages run: 05 before 04, because stage 04 can keep blocks by "
        "stage 05's predicted scores."
    )
    return "\n".join(rows)
