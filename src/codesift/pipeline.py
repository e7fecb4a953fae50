"""Running stages in order from a notebook: each notebook can start from an empty output folder."""

from __future__ import annotations

from pathlib import Path

from .configs import load_stage_config
from .influence import run_influence_stage
from .predictor import run_predictor_stage
from .prepare.corpus import run_corpus_stage
from .prepare.tasks import run_validation_sets_stage
from .training import run_pretraining


def ensure_stage_01(output_root: str, recipe: str = "tiny", **corpus_overrides) -> None:
    """The validation sets and the corpus under `output_root`: each stage keeps its output when it
    was made from the same arguments and inputs (provenance.json) and rebuilds it otherwise."""
    run_validation_sets_stage(load_stage_config("validation_sets", recipe, output_root))
    run_corpus_stage(load_stage_config("corpus", recipe, output_root, **corpus_overrides))


def ensure_stage_02(output_root: str, recipe: str = "tiny", corpus_overrides=None, **train_overrides) -> None:
    """Stages 01 and 02 under `output_root` unless a pretraining run with checkpoints is there."""
    ensure_stage_01(output_root, recipe, **(corpus_overrides or {}))
    if not any((Path(output_root) / "pretrain").glob("checkpoint-*")):
        run_pretraining(*load_stage_config("pretrain", recipe, output_root, **train_overrides))


def ensure_stage_03(
    output_root: str, recipe: str = "tiny", corpus_overrides=None, train_overrides=None, **influence_overrides
) -> None:
    """Stages 01-03 under `output_root`: the pool scored at the recipe's checkpoints (finished score
    sets are kept, so this only scores what is missing)."""
    ensure_stage_02(output_root, recipe, corpus_overrides, **(train_overrides or {}))
    run_influence_stage(load_stage_config("influence", recipe, output_root, **influence_overrides))


def ensure_stage_05(
    output_root: str,
    recipe: str = "tiny",
    corpus_overrides=None,
    train_overrides=None,
    influence_overrides=None,
    **predictor_overrides,
) -> None:
    """Stages 01-05 under `output_root`: the scored pool and the stage-05 predictions of it (kept
    when made from the same labels and arguments)."""
    ensure_stage_03(output_root, recipe, corpus_overrides, train_overrides, **(influence_overrides or {}))
    run_predictor_stage(load_stage_config("predictor", recipe, output_root, **predictor_overrides))
