# The two commands a new machine needs: `make serve` and `make test`. Both are idempotent.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

NPM_DIRS := tests/e2e/js tests/hl7_gateway/js

.PHONY: serve test lint install npm-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/fhir-server serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy fhir_server resources mappers hl7_gateway smart_auth

# The pinned npm packages of the tests that drive real JS clients (the SMART app in Chromium, an MLLP
# client), installed with `npm ci` when npm is there and the lock file changed; without npm those tests
# skip (outside CI) with the reason.
npm-deps:
	@if command -v npm >/dev/null; then \
	  for dir in $(NPM_DIRS); do \
	    stamp="$$(cat $$dir/package.json $$dir/package-lock.json $$dir/.npmrc | cksum)"; \
	    if [ "$$(cat $$dir/node_modules/.installed 2>/dev/null)" != "$$stamp" ]; then \
	      (cd $$dir && npm ci --loglevel=error --no-progress >/dev/null) && echo "$$stamp" > $$dir/node_modules/.installed; \
	    fi; \
	  done; \
	fi

test: lint npm-deps
	$(BIN)/python -m pytest
