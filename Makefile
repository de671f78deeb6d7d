# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A PostgreSQL server for the second test pass (the role needs CREATEDB).
# Unset: probe the local server with pg_isready and use the flexadr role if it answers.
FLEXADR_TEST_DATABASE_URL ?=
PG_DEFAULT_URL ?= postgresql://flexadr:flexadr@127.0.0.1:5432/flexadr

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

test-sqlite: $(VENV)/.installed-test
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
