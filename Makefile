# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A PostgreSQL server for the second test pass (the role needs CREATEDB).
# Unset: probe the local server with pg_isready and use the flexadr role if it answers.
FLEXADR_TEST_DATABASE_URL ?=
PG_DEFAULT_URL ?= postgresql://flexadr:flexadr@127.0.0.1:5432/flexadr

# Peers that need another Python live in venvs of their own under var/peers:
# ElaadNL's openadr3-client needs Python >= 3.12 (pyenv's, when there is one).
PYTHON312 ?= $(or $(shell ls -d $$HOME/.pyenv/versions/3.12*/bin/python3.12 2>/dev/null | tail -1),$(shell command -v python3.12 2>/dev/null))
OPENADR3_CLIENT := var/peers/openadr3

.PHONY: demo test test-sqlite test-postgres clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps re-install only when pyproject.toml changes.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/flexadr-demo

# The whole suite on SQLite, then the database tests (-m db) again on PostgreSQL
# when one is reachable.
test: test-sqlite test-postgres

$(OPENADR3_CLIENT)/.installed:
	@if [ -n "$(PYTHON312)" ]; then \
		$(PYTHON312) -m venv $(OPENADR3_CLIENT) && \
		$(OPENADR3_CLIENT)/bin/pip install --quiet 'openadr3-client==2.4.2' && touch $@; \
	else echo "== no Python 3.12 here: the openadr3-client interop test is skipped"; fi

test-sqlite: $(VENV)/.installed-test $(OPENADR3_CLIENT)/.installed
	FLEXADR_TEST_DATABASE_URL= $(BIN)/python -m pytest $(PYTEST_ARGS)

test-postgres: $(VENV)/.installed-test
	@url="$(FLEXADR_TEST_DATABASE_URL)"; \
	if [ -z "$$url" ] && command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1; then \
		url="$(PG_DEFAULT_URL)"; fi; \
	case "$$url" in \
	postgresql://*|postgres://*) \
		echo "== database tests on PostgreSQL"; \
		FLEXADR_TEST_DATABASE_URL="$$url" $(BIN)/python -m pytest -m db $(PYTEST_ARGS) ;; \
	*) echo "== no PostgreSQL reachable: database tests ran on SQLite only" ;; \
	esac

clean:
	rm -rf $(VENV) var build *.egg-info
