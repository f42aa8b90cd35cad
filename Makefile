# The two commands of the README, plus the benchmarks. Every target sets up .venv first
# (scripts/setup_env.sh: Python 3.10 + the pinned stack; a no-op when nothing changed).
PY := .venv/bin/python
ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup run test lint bench lock clean

setup:
	@bash scripts/setup_env.sh

run: setup
	$(PY) pipeline/run_local.py $(ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: setup
	$(PY) benchmarks/bench_model.py $(ARGS)

lock:
	bash scripts/lock.sh

clean:
	rm -rf spanet_output .pytest_cache
