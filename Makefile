# The two commands (README): `make demo` runs the tiny recipe end to end, `make test` runs the tests.
# Each sets up .venv from requirements.txt on first use, so a fresh machine needs nothing else.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RECIPE ?= tiny
# The tiny recipe and the tests never reach the Hub; export HF_HUB_OFFLINE=0 to override.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PYTHONUNBUFFERED := 1

.PHONY: install demo docs table exact replicate report pretrain_selected notebooks test slow_test style quality clean

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) scripts/build_validation_sets.py --config recipes/$(RECIPE)/validation_sets.yaml
	$(PY) scripts/build_corpus.py --config recipes/$(RECIPE)/corpus.yaml
	$(PY) scripts/pretrain.py --config recipes/$(RECIPE)/pretrain.yaml --auto_resume false
	$(PY) scripts/compute_influence.py --config recipes/$(RECIPE)/influence.yaml
	$(PY) scripts/train_predictor.py --config recipes/$(RECIPE)/predictor.yaml
	$(PY) scripts/filter_data.py --config recipes/$(RECIPE)/filter.yaml
	$(PY) scripts/run_experiment.py --config recipes/$(RECIPE)/experiment.yaml
	$(PY) scripts/push_to_hub.py --config recipes/$(RECIPE)/push_to_hub.yaml   # export only; --push true uploads
	@echo "demo finished; everything is under outputs/$(RECIPE)/. The results table: outputs/$(RECIPE)/experiment/results.md (plot: results.png); Hub-ready exports: outputs/$(RECIPE)/hub/"

# The results table over three to five seeds (reuses the demo's warm-up, scores and finished cells): the
# recipe's experiment_table.yaml (every arm), else its experiment.yaml at three seeds.
TABLE_RECIPE = $(if $(wildcard recipes/$(RECIPE)/experiment_table.yaml),recipes/$(RECIPE)/experiment_table.yaml,recipes/$(RECIPE)/experiment.yaml --seeds 42 43 44)
table: install
	test -f outputs/$(RECIPE)/experiment/results.md || $(MAKE) demo
	if [ -f recipes/$(RECIPE)/influence_exact.yaml ]; then $(MAKE) exact; fi   # the exact probe's bill (equal_compute_exact)
	$(PY) scripts/run_experiment.py --config $(TABLE_RECIPE)
	if [ "$(RECIPE)" = tiny ]; then $(PY) scripts/update_docs.py --results outputs/$(RECIPE)/experiment; fi   # README's headline, docs/06
	@echo "three-seed table: outputs/$(RECIPE)/experiment/results.html (markdown: results.md, plot: results.png)"

# The paper's design: fresh models pretrained on selected data (full, random, filtered, MATES's loop),
# three seeds; after `make demo` (about 40 minutes on 2 cores). Not part of the demo.
pretrain_selected: install
	test -f outputs/$(RECIPE)/predictor/metrics.json || $(MAKE) demo
	$(PY) scripts/pretrain_selected.py --config recipes/$(RECIPE)/pretrain_selected.yaml
	if [ "$(RECIPE)" = tiny ]; then $(PY) scripts/update_docs.py --pretrain_selected outputs/$(RECIPE)/pretrain_selected; fi
	@echo "pretraining on selected data: outputs/$(RECIPE)/pretrain_selected/results.md (figure: results.png)"

# Exact influence scores on a subset, to check the fast scores against (stage 03).
exact: install
	$(PY) scripts/compute_influence.py --config recipes/$(RECIPE)/influence_exact.yaml

# A second warm-up that differs only in its seed, scored as influence_stages.yaml scores the first:
# how alike two runs of one setting rank the blocks (the ceiling the report's "varies" is tested against).
replicate: install
	$(PY) scripts/pretrain.py --config recipes/$(RECIPE)/pretrain.yaml --seed 43 --output_dir outputs/$(RECIPE)/pretrain_replicate
	$(PY) scripts/compute_influence.py --config recipes/$(RECIPE)/influence_replicate.yaml

# The findings report (scores at three checkpoints and every task, a second warm-up's for the
# run-to-run ceiling, then the analysis); after `make demo`.
report: install
	test -d outputs/$(RECIPE)/pretrain/checkpoint-300 || $(MAKE) demo
	$(PY) scripts/compute_influence.py --config recipes/$(RECIPE)/influence_stages.yaml
	if [ -f recipes/$(RECIPE)/influence_replicate.yaml ]; then $(MAKE) replicate; fi   # the run-to-run ceiling
	$(PY) scripts/analyze.py --config recipes/$(RECIPE)/analyze.yaml
	if [ "$(RECIPE)" = tiny ]; then $(PY) scripts/update_docs.py --report outputs/$(RECIPE)/report.md; fi   # docs/findings.md
	@echo "findings report: outputs/$(RECIPE)/report.html (open it in a browser; markdown: report.md, figures: outputs/$(RECIPE)/report/)"

# Every notebook (and the workshop's answers) executed on the tiny recipe into outputs/notebooks/,
# with outputs and an HTML page each; reuses the demo's outputs, so run it after `make demo`.
notebooks: install
	$(PY) scripts/run_notebooks.py --output_dir outputs/notebooks
	$(PY) scripts/update_docs.py --timings outputs/notebooks/timings.json   # workshop/README.md

# Every generated block of README, docs and workshop from the runs' outputs (what exists of
# demo, table, pretrain_selected, report, notebooks); the others are named, not touched.
docs: install
	$(PY) scripts/update_docs.py --all outputs/$(RECIPE)

test: install
	$(PY) -m pytest tests

slow_test: install
	$(PY) -m pytest tests -m slow

style: install
	$(VENV)/bin/ruff format src scripts tests benchmarks
	$(VENV)/bin/ruff check --fix src scripts tests benchmarks

quality: install
	$(VENV)/bin/ruff check src scripts tests benchmarks

clean:
	rm -rf outputs
