# ticket-gateway: the two commands are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | cksum | cut -d' ' -f1)
export PIP_CONSTRAINT := $(CURDIR)/requirements.lock
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test install lint unit lock clean

## run: the daemon on the embedded demo config (SQLite, SMTP listener on 127.0.0.1:2525)
run: install
	$(BIN)/ticket-gateway --config config/demo.toml run

## test: install what the tests need, lint, type-check, run the whole suite
test: install
	bash scripts/ensure-dovecot.sh
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

lint: install
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench
	$(BIN)/mypy gateway

## unit: the pure tests only (no servers needed)
unit: install
	$(BIN)/pytest tests/unit

## lock: re-pin requirements.lock to what the venv has now
lock:
	{ sed -n '1,3p' requirements.lock; $(BIN)/pip freeze --exclude-editable | grep -v '^-e'; \
	  grep '^setuptools==' requirements.lock; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
