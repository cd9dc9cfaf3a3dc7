# Quick start: `make run` (trace every workload on this host, reports in ./data/)
# and `make test`. Both run the idempotent setup first.
VENV := .venv
PY := $(VENV)/bin/python
DATA := $(CURDIR)/data

.PHONY: setup setup-test run test lint bench matrix clean

setup:
	@bash scripts/setup.sh

setup-test:
	@bash scripts/setup.sh --test

run: setup
	@mkdir -p $(DATA)
	$(VENV)/bin/snoop run --target-mode all-but-self --report-dir $(DATA)/reports \
		--run-dir $(DATA)/run --report-interval 10s

lint: setup
	@$(VENV)/bin/ruff check .

test: setup-test lint
	@$(PY) -m pytest -q

bench: setup-test
	@$(PY) bench/run_all.py

# The capture tests on other kernels, each booted under qemu (docs/compatibility.md).
# Slow, so not part of `make test`. MATRIX_ARGS="--quick" or "--kernels 5.10,6.1".
matrix:
	@bash scripts/setup.sh --test --matrix
	@$(PY) scripts/matrix/run.py $(MATRIX_ARGS)

clean:
	rm -rf $(VENV) data .pytest_cache
