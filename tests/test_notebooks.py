"""Every notebook, then every worked answer of the workshop, runs top to bottom on the tiny recipe (on a
smaller corpus, to keep the suite short); each shows its figures with captions, and names no missing file."""

import json
import re
from pathlib import Path

import pytest

from codesift.notebooks import displayed_images, execute_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
ANSWERS = sorted((ROOT / "workshop" / "answers").glob("*.ipynb"))
# per-notebook parameters injected into the cell tagged "parameters": a smaller corpus, fewer steps
SHORT_RUN = {
    "corpus_overrides": {"max_documents": 300, "num_candidates": 500},
    "train_overrides": {"max_steps": 30, "eval_steps": 10, "save_steps": 10, "logging_steps": 5},
}
SCORED = {
    **SHORT_RUN,
    "influence_overrides": {"checkpoint": ["pretrain/checkpoint-20"], "max_candidates": 40, "shard_size": 20},
}
PREDICTED = {
    **SCORED,
    "predictor_overrides": {
        "scores": "influence/step-20/adam_update",
        "encoder": "pretrain/checkpoint-20",
        "model_name_or_path": "pretrain/checkpoint-20",
        "max_candidates": 40,
        "label_fraction": 1.0,
        "heldout_fraction": 0.25,
        "num_train_epochs": 1,
        "learning_curve": [],
    },
}
TWO_ARMS = {
    "checkpoint": "pretrain/checkpoint-20",
    "scores": "influence/step-20/adam_update",
    "max_candidates": 40,
    "strategies": [
        {"name": "random", "strategy": "random"},
        {"name": "influence_mean", "strategy": "gumbel_top_k", "tasks": ["humaneval", "mbpp"]},
    ],
    "continue_steps": 3,
    "seeds": [1],
}
PARAMETERS = {
    "01_build_validation_sets": {"corpus_overrides": SHORT_RUN["corpus_overrides"]},
    "02_pretrain": SHORT_RUN,
    "03_compute_influence": {
        **SHORT_RUN,
        "influence_overrides": {
            "checkpoint": ["pretrain/checkpoint-10", "pretrain/checkpoint-20"],
            "max_candidates": 40,
            "shard_size": 20,
        },
        "exact_overrides": {"checkpoint": ["pretrain/checkpoint-10"], "max_candidates": 15},
        "early_overrides": {"checkpoint": ["pretrain/checkpoint-10"], "max_candidates": 40},
    },
    "04_filter": {
        **SCORED,
        "filter_overrides": {"scores": "influence/step-20/adam_update", "max_candidates": 40},
    },
    "05_predict_influence": {**PREDICTED, "curve_sizes": [10, 30]},
    "06_continue_and_evaluate": {
        **PREDICTED,
        "experiment_overrides": TWO_ARMS,
        "pretrain_selected_overrides": {
            "steps": 6,
            "eval_steps": 3,
            "stage_steps": 3,
            "label_sample": 20,
            "seeds": [1],
            "max_blocks": 400,
        },  # fmt: skip
    },
    "07_push_to_hub": {**PREDICTED, "experiment_overrides": TWO_ARMS},
    "08_findings": {
        **SCORED,
        "stages_overrides": {
            "checkpoint": ["pretrain/checkpoint-10", "pretrain/checkpoint-20"],
            "max_candidates": 40,
            "shard_size": 20,
        },
        "analyze_overrides": {"bootstrap": 100},
    },
    # the workshop's worked answers, run after the notebooks on the same outputs
    "01_custom_task": {"corpus_overrides": SHORT_RUN["corpus_overrides"]},
    "03_sgd_vs_adamw": {
        **SHORT_RUN,
        "influence_overrides": {
            "checkpoint": ["pretrain/checkpoint-20"],
            "max_candidates": 40,
            "shard_size": 20,
        },
    },
    "04_perplexity_bands": {
        **SCORED,
        "filter_overrides": {"scores": "influence/step-20/adam_update", "max_candidates": 40},
    },
}
PATH_KEYS = ("checkpoint", "scores", "encoder", "model_name_or_path")  # paths inside the shared output folder


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """One output folder for all notebooks, run in order, so each starts from the last one's outputs."""
    return tmp_path_factory.mktemp("notebook_outputs")


def with_paths_under(outputs: Path, parameters: dict) -> dict:
    """Checkpoints and scores named in `*_overrides` live under the notebooks' output root."""
    moved = dict(parameters)
    for key, overrides in parameters.items():
        if key.endswith("_overrides"):
            moved[key] = {
                name: (
                    ([f"{outputs}/{v}" for v in value] if isinstance(value, list) else f"{outputs}/{value}")
                    if name in PATH_KEYS
                    else value
                )
                for name, value in overrides.items()
            }
    return moved


def uncaptioned_figures(executed: Path) -> list[int]:
    """Code cells that display a figure with no caption ("*Figure.* ...") in that cell or the next."""
    cells = [c for c in json.loads(executed.read_text())["cells"] if c["cell_type"] == "code"]

    def shows(cell, kind):
        return any(kind in o.get("data", {}) for o in cell.get("outputs", []))

    def captioned(cell):
        return any(
            "".join(o.get("data", {}).get("text/markdown", "")).startswith("*Figure.*")
            for o in cell.get("outputs", [])
        )

    return [
        i
        for i, cell in enumerate(cells)
        if shows(cell, "image/png")
        and not (captioned(cell) or (i + 1 < len(cells) and captioned(cells[i + 1])))
    ]


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS + ANSWERS, ids=lambda p: p.stem)
def test_notebook_runs(notebook, outputs, tmp_path):
    parameters = with_paths_under(outputs, {"output_root": str(outputs), **PARAMETERS.get(notebook.stem, {})})
    executed = tmp_path / notebook.name
    execute_notebook(notebook, executed, parameters)
    if notebook in NOTEBOOKS:  # a worked answer may be all tables and asserts
        assert displayed_images(executed) > 0, "the notebook displayed no figure"
    assert uncaptioned_figures(executed) == [], "figures without a caption (code cells counted from 0)"


def test_uncaptioned_figures_are_found(tmp_path):
    figure = {"data": {"image/png": "iVBOR"}, "output_type": "display_data", "metadata": {}}
    text = {
        "data": {"text/markdown": "*Figure.* what to look for"},
        "output_type": "display_data",
        "metadata": {},
    }
    cells = [
        {"cell_type": "code", "outputs": outputs, "source": ""}
        for outputs in ([figure], [text], [figure], [])
    ]
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": cells}))
    assert uncaptioned_figures(path) == [2]
    assert displayed_images(path) == 2


FILE_MENTION = re.compile(r"`((?:[\w.-]+/)*[\w.-]+\.(?:ipynb|py|yaml|md))`")


def mentioned_files(text: str) -> list[str]:
    return [m for m in FILE_MENTION.findall(text) if "<" not in m]


@pytest.mark.parametrize("notebook", NOTEBOOKS + ANSWERS, ids=lambda p: p.stem)
def test_notebook_names_only_existing_files(notebook):
    """A file a notebook points the reader to (`02_pretrain.ipynb`, `recipes/tiny/filter.yaml`) exists:
    by path from the project root, or by name in notebooks/, scripts/ or the recipes."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    text = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")
    places = [ROOT, ROOT / "notebooks", ROOT / "scripts", ROOT / "recipes" / "tiny"]
    missing = [m for m in mentioned_files(text) if not any((place / m).exists() for place in places)]
    assert missing == []
    assert mentioned_files("see `03_influence.ipynb` and `recipes/<recipe>/x.yaml`") == ["03_influence.ipynb"]


def test_notebooks_are_stripped():
    import nbformat

    assert NOTEBOOKS and ANSWERS, "no notebooks found"
    for path in NOTEBOOKS + ANSWERS:
        nb = nbformat.read(str(path), as_version=4)
        assert nb.metadata.get("kernelspec", {}).get("name") == "python3", path.name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs"
