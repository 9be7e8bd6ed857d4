# Keyturn: `make demo` shows the lifecycle, `make test` runs every check. Both bootstrap .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# apt-get waits for a dpkg lock another install holds (a fresh machine may be installing something else).
APT := apt-get -o DPkg::Lock::Timeout=300

.PHONY: install test lint typecheck demo bench services clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Redis and PostgreSQL are real in the tests. Use the local ones; on a fresh machine start (or install) them.
services:
	@command -v redis-server >/dev/null 2>&1 || redis-cli -p 6379 ping >/dev/null 2>&1 || \
		{ echo "installing redis-server (tests need a real Redis)"; \
		  ($(APT) update -qq && $(APT) install -y -qq redis-server) >/dev/null || \
		  echo "WARNING: no Redis: install redis-server or set KEYTURN_TEST_REDIS_URL"; }
	@pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || \
		{ command -v pg_ctlcluster >/dev/null 2>&1 && \
		  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -1) main start 2>/dev/null; } || \
		echo "WARNING: PostgreSQL is not answering on 127.0.0.1:5432: set KEYTURN_TEST_PG_URL or KEYTURN_SKIP_POSTGRES=1"
	@command -v chromium >/dev/null 2>&1 || \
		{ echo "installing chromium (the console's browser tests drive it)"; \
		  ($(APT) update -qq && $(APT) install -y -qq chromium) >/dev/null || \
		  echo "WARNING: no chromium: tests/console/test_browser.py is skipped"; }

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: $(STAMP) services lint typecheck
	$(PY) -m pytest -q -p no:cacheprovider

demo: $(STAMP)
	$(VENV)/bin/keyturn demo $(if $(KEEP),--keep)

# Benchmarks (bench/): the whole stack on this machine; writes bench/RESULTS.md. ~25 min. `$(PY) -m bench.run --quick`
# for a short development run. Needs wrk (Debian package, installed here when missing) and py-spy (PyPI).
bench: $(STAMP) services
	@command -v wrk >/dev/null 2>&1 || \
		{ echo "installing wrk (the ack benchmark's load generator)"; \
		  ($(APT) update -qq && $(APT) install -y -qq wrk) >/dev/null || \
		  echo "WARNING: no wrk: the ack benchmark cannot run (apt-get install wrk)"; }
	@test -x $(VENV)/bin/py-spy || $(PY) -m pip install -q py-spy || echo "WARNING: no py-spy: no profile"
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
