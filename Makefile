# Set-up and chores. `make demo` and `make test` install everything they need on a fresh machine.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
# CPU build of PyTorch: on machines without a GPU this avoids a multi-GB CUDA download.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test lint clean

$(BIN)/brainsynth: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/brainsynth

demo: install
	$(BIN)/brainsynth demo

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check common tests benchmarks
	$(BIN)/ruff format --check common tests benchmarks

clean:
	rm -rf outputs data/demo_cache
