"""Execute every notebook on the tiny recipe into outputs/notebooks/ (with outputs) and render each to HTML.

    python scripts/run_notebooks.py                      # notebooks/*.ipynb, then workshop/answers/*.ipynb
    python scripts/run_notebooks.py --only 03 04         # some of them

The notebooks reuse what `make demo` left under outputs/tiny (finished stages are not redone), so
after the demo this takes minutes. The repository's notebooks stay stripped.
"""

import argparse
from pathlib import Path

from codesift.notebooks import run_notebooks
from codesift.utils import project_root

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="outputs/notebooks")
    parser.add_argument("--only", nargs="*", default=None, help="notebook number prefixes, e.g. 03 04")
    args = parser.parse_args()
    root = project_root()
    notebooks = sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    notebooks += sorted((root / "workshop" / "answers").glob("*.ipynb"))
    if args.only:
        notebooks = [nb for nb in notebooks if nb.name.startswith(tuple(args.only))]
    timings = run_notebooks(notebooks, Path(args.output_dir))
    print(f"{len(timings)} notebooks in {sum(timings.values()):.0f} s; HTML beside each in {args.output_dir}")
