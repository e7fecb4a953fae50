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
    assert len(graph) > 20 and "codesift.prepare.tasks" in graph["codesift.prepare.corpus"]
    assert cycle_in(graph) is None, cycle_in(graph)
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def layer_of(module: str, layers: dict[str, int] | None = None) -> int | None:
    """The layer (codesift.stages.module_layers) of the longest registered name that is the module
    or a package holding it."""
    from codesift.stages import module_layers

    names = {
        f"codesift.{n}" if n != "codesift" else n: layer for n, layer in (layers or module_layers()).items()
    }
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
    # the rule can say no: an import from filters (stage 01) into experiment (stage 06) is caught,
    # and stage 04 (filter) ranks above stage 05 (predictor), whose scores it reads
    assert layer_of("codesift.experiment") > layer_of("codesift.prepare.filters")
    assert layer_of("codesift.stats") == 0 and layer_of("codesift.selection") > layer_of(
        "codesift.predictor.stage"
    )
    graph["codesift.prepare.filters"].add("codesift.experiment")
    assert [(m, t) for m, ts in graph.items() for t in ts if layer_of(t) > layer_of(m)] == [
        ("codesift.prepare.filters", "codesift.experiment")
    ]


def test_the_makefile_demo_runs_the_registry_in_order():
    """`make demo` runs every demo step of codesift.stages, in the registry's order, with its recipe."""
    import re

    from codesift.stages import demo_commands

    makefile = (ROOT / "Makefile").read_text()
    demo = makefile[makefile.index("\ndemo:") : makefile.index("\n\n", makefile.index("\ndemo:"))]
    ran = re.findall(r"scripts/(\w+\.py) --config recipes/\$\(RECIPE\)/(\w+\.yaml)", demo)
    assert ran == demo_commands()
    assert ran.index(("train_predictor.py", "predictor.yaml")) < ran.index(("filter_data.py", "filter.yaml"))


def test_readme_stage_table_is_the_registry():
    from codesift.reporting import replace_block
    from codesift.stages import stage_table

    readme = (ROOT / "README.md").read_text()
    assert replace_block(readme, "stages", stage_table()) == readme  # the block is exactly the registry's
    assert "05 before 04" in stage_table()


def test_every_stage_names_files_and_functions_that_exist():
    """Each step's script calls its entry function and parses its argument classes; each stage's
    notebook, docs page and tiny recipes exist; every module belongs to one stage or is shared."""
    import codesift.configs
    from codesift.stages import STAGES

    for stage in STAGES:
        assert (ROOT / "notebooks" / f"{stage.notebook}.ipynb").is_file(), stage.notebook
        assert (ROOT / "docs" / stage.docs).is_file(), stage.docs
        for config in [step.config for step in stage.steps] + list(stage.other_configs):
            assert (ROOT / "recipes" / "tiny" / config).is_file(), config
        for step in stage.steps:
            script = (ROOT / "scripts" / step.script).read_text()
            function = step.entry_function()
            assert callable(function) and f"{function.__name__}(" in script, step
            for name in step.arguments:
                assert name in script and (hasattr(codesift.configs, name) or name == "TrainingArguments"), (
                    name
                )
    owners = [m for stage in STAGES for m in stage.modules]
    assert len(owners) == len(set(owners))


def test_reading_scores_and_the_findings_load_no_torch():
    """The findings code and the data module read datasets without the Trainer, a scorer or torch."""
    code = (
        "import sys, codesift.findings, codesift.analysis, codesift.data, codesift.selection\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


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


def test_enumerated_options_carry_the_registries_choices(tmp_path):
    """Each option with a fixed set of values lists them as `choices`, equal to the registry the
    stage reads; a recipe (not only the command line) with another value is one line naming it."""
    import dataclasses

    import pytest

    from codesift import configs
    from codesift.influence import METHODS
    from codesift.modeling import MODEL_PRESETS
    from codesift.predictor import FEATURE_GROUPS, PREDICTORS
    from codesift.raters import RATER_KINDS
    from codesift.selection import AGGREGATES, PERPLEXITY_BANDS, STRATEGIES

    def choices(cls, name):
        return tuple(next(f for f in dataclasses.fields(cls) if f.name == name).metadata["choices"])

    assert choices(configs.SelectionArguments, "strategy") == tuple(STRATEGIES)
    assert choices(configs.SelectionArguments, "aggregate") == AGGREGATES
    assert choices(configs.SelectionArguments, "perplexity_band") == PERPLEXITY_BANDS
    assert choices(configs.SelectionArguments, "rater_kind") == RATER_KINDS
    assert choices(configs.InfluenceArguments, "methods") == METHODS
    assert choices(configs.PredictorArguments, "predictor") == PREDICTORS
    assert choices(configs.PredictorArguments, "features") == FEATURE_GROUPS
    assert choices(configs.ModelArguments, "model_preset") == tuple(MODEL_PRESETS)
    assert choices(configs.CorpusArguments, "executor") == ("local", "slurm", "ray")

    recipe = tmp_path / "influence.yaml"
    recipe.write_text("methods: [adam_update, adam_updat]\n")
    with pytest.raises(
        configs.ConfigError, match=r"influence.yaml: methods 'adam_updat' is not one of exact, "
    ):
        configs.parse_args(configs.InfluenceArguments, args=["--config", str(recipe)])
    with pytest.raises(configs.ConfigError, match="overrides: strategy 'topk' is not one of"):
        configs.replace_fields((configs.SelectionArguments(),), {"strategy": "topk"})


def test_every_strategy_is_in_the_registry_with_its_checks():
    """The strategies are one registry: each says whether it needs scores and what defines it, and
    its own check names what is missing."""
    import pytest

    from codesift.configs import SelectionArguments
    from codesift.selection import SCORE_STRATEGIES, STRATEGIES, SelectionError, check_arguments

    assert set(SCORE_STRATEGIES) == {"top_k", "gumbel_top_k", "threshold", "quantile", "middle",
                                     "language_matched_random"}  # fmt: skip
    assert all(s.description and s.name == name for name, s in STRATEGIES.items())
    for strategy, message in [
        ("threshold", "needs `threshold`"),
        ("dsir", "needs `target_sets`"),
        ("rater", "needs `rater_model`"),
    ]:
        args = SelectionArguments(strategy=strategy, target_sets=None, threshold=None)
        with pytest.raises(SelectionError, match=f"strategy '{strategy}' {message}"):
            check_arguments(args)
    check_arguments(SelectionArguments(strategy="threshold", threshold=0.0))  # given: no complaint
