# actloss_bench — see README.md. Every target installs into .venv first (idempotent).
PY      := .venv/bin/python
PIP     := .venv/bin/pip
STAMP   := .venv/.installed
# make run SEED=100 RESULTS=replicate: the catalogue on seeds 100.. into another folder.
SEED    ?= 0
RESULTS ?= results
PORT    ?= 5000
PROFILE ?= quick

.PHONY: run real test test-fast bench lint ui server install clean

$(STAMP): pyproject.toml constraints.txt
	test -d .venv || python3 -m venv .venv
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## make run: every experiment at its quick profile, then the report ($(RESULTS)/).
run: $(STAMP)
	$(PY) -m actloss_bench.cli.run_all --profile $(PROFILE) --seed $(SEED) --results $(RESULTS)
	.venv/bin/actloss-report --all --uri sqlite:///$(abspath $(RESULTS))/mlflow.db --out $(RESULTS)

## make real: each claim's primary rule re-checked on a real dataset (claim.real_data) into
## the same store, then the report again (its index gets the "real data" column).
real: $(STAMP)
	$(PY) -m actloss_bench.cli.run_all --real --profile $(PROFILE) --seed $(SEED) --results $(RESULTS)
	.venv/bin/actloss-report --all --uri sqlite:///$(abspath $(RESULTS))/mlflow.db --out $(RESULTS)

## make test: the whole suite (CI runs this): tests/unit, tests/integration (real sweeps into
## temporary stores) and tests/system (Slurm, PostgreSQL, a browser, Ray), one file per core.
test: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadfile tests

## make test-fast: unit and integration tests, without the slow end-to-end ones (marked
## slow: every experiment through the report, make run), for the edit loop.
test-fast: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadfile -m "not slow" tests/unit tests/integration

bench: $(STAMP)
	$(PY) benchmarks/run.py

lint: $(STAMP)
	.venv/bin/ruff check actloss_bench tests benchmarks

## make ui: MLflow UI over $(RESULTS)/mlflow.db on 127.0.0.1:$(PORT); prints each experiment's
## address, which opens on its model runs with their key metrics as columns
ui: $(STAMP)
	@$(PY) -m actloss_bench.ops.ui --uri sqlite:///$(abspath $(RESULTS))/mlflow.db --port $(PORT)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false .venv/bin/mlflow ui --backend-store-uri sqlite:///$(abspath $(RESULTS))/mlflow.db \
	  --default-artifact-root $(abspath $(RESULTS))/mlartifacts --host 127.0.0.1 --port $(PORT)

## make server: a shared tracking server with a SQL backend (SQLite; DB=postgres for PostgreSQL)
server: $(STAMP)
	$(PY) -m actloss_bench.ops.server --root $(RESULTS)/server --port $(PORT) $(if $(DB),--db $(DB),)

clean:
	rm -rf outputs .pytest_cache
