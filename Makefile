# Two commands for users: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU machines get the small CPU build of torch; with an NVIDIA driver present, a CUDA build.
TORCH  ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo "torch>=2.2" || echo "torch==2.13.0")

# The optional extras that install and run on a CPU machine, so `make test` runs their tests too.
EXTRAS ?= ray,minari,box2d,mujoco,minatar,pixels

.PHONY: setup demo test lint format bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev,$(EXTRAS)]"
	touch $@

demo: setup
	$(BIN)/genrl train cartpole

lint: setup
	$(BIN)/ruff check genrl tests examples benchmarks docs
	$(BIN)/ruff format --check genrl tests examples benchmarks docs
	$(BIN)/lint-imports --no-cache  # the import direction between genrl's layers (pyproject.toml)

format: setup
	$(BIN)/ruff format genrl tests examples benchmarks docs
	$(BIN)/ruff check --fix genrl tests examples benchmarks docs

test: lint
	$(BIN)/python -m pytest -q --durations=8 tests

# Benchmarks, never part of `make test` (about five hours on 2 cores); results in benchmarks/RESULTS.md.
bench: setup
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/throughput.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/sample_efficiency.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/anomaly.py --out benchmarks/anomaly.json
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/planning.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/generation.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/augmentation.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/synthesis.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/distributed.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/pixels.py speed
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/pixels.py run pixel_cartpole --budget-s 3600 --max-real-steps 10000
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/pixels.py run minatar_breakout --budget-s 7200 --max-real-steps 100000

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
