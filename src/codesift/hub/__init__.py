"""Stage 07: export filtered datasets and checkpoints in a Hub repo's layout, with cards that say how
each was made; push them (or checkpoints during training, to revision branches); load them back.

One module per concern: `cards` (facts and rendering), `export` (folders in the repo layout),
`push` (uploads, the revision callback, loading a published dataset). The arm to export is chosen
from the experiment's results (`codesift.experiment.choose_arm`).
"""

from __future__ import annotations

from pathlib import Path

from ..experiment import choose_arm
from .cards import (
    ASSUMED,
    HUB_LICENSES,
    ExportSources,
    HubError,
    check_repo_id,
    dataset_card,
    gather_facts,
    model_card,
)
from .export import MODEL_FILES, check_export, copy_model_files, export_dataset, export_model
from .push import PushRevisionCallback, load_published_dataset, push_folder

__all__ = [
    "ASSUMED",
    "HUB_LICENSES",
    "MODEL_FILES",
    "ExportSources",
    "HubError",
    "PushRevisionCallback",
    "check_export",
    "check_repo_id",
    "choose_arm",
    "copy_model_files",
    "dataset_card",
    "export_dataset",
    "export_model",
    "gather_facts",
    "load_published_dataset",
    "model_card",
    "push_folder",
    "run_hub_stage",
]


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
        sources, export_root / args.dataset_repo_id.split("/")[-1], args.dataset_repo_id, args.model_repo_id
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
