# Quick start: `make run` (trace every workload on this host, reports in ./data/)
# and `make test`. Both run the idempotent setup first.
VENV := .venv
PY := $(VENV)/bin/python
DATA := $(CURDIR)/data

.PHONY: setup setup-test run test lint bench clean

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

clean:
	rm -rf $(VENV) data .pytest_cache
