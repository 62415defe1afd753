# Set-up and chores. `make demo` and `make test` install everything they need on a fresh machine.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
# CPU build of PyTorch: on machines without a GPU this avoids a multi-GB CUDA download.
TORCH_SPEC ?= torch==2.13.0
# MONAI Label (optional extra `label`) needs torchvision, so it gets its own environment: torch 2.14.1 and
# torchvision 0.29.1 come from these machines' disk (a CUDA build), MONAI Label from PyPI; about 8 GB in all.
LABEL_VENV ?= .venv-label
LABEL_TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install install-label demo test lint clean

$(BIN)/brainsynth: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/brainsynth

$(LABEL_VENV)/bin/brainsynth: pyproject.toml
	$(PYTHON) -m venv $(LABEL_VENV)
	$(LABEL_VENV)/bin/pip install --quiet --upgrade pip
	$(LABEL_VENV)/bin/pip install --quiet $(LABEL_TORCH_SPEC)
	$(LABEL_VENV)/bin/pip install --quiet -e ".[label]"
	touch $@

install-label: $(LABEL_VENV)/bin/brainsynth

demo: install
	$(BIN)/brainsynth demo

# tests/label_app starts the MONAI Label server from $(LABEL_VENV). Two test processes for the two cores of the CI
# machine; each test module runs whole on one of them (tests/suite_settings.py).
test: install install-label
	$(BIN)/python -m pytest -q -n 2

lint: install
	$(BIN)/ruff check common tests benchmarks
	$(BIN)/ruff format --check common tests benchmarks

clean:
	rm -rf outputs data/demo_cache
