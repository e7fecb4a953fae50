"""Every notebook runs top to bottom on the tiny recipe (on a smaller corpus, to keep the suite short)."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# per-notebook parameters injected into the cell tagged "parameters": a smaller corpus, fewer steps
SHORT_RUN = {
    "corpus_overrides": {"max_documents": 300, "num_candidates": 500},
    "train_overrides": {"max_steps": 30, "eval_steps": 10, "save_steps": 10, "logging_steps": 5},
}
SCORED = {
    **SHORT_RUN,
    "influence_overrides": {"checkpoint": ["pretrain/checkpoint-20"], "max_candidates": 40, "shard_size": 20},
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
    },
    "04_filter": {
        **SCORED,
        "filter_overrides": {"scores": "influence/step-20/adam_update", "max_candidates": 40},
    },
    "06_continue_and_evaluate": {**SCORED, "experiment_overrides": TWO_ARMS},
    "07_push_to_hub": {**SCORED, "experiment_overrides": TWO_ARMS},
}
PATH_KEYS = ("checkpoint", "scores")  # paths inside the shared output folder


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """One output folder for all notebooks, run in order, so each starts from the last one's outputs."""
    return tmp_path_factory.mktemp("notebook_outputs")


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(notebook, outputs, tmp_path):
    import papermill

    parameters = {"output_root": str(outputs), **PARAMETERS.get(notebook.stem, {})}
    for key, overrides in parameters.items():  # checkpoints and scores live under the output root
        if key.endswith("_overrides"):
            parameters[key] = {
                name: (
                    ([f"{outputs}/{v}" for v in value] if isinstance(value, list) else f"{outputs}/{value}")
                    if name in PATH_KEYS
                    else value
                )
                for name, value in overrides.items()
            }
    before = set(outputs.rglob("*.png"))
    papermill.execute_notebook(
        str(notebook),
        str(tmp_path / notebook.name),
        parameters=parameters,
        kernel_name="python3",
        cwd=str(notebook.parent),
        progress_bar=False,
    )
    executed = json.loads((tmp_path / notebook.name).read_text())
    figures = [o for c in executed["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert figures or set(outputs.rglob("*.png")) - before, "the notebook showed and wrote no figure"


def test_notebooks_are_stripped():
    import nbformat

    assert NOTEBOOKS, "no notebooks found"
    for path in NOTEBOOKS:
        nb = nbformat.read(str(path), as_version=4)
        assert nb.metadata.get("kernelspec", {}).get("name") == "python3", path.name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs"
