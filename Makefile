# The list of commands. `make demo` and `make test` are the two the README opens with.
export UV_PYTHON_DOWNLOADS := never
UV ?= uv

.PHONY: setup demo demo-airflow test test-unit test-integration test-e2e test-chaos lint bench stack-up stack-down

setup:
	@scripts/setup.sh

demo: setup
	$(UV) run metalcast demo

demo-airflow: setup
	$(UV) run metalcast demo --with-airflow

test: setup lint
	$(UV) run pytest

test-unit: setup
	$(UV) run pytest tests/unit

test-integration: setup
	$(UV) run pytest tests/integration

test-e2e: setup
	$(UV) run pytest tests/e2e

test-chaos: setup
	$(UV) run pytest -s tests/chaos

lint:
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy

# BULK_SYMBOLS=1000 make bench: a smaller bulk-pipeline run (the default is the full 8,000).
BULK_SYMBOLS ?= 8000

bench: setup
	$(UV) run python bench/bench_ingest.py
	$(UV) run python bench/bench_trainer_latency.py
	$(UV) run python bench/bench_forecast_quality.py
	$(UV) run python bench/bench_trainer_scale.py
	$(UV) run python bench/bench_api.py
	$(UV) run python bench/bench_backup.py
	$(UV) run python bench/bench_chaos.py
	$(UV) run python bench/bench_bars.py
	$(UV) run python bench/bench_trainer_instruments.py
	$(UV) run python bench/bench_bulk.py --symbols $(BULK_SYMBOLS)

stack-up: setup
	$(UV) run metalcast stack up

stack-down:
	$(UV) run metalcast stack down
