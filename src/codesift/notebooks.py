"""Executing the notebooks headless: `make notebooks` (outputs kept, HTML beside) and the tests.

The repository keeps notebooks stripped; an executed copy with its outputs, and an HTML rendering a
reader can open without Jupyter, go under `outputs/notebooks/`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

# Imported inside the functions that use them (heavy or optional): nbconvert, nbformat, papermill.


def execute_notebook(notebook: str | Path, output: str | Path, parameters: dict | None = None) -> float:
    """Run `notebook` top to bottom (papermill, kernel python3, cwd = its folder), write the
    executed copy to `output`, and return the seconds it took."""
    import papermill

    notebook, output = Path(notebook), Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    papermill.execute_notebook(
        str(notebook),
        str(output),
        parameters=parameters or {},
        kernel_name="python3",
        cwd=str(notebook.parent),
        progress_bar=False,
    )
    return time.perf_counter() - start


def render_html(executed: str | Path) -> Path:
    """An executed notebook as a standalone HTML page beside it (figures embedded)."""
    import nbformat
    from nbconvert import HTMLExporter

    executed = Path(executed)
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(str(executed), as_version=4))
    html = executed.with_suffix(".html")
    html.write_text(body)
    return html


def displayed_images(executed: str | Path) -> int:
    """How many figures the notebook itself displayed (image outputs in its cells)."""
    cells = json.loads(Path(executed).read_text())["cells"]
    return sum(
        1
        for cell in cells
        for output in cell.get("outputs", [])
        if any(kind.startswith("image/") for kind in output.get("data", {}))
    )


def run_notebooks(notebooks: list[Path], output_dir: str | Path, parameters: dict | None = None) -> dict:
    """Execute and render each notebook in order into `output_dir`; returns {name: seconds} and
    writes it to `output_dir/timings.json`."""
    output_dir = Path(output_dir)
    timings = {}
    for notebook in notebooks:
        executed = output_dir / notebook.name
        timings[notebook.stem] = round(execute_notebook(notebook, executed, parameters), 1)
        render_html(executed)
        print(
            f"{notebook.stem}: {timings[notebook.stem]:.0f} s -> {executed.with_suffix('.html')}", flush=True
        )
    (output_dir / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    return timings
