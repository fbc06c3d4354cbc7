# Tanpu build skeleton. `make test` needs only Python 3.11 (or 3.12) and gcc.

# Prefer python3.11, then python3.12, then python3 -- whichever first is a
# Python in [3.11, 3.13) (a pyenv shim for a missing version is skipped).
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell for p in python3.11 python3.12 python3; do \
	  command -v $$p >/dev/null 2>&1 && \
	  $$p -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 13)))' >/dev/null 2>&1 && \
	  { command -v $$p; break; }; \
	done)
endif
VENV ?= .venv
PYTEST_ARGS ?=

STAMP := $(VENV)/.installed

.PHONY: install test run demo i18n check fuzz bench clean distclean

install: $(STAMP)

# durable-rules 2.0.28 ships only as an sdist: pip compiles its C extension
# (durable_rules_engine) with gcc against the Python headers. Nothing else is
# needed (checked on CPython 3.11.7 and 3.12.1).
$(STAMP): pyproject.toml setup.py clients/python/pyproject.toml $(wildcard engine/native/*.c engine/native/*.h)
	@test -n "$(PYTHON)" || { echo "error: no Python 3.11 or 3.12 found (set PYTHON=...)" >&2; exit 1; }
	@command -v $${CC:-gcc} >/dev/null 2>&1 || command -v cc >/dev/null 2>&1 || \
	  { echo "error: a C compiler (gcc) is needed to build durable-rules" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --upgrade pip
	$(VENV)/bin/python -m pip install -e '.[test]'
	@# the API's Python client (clients/python): tests/webui/test_api_docs.py runs the docs with it
	$(VENV)/bin/python -m pip install -e clients/python
	@# an editable install compiles no bytecode, and where PYTHONDONTWRITEBYTECODE is set
	@# nothing ever would: every command would compile the project's modules at its start
	$(VENV)/bin/python -m compileall -q dsl engine tanpu registry webui docgen >/dev/null
	touch $@

# The suite in parallel (pytest-xdist): one worker per core, at most 4 (each may start a
# server, a browser or Spark); a test file stays on one worker, so its module fixtures are
# made once; the files are handed out in collection order, the slowest first
# (tests/conftest.py HEAVY). TEST_WORKERS=0 runs it in this process (pdb, -x).
TEST_WORKERS ?= auto
test: $(STAMP)
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --maxprocesses=4 --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# The web UI on http://127.0.0.1:5000 (PORT overrides) with waitress: migrates the
# SQLite database (var/tanpu.db; DATABASE_URL overrides), publishes the bundled
# methodologies, and prints a first administrator's password on the first start.
PORT ?= 5000
run: $(STAMP)
	$(VENV)/bin/tanpu serve --port $(PORT)

# Command-line demo: check, then run the tests of, the bundled methodologies.
demo: $(STAMP)
	$(VENV)/bin/tanpu check methodologies/ && $(VENV)/bin/tanpu test methodologies/

# Web UI messages: extract the msgids, merge them into the .po files (translate the new
# ones), compile the .mo files (both are committed).
i18n: $(STAMP)
	$(VENV)/bin/pybabel extract -F webui/babel.cfg -k _l -o $(VENV)/messages.pot webui
	$(VENV)/bin/pybabel update -i $(VENV)/messages.pot -d webui/translations --no-fuzzy-matching
	$(VENV)/bin/pybabel compile -d webui/translations

check: $(STAMP)
	$(VENV)/bin/tanpu check methodologies/

# Long property-based runs: the tests marked slow (the API fuzzed longer:
# tests/webui/test_api_fuzz.py, TANPU_FUZZ_EXAMPLES per operation) and those marked fuzz,
# whose example counts follow the profile (`make test` runs them with fewer: tests/conftest.py);
# pytest exit 5 (no such tests collected) is not an error.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(VENV)/bin/pytest -m "slow or fuzz" $(PYTEST_ARGS) || [ $$? -eq 5 ]

bench: $(STAMP)
	@set -e; for f in bench/*.py; do \
	  [ -e "$$f" ] || continue; \
	  echo "== $$f"; \
	  $(VENV)/bin/python "$$f"; \
	done

clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis bench/out bench/results
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
