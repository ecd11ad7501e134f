# Two entry points for a newcomer: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-quick lint format bench bench-moe bench-peer cuda-paths clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch is pinned to 2.13.0 (a CPU wheel on this machine's disk); plain `torch` pulls a CUDA build.
	$(PY) -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/expertune demo

test: $(STAMP)
	$(PY) -m pytest

test-quick: $(STAMP)
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

format: $(STAMP)
	$(PY) -m ruff format src tests benchmarks
	$(PY) -m ruff check --fix src tests benchmarks

bench: $(STAMP)  # every benchmark; rewrites docs/benchmarks.md
	$(PY) benchmarks/run_all.py

bench-moe: $(STAMP)  # does the split pay? 5 seeds x 4 arms; rewrites docs/results/moe_vs_single.md
	cd benchmarks && ../$(PY) moe_vs_single.py --seeds 5

# SimpleTuner side by side (issue 11): its own venv under benchmarks/peer/.venv (about
# 7.5 GB, refused below 15 GB free), never part of `make test` or `make bench`.
PEER_VENV := benchmarks/peer/.venv
$(PEER_VENV)/.installed: benchmarks/peer/install.sh
	PYTHON=$(PYTHON) PEER_VENV=$(PEER_VENV) benchmarks/peer/install.sh

bench-peer: $(STAMP) $(PEER_VENV)/.installed
	$(PY) benchmarks/peer/peer_bench.py --peer-venv $(PEER_VENV)

cuda-paths: $(STAMP)  # the GPU code paths on a CUDA machine (refuses on a CPU; --allow-cpu checks the harness)
	$(PY) benchmarks/cuda_paths.py

clean:
	rm -rf $(VENV) expertune-demo .pytest_cache .ruff_cache
