# The two commands of the README, plus the benchmarks. Every target sets up .venv first
# (scripts/setup_env.sh: Python 3.10 + the pinned stack; a no-op when nothing changed).
PY := .venv/bin/python
ARGS ?=
PYTEST_ARGS ?=
# Test worker processes (pytest-xdist; 0 runs the suite in this process). Modules stay whole on one
# worker, so module fixtures run once; the shared tiny pipeline run is made once for all workers.
PYTEST_WORKERS ?= 2

.PHONY: setup run test lint bench lock clean

setup:
	@bash scripts/setup_env.sh

run: setup
	$(PY) pipeline/run_local.py $(ARGS)

test: setup
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: setup
	$(PY) benchmarks/bench_model.py $(ARGS)

lock:
	bash scripts/lock.sh

clean:
	rm -rf spanet_output .pytest_cache
