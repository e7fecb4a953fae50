"""The docs say what the runs measured: no known-stale phrase anywhere a reader looks, generated
blocks that agree with the recipe values they depend on, `make docs` naming what it could not
write, and a workshop whose counts add up."""

import json
import re

import numpy as np
import pytest
import yaml
from helpers import ROOT

# Phrases that once stated a number no run made, or described a corpus the kit no longer builds.
STALE = (
    "tiny-stdlib",
    "stdlib blocks",
    "0.99 epoch of the train blocks",
    "about 13 min",
    "about 0.7",
    "160 training steps",
    "44 cells",
    " 3M tokens",
    "issue's goal",
    "project's machines",
    "<org>/<dataset>",
    "git clone <codesift>",
    "step-450",
    "0.14 nats",
)


def notebook_markdown(path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def reader_pages() -> dict[str, str]:
    """Every text a user reads: README, docs, workshop, recipes, cards, the metric card, notebooks' prose."""
    paths = [
        ROOT / "README.md",
        *ROOT.glob("docs/*.md"),
        ROOT / "workshop" / "README.md",
        *ROOT.glob("recipes/*/*.yaml"),
        *ROOT.glob("recipes/*/README.md"),
        *ROOT.glob("src/codesift/hub/templates/*.md"),
        ROOT / "src" / "codesift" / "metrics" / "pass_at_k" / "README.md",
    ]
    pages = {str(p.relative_to(ROOT)): p.read_text() for p in paths}
    for notebook in [*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("workshop/answers/*.ipynb")]:
        pages[str(notebook.relative_to(ROOT))] = notebook_markdown(notebook)
    return pages


def test_no_known_stale_phrase_remains():
    found = [(name, phrase) for name, text in reader_pages().items() for phrase in STALE if phrase in text]
    assert found == []


def block(text: str, name: str) -> str:
    match = re.search(rf"<!-- {name}:start[^\n]*-->\n(.*?)<!-- {name}:end -->", text, re.S)
    assert match, f"no {name} block"
    return match.group(1)


def recipe(name: str) -> dict:
    return yaml.safe_load((ROOT / "recipes" / "tiny" / name).read_text())


def table_arms(text: str) -> list[str]:
    return [
        line.split("|")[1].strip()
        for line in text.splitlines()
        if line.startswith("| ") and "---" not in line
    ][1:]


def test_generated_blocks_agree_with_the_recipes_they_depend_on():
    readme, docs06 = (ROOT / "README.md").read_text(), (ROOT / "docs" / "06_experiment.md").read_text()
    table, pool = recipe("experiment_table.yaml"), recipe("influence.yaml")["max_candidates"]
    settings = f"{table['fraction']:.0%} of a {pool:,}-block pool, {table['continue_steps']} continued steps"
    assert settings in block(readme, "results")
    arms = [spec["name"] for spec in table["strategies"]]
    assert set(table_arms(block(readme, "results"))) <= set(arms)
    assert table_arms(block(docs06, "results")) == [
        "checkpoint (no continued training)",
        *arms,
        *table["unavailable_arms"],
    ]
    seeds = {spec["name"]: len(spec.get("seeds", table["seeds"])) for spec in table["strategies"]}
    for line in block(docs06, "results").splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 2 and cells[1] in seeds:
            assert cells[-2] == str(seeds[cells[1]]), line  # the seeds column: the recipe's seeds
    assert f"after {recipe('pretrain_selected.yaml')['steps']} steps from scratch" in block(
        readme, "pretrain_selected"
    )
    influence = block((ROOT / "docs" / "03_influence.md").read_text(), "influence")
    assert "`adam_update` at step 300: " in influence and f"{pool:,} candidates" in influence
    exact = recipe("influence_exact.yaml")["max_candidates"]
    assert f"{exact:,} candidates" in influence or "not measured yet" in influence
    stages = [int(c.rsplit("-", 1)[1]) for c in recipe("influence_stages.yaml")["checkpoint"]]
    findings = block((ROOT / "docs" / "findings.md").read_text(), "findings")
    assert f"step {stages[0]} vs {stages[-1]}" in findings
    assert "two seeds of the warm-up agree at" in findings  # the "varies" rule's yardstick


def test_make_docs_names_what_it_could_not_write(tmp_path):
    import shutil

    from codesift.reporting import update_all_docs

    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text())
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")  # as a fresh clone has them
    lines = update_all_docs(tmp_path / "outputs" / "tiny", tmp_path)
    assert lines[0] == f"wrote {readme} (stages)"  # the stage table needs no run
    assert readme.read_text() == (ROOT / "README.md").read_text()  # and README's is the registry's
    assert all(line.startswith("skipped") for line in lines[1:]) and len(lines) == 6
    for run in ("make demo", "make table", "make pretrain_selected", "make report", "make notebooks"):
        assert any(run in line for line in lines), run


def test_the_influence_block_is_computed_from_the_scores(tmp_path):
    from datasets import Dataset

    from codesift.reporting import influence_block, influence_numbers

    rng = np.random.default_rng(0)
    ids = list(range(50))
    he, mbpp = rng.normal(size=50), rng.normal(size=50)
    for method, values, per in (("adam_update", (he, mbpp), 0.05), ("exact", (he[:20] * 2, -mbpp[:20]), 1.5)):
        folder = tmp_path / "step-300" / method
        n = len(values[0])
        Dataset.from_dict(
            {"block_id": ids[:n], "influence_humaneval": values[0], "influence_mbpp": values[1]}
        ).save_to_disk(str(folder))
        (folder / "scoring.json").write_text(json.dumps({"seconds_per_candidate": per, "candidates": n}))
    numbers = influence_numbers(tmp_path, 300)
    assert numbers["fast_vs_exact"] == pytest.approx({"humaneval": 1.0, "mbpp": -1.0})
    text = influence_block(numbers, "stamp")
    assert "0.050 s per candidate, 50 candidates" in text and "1.500 s per candidate, 20 candidates" in text
    assert "humaneval 1.000, mbpp -1.000" in text


def exercise_count() -> int:
    total = 0
    for path in sorted(ROOT.glob("notebooks/*.ipynb")):
        text = notebook_markdown(path)
        if "## Exercises" in text:
            total += len(re.findall(r"^\d+\. ", text[text.index("## Exercises") :], re.M))
    return total


def test_the_workshop_counts_add_up():
    plan = (ROOT / "workshop" / "README.md").read_text()
    answers = re.findall(r"\]\((answers/[^)]+\.ipynb)\)", plan)
    assert answers and all((ROOT / "workshop" / a).is_file() for a in answers)
    stated = re.search(r"Worked answers for (\d+) of the notebooks' (\d+) exercises", plan)
    assert stated and int(stated.group(1)) == len(set(answers)) and int(stated.group(2)) == exercise_count()
    for notebook in sorted(ROOT.glob("notebooks/0*.ipynb")):
        assert f"`{notebook.stem}`" in plan, f"{notebook.stem} is not in the workshop plan"
    assert plan.count("CODESIFT_REPO") == 2  # the clone URL: set once, used once


def test_make_docs_keeps_the_headline_when_the_folder_holds_the_demos_table(tmp_path):
    """`make demo` and notebook 06 write a one-seed, two-arm table where `make table` wrote the
    headline's; `make docs` then leaves README's headline alone and says why."""
    import json
    import shutil

    from codesift.reporting import update_all_docs

    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    (tmp_path / "README.md").write_text((ROOT / "README.md").read_text())
    demo = tmp_path / "outputs" / "tiny" / "experiment"
    demo.mkdir(parents=True)
    strategies = [
        {"name": "influence_mean", "strategy": "gumbel_top_k"},
        {"name": "predicted_mean", "strategy": "gumbel_top_k"},
    ]
    (demo / "results.json").write_text(json.dumps({"arguments": {"strategies": strategies}}))
    lines = update_all_docs(tmp_path / "outputs" / "tiny", tmp_path)
    assert any(
        line.startswith("skipped results:") and "another run's table (2 arms" in line for line in lines
    )
    assert (tmp_path / "README.md").read_text() == (ROOT / "README.md").read_text()
