# Every target creates .venv on first use and installs what it needs from PyPI.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run demo test lint docs debs bench bench-scale drill drill-audience clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## the worker, an embedded Temporal dev server (UI on http://localhost:8233), the HTTP API on :8000
	JOURNEYS_DIR=examples $(BIN)/python worker.py --dev --serve

demo: $(STAMP)  ## the product page's scenarios for a few users, on the time-skipping server
	$(BIN)/python -m scripts.demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy .

# pytest-xdist: the test modules side by side, each module whole on one worker (its servers are
# module-wide), slowest first (tests/conftest.py orders them). Many tests wait on servers and
# subprocesses, so more workers than cores pays; TEST_WORKERS=0 runs them in one process.
TEST_WORKERS ?= 3
TEST_PARALLEL = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

# The project's bytecode first: the tests start some 250 command and worker processes, and where
# PYTHONDONTWRITEBYTECODE is set (CI's image) each would compile every module it imports again.
test: lint docs debs  ## ruff, mypy, the docs site, then every test (the store's on SQLite and on PostgreSQL), side by side
	$(BIN)/python -m compileall -q -j 0 -x '(^|/)(\.[a-z_]+|site)(/|$$)' .
	url="$$(bash scripts/ci/postgres.sh)" && JOURNEYS_TEST_POSTGRES_URL="$$url" $(BIN)/pytest -q $(TEST_PARALLEL)

# The documentation site, in site/: its pages made from the code (the JSON Schema, the rule codes)
# must be current (`python -m scripts.docs` writes them), and mkdocs builds with --strict.
docs: $(STAMP)  ## the docs site (docs/, mkdocs.yml) into site/: open site/index.html
	$(BIN)/python -m scripts.docs --check
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# Debian packages the tests drive: chromium (the report test opens `starter.py report` in it) and
# nginx (the mTLS test's TLS frontend). Installed here when missing, as root (CI's fresh machine);
# otherwise a line says how (the tests skip without them, and fail under CI=true).
debs:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	{ command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; } || missing="$$missing nginx"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	    echo "make: missing:$$missing ('sudo apt-get install$$missing'); their tests skip, and fail under CI=true"; \
	  else \
	    echo "make: installing$$missing (apt-get) for the tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi; \
	fi

bench: $(STAMP)
	$(BIN)/python -m scripts.bench

bench-scale: $(STAMP)  ## report and validate on 5,000-node journeys: seconds, page bytes, picture size
	$(BIN)/python -m scripts.bench_scale

drill: $(STAMP)  ## the load drill: 20,000 parked users, restarts, a SIGKILL (under 15 minutes)
	$(BIN)/python -m scripts.drill

drill-audience: $(STAMP)  ## a broadcast to ~47,500 of 100,000 users on SQLite and PostgreSQL, a SIGKILL mid-run, priority against none
	$(BIN)/python -m scripts.drill_audience

.PHONY: screenshots
screenshots: $(STAMP) debs  ## the docs' Temporal UI screenshots (docs/ui-*.png), by hand
	$(BIN)/python -m scripts.screenshots

clean:
	rm -rf $(VENV) .journeys .mypy_cache .pytest_cache .ruff_cache site
