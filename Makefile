# The two commands a new machine needs: `make serve` and `make test`. Both are idempotent.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

E2E_JS := tests/e2e/js

.PHONY: serve test lint install e2e-js

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

# The pinned npm packages of the browser tests (tests/e2e), when npm is there; without it those tests skip
# (outside CI) with the reason.
e2e-js:
	@if command -v npm >/dev/null; then \
	  stamp="$$(cat $(E2E_JS)/package.json $(E2E_JS)/package-lock.json $(E2E_JS)/.npmrc | cksum)"; \
	  if [ "$$(cat $(E2E_JS)/node_modules/.installed 2>/dev/null)" != "$$stamp" ]; then \
	    (cd $(E2E_JS) && npm ci --loglevel=error --no-progress >/dev/null) && echo "$$stamp" > $(E2E_JS)/node_modules/.installed; \
	  fi; \
	fi

test: lint e2e-js
	$(BIN)/python -m pytest
