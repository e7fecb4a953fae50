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

.PHONY: install demo test slow_test style quality clean

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) scripts/build_validation_sets.py --config recipes/$(RECIPE)/validation_sets.yaml
	$(PY) scripts/build_corpus.py --config recipes/$(RECIPE)/corpus.yaml
	$(PY) scripts/pretrain.py --config recipes/$(RECIPE)/pretrain.yaml --auto_resume false
	rm -rf outputs/$(RECIPE)/influence  # scores of the previous run's checkpoints would be stale
	$(PY) scripts/compute_influence.py --config recipes/$(RECIPE)/influence.yaml
	$(PY) scripts/compute_influence.py --config recipes/$(RECIPE)/influence_exact.yaml
	@echo "demo finished: results and plots under outputs/$(RECIPE)/ (influence scores: outputs/$(RECIPE)/influence/step-<k>/<method>, plots in outputs/$(RECIPE)/influence/plots/)"

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
