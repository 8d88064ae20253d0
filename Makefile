# dmsupdate: `make run` for the demo on embedded defaults, `make test` for the test suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The web app and the agent; the test and lint tools on top for everything but `run`.
SERVER_STAMP := $(VENV)/.installed-server
DEV_STAMP := $(VENV)/.installed-dev
TEST_DATABASE_URL := $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/dmsupdate)
PYTEST_ARGS ?= -n 2
# Browsers come from the system (Debian's chromium), never from a download.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: run demo test lint fmt bench install clean

$(VENV)/bin/python:
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "dmsupdate needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(SERVER_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e ".[server]"
	touch $@

$(DEV_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@ $(SERVER_STAMP)

install: $(DEV_STAMP)

# The demo: SQLite under var/ unless DATABASE_URL is set; DMSUPDATE_DEMO_PORT picks the port (8000).
run: $(SERVER_STAMP)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py createcachetable
	$(PY) manage.py demo
	$(PY) manage.py run_demo

test: $(DEV_STAMP)
	@$(PY) -c "import dj_database_url, psycopg, sys; c = dj_database_url.parse(sys.argv[1]); \
	  psycopg.connect(host=c['HOST'] or None, port=c['PORT'] or None, user=c['USER'], password=c['PASSWORD'] or None, dbname='postgres', connect_timeout=5).close()" "$(TEST_DATABASE_URL)" \
	  || { echo "PostgreSQL does not answer at $(TEST_DATABASE_URL): start it, or set DATABASE_URL" >&2; exit 1; }
	@# pytest exits 5 when it collected nothing: a broken selection must fail, not pass quietly.
	@DATABASE_URL="$(TEST_DATABASE_URL)" $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy dmsupdate/state dmsupdate/agent

fmt: $(DEV_STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# SCALE=1 adds the fleet at 10x (10,000 servers, 10,000,000 objects: built once, then kept).
bench: $(DEV_STAMP)
	DATABASE_URL="$(TEST_DATABASE_URL)" $(PY) -m bench $(if $(SCALE),--scale)

clean:
	rm -rf $(VENV) var
