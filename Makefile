# actloss_bench — see README.md. Every target installs into .venv first (idempotent).
PY      := .venv/bin/python
PIP     := .venv/bin/pip
STAMP   := .venv/.installed
QUICK   ?= 1

.PHONY: run test bench lint ui server install experiments report clean

$(STAMP): pyproject.toml constraints.txt
	test -d .venv || python3 -m venv .venv
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## make run: every experiment at its quick profile, then the report (results/).
run: $(STAMP)
	$(PY) -m actloss_bench.run_all --profile quick
	.venv/bin/actloss-report --all

## make test: the test suite (CI runs this).
test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/run.py

lint: $(STAMP)
	.venv/bin/ruff check actloss_bench tests benchmarks

## make ui: MLflow UI over results/mlflow.db on http://127.0.0.1:5000
ui: $(STAMP)
	.venv/bin/mlflow ui --backend-store-uri sqlite:///results/mlflow.db \
	  --default-artifact-root results/mlartifacts --host 127.0.0.1 --port 5000

## make server: a shared tracking server with a SQL backend (SQLite; DB=postgres for PostgreSQL)
server: $(STAMP)
	$(PY) -m actloss_bench.server $(if $(DB),--db $(DB),)

clean:
	rm -rf outputs .pytest_cache
