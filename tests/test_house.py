"""The kit stands alone and its house is in order: a clone with nothing beside it runs stage 01, and
the library's modules import one way, in stage order, with no cycle."""

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "codesift"


def test_a_clone_with_nothing_beside_it_runs_stage_01(tmp_path):
    """The committed kit, cloned into an empty folder (nothing beside it, no outputs), builds the tiny
    recipe's validation sets and a small corpus from the files it ships."""
    clone = tmp_path / "alone" / "codesift"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, capture_output=True)
    assert sorted(p.name for p in clone.parent.iterdir()) == ["codesift"]
    env = {**os.environ, "PYTHONPATH": str(clone / "src"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    for script, extra in [
        ("build_validation_sets.py", []),
        ("build_corpus.py", ["--max_documents", "60", "--num_candidates", "10", "--vocab_size", "500"]),
    ]:
        stage = script.removeprefix("build_").removesuffix(".py")
        run = subprocess.run(
            [sys.executable, f"scripts/{script}", "--config", f"recipes/tiny/{stage}.yaml", *extra],
            cwd=clone, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-2000:]
    metadata = (clone / "outputs/tiny/validation_sets/metadata.json").read_text()
    assert '"source": "data/mbpp/mbpp.jsonl"' in metadata and '"source": "data/humaneval-x"' in metadata
    assert (clone / "outputs/tiny/corpus/manifest.json").is_file()


def import_graph() -> dict[str, set[str]]:
    """{module: the codesift modules it imports}, module-level and local imports alike."""
    modules = {}
    for file in PACKAGE.rglob("*.py"):
        parts = file.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    graph = {}
    for name, file in modules.items():
        package = name if file.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                found = [target] if target in modules else [f"{target}.{a.name}" for a in node.names]
                targets |= {t for t in found if t in modules}
            elif isinstance(node, ast.ImportFrom | ast.Import) and not getattr(node, "level", 0):
                names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                targets |= {n for n in names if n and n in modules}
        graph[name] = targets - {name}
    return graph


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    state, path = {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        state[node] = "done"
        path.pop()
        return None

    return next((found for node in sorted(graph) if node not in state and (found := visit(node))), None)


def test_the_library_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 20 and "codesift.tasks" in graph["codesift.corpus"]
    assert cycle_in(graph) is None, cycle_in(graph)
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


# Every module's layer: shared helpers that know no stage (0), then the stages in the order data
# flows through them, then what reads their outputs. A module imports only its own layer or lower.
LAYERS = {
    0: ["codesift", "errors", "utils", "configs", "provenance", "intervals", "plots", "figure_checks",
        "report_page", "cli", "notebooks", "ngrams", "generation", "callbacks", "metrics",
        "influence.stats", "predictor.ridge"],
    1: ["tasks", "filters", "tokenizer", "packing", "corpus_sources", "corpus_pipeline", "corpus"],
    2: ["modeling", "costs", "training"],
    3: ["influence"],
    4: ["predictor"],
    5: ["dsir", "raters", "selection"],
    6: ["evaluation"],
    7: ["experiment"],
    8: ["pretrain_selected"],
    9: ["findings", "analysis", "reporting"],
    10: ["hub"],
    11: ["pipeline"],  # a notebook's "build the earlier stages if missing": it calls stages 01-05
}  # fmt: skip


def layer_of(module: str) -> int | None:
    """The layer of the longest name in LAYERS that is the module or a package holding it."""
    names = {f"codesift.{n}" if n != "codesift" else n: layer for layer, ns in LAYERS.items() for n in ns}
    match = max(
        (n for n in names if module == n or module.startswith(n + ".") and n != "codesift"),
        key=len,
        default=None,
    )
    return names.get(match) if match else (0 if module == "codesift" else None)


def test_every_module_imports_only_its_own_layer_or_lower():
    graph = import_graph()
    unranked = [m for m in graph if layer_of(m) is None]
    assert unranked == [], f"give these modules a layer in LAYERS: {unranked}"
    upward = [(m, t) for m, targets in graph.items() for t in targets if layer_of(t) > layer_of(m)]
    assert upward == []
    # the rule can say no: an import from filters (stage 01) into experiment (stage 06) is caught
    assert layer_of("codesift.experiment") > layer_of("codesift.filters")
    assert layer_of("codesift.influence.stats") == 0 and layer_of("codesift.influence.scoring") == 3


def test_every_relative_link_in_the_docs_points_at_a_file():
    import re

    pages = [
        ROOT / "README.md",
        *ROOT.glob("docs/*.md"),
        *ROOT.glob("workshop/*.md"),
        *ROOT.glob("data/*.md"),
    ]
    pages += [
        *ROOT.glob("recipes/*/README.md"),
        ROOT / "src" / "codesift" / "metrics" / "pass_at_k" / "README.md",
    ]
    broken = [
        f"{page.relative_to(ROOT)} -> {target}"
        for page in pages
        for target in re.findall(r"\]\(([^)#\s]+)\)", page.read_text())
        if not target.startswith(("http://", "https://")) and not (page.parent / target).exists()
    ]
    assert broken == []
