# The README's two commands: `make demo` (train + evaluate, prints a results table) and `make test`.
# Both create .venv and install what they need: CPU torch 2.13 first when torch is absent (a bare
# `pip install torch` would pull a multi-GB CUDA build), then this project with its test extras, every package at
# the version constraints.txt pins (the versions the README's demo table was made with).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ip-pyro-installed

.PHONY: demo test bench bench-quick install clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -c constraints.txt "torch==2.13.0"
	$(BIN)/python -m pip install -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/quickstart.py

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run --json benchmarks/results.json

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks.run --quick

clean:
	rm -rf $(VENV) build *.egg-info
