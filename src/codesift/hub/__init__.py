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
from .export import (
    MODEL_FILES,
    check_export,
    copy_model_files,
    export_dataset,
    export_model,
    export_predictor,
    export_warmup,
)
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
    "export_predictor",
    "export_warmup",
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
    folders, warmup, report = [], None, {"arm": arm}
    if args.warmup_repo_id:  # first: the dataset card's continue-from-the-Hub snippet names it
        main, branch_dir, branch = export_warmup(
            sources, export_root / args.warmup_repo_id.split("/")[-1], args.warmup_repo_id
        )
        warmup = (args.warmup_repo_id, branch)
        report |= {"warmup_export": str(main), "warmup_branch_export": str(branch_dir)}
        folders += [
            (main, args.warmup_repo_id, "warmup", None),
            (branch_dir, args.warmup_repo_id, "warmup_branch", branch),
        ]
    dataset_dir = export_dataset(
        sources,
        export_root / args.dataset_repo_id.split("/")[-1],
        args.dataset_repo_id,
        args.model_repo_id,
        args.predictor_repo_id if args.predictor_dir else None,
        warmup,
    )
    model_dir = export_model(
        sources,
        export_root / args.model_repo_id.split("/")[-1],
        args.model_repo_id,
        args.base_model or args.warmup_repo_id,
        args.dataset_repo_id,
    )
    report |= {"dataset_export": str(dataset_dir), "model_export": str(model_dir)}
    folders += [
        (dataset_dir, args.dataset_repo_id, "dataset", args.revision),
        (model_dir, args.model_repo_id, "model", args.revision),
    ]
    if args.predictor_dir:  # stage 05's predictor, as its own model repo
        check_repo_id(args.predictor_repo_id)
        predictor_dir = export_predictor(
            args.predictor_dir,
            args.corpus_dir,
            args.recipe_dir,
            export_root / args.predictor_repo_id.split("/")[-1],
            args.predictor_repo_id,
        )
        report["predictor_export"] = str(predictor_dir)
        folders.append((predictor_dir, args.predictor_repo_id, "predictor", args.revision))
    if args.push or args.dry_run:
        for folder, repo_id, what, revision in folders:
            repo_type = "dataset" if what == "dataset" else "model"
            report[f"{what}_push"] = push_folder(
                folder, repo_id, repo_type, args.private, revision, args.commit_message, args.dry_run
            )
    return report
