"""Every notebook runs top to bottom on the tiny recipe (on a smaller corpus, to keep the suite short)."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# per-notebook parameters injected into the cell tagged "parameters"
PARAMETERS = {
    "01_build_validation_sets": {"corpus_overrides": {"max_documents": 300, "num_candidates": 500}},
}


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(notebook, tmp_path, shared_data):
    import papermill

    parameters = {"output_root": str(tmp_path / "outputs"), **PARAMETERS.get(notebook.stem, {})}
    papermill.execute_notebook(
        str(notebook),
        str(tmp_path / notebook.name),
        parameters=parameters,
        kernel_name="python3",
        cwd=str(notebook.parent),
        progress_bar=False,
    )
    assert any((tmp_path / "outputs").rglob("*.png")), "the notebook wrote no figure"


def test_notebooks_are_stripped():
    import nbformat

    assert NOTEBOOKS, "no notebooks found"
    for path in NOTEBOOKS:
        nb = nbformat.read(str(path), as_version=4)
        assert nb.metadata.get("kernelspec", {}).get("name") == "python3", path.name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs"
