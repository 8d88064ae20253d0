# dmsupdate: `make run` for the demo on embedded defaults, `make test` for the test suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/dmsupdate
PYTEST_ARGS ?=

.PHONY: run test lint fmt bench install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py createcachetable
	$(PY) manage.py demo
	$(PY) manage.py run_demo

test: $(STAMP)
	@DATABASE_URL="$(DATABASE_URL)" $(PY) -c "import dj_database_url, psycopg, sys; c = dj_database_url.parse(sys.argv[1]); \
	  psycopg.connect(host=c['HOST'] or None, port=c['PORT'] or None, user=c['USER'], password=c['PASSWORD'] or None, dbname='postgres', connect_timeout=5).close()" "$(DATABASE_URL)" \
	  || { echo "PostgreSQL does not answer at $(DATABASE_URL): start it, or set DATABASE_URL" >&2; exit 1; }
	DATABASE_URL="$(DATABASE_URL)" $(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy dmsupdate/state dmsupdate/agent

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	DATABASE_URL="$(DATABASE_URL)" $(PY) -m bench

clean:
	rm -rf $(VENV) var
