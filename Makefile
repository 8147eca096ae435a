# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo demo-events test check install dev bench chaos artifact clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Runtime + the embedded endpoint (moto's server): enough for the demo.
$(VENV)/.local-installed: $(VENV)/bin/python pyproject.toml
	$(PIP) install -e '.[local]'
	touch $@

# Everything the tests and checks need.
$(VENV)/.dev-installed: $(VENV)/bin/python pyproject.toml requirements-dev.txt
	$(PIP) install -e '.[dev]'
	touch $(VENV)/.local-installed $@

install: $(VENV)/.local-installed
dev: $(VENV)/.dev-installed

demo: $(VENV)/.local-installed
	$(PY) examples/demo.py

# The same, with no sendjobs: files uploaded with plain boto3 become jobs through S3 event notifications.
demo-events: $(VENV)/.local-installed
	$(PY) examples/demo_events.py

# Two and a half pytest workers per core (pytest-xdist): an end-to-end test spends much of its time
# waiting on its subprocesses and the local endpoint, and another worker's test can use the core
# meanwhile (on 2 cores, pytest's seconds: 4 workers 82.6-98.5, median 85.0; 5 workers 80.6-85.8;
# 6 workers 84.5). The slowest tests are handed out first (tests/conftest.py) and a worker that runs
# dry steals queued tests from another (worksteal: without it one worker was left with the whole e2e
# tier while the other idled).
# The suite starts about 150 Python processes on the same sources: with PYTHONDONTWRITEBYTECODE set
# (some images set it) each one compiles the package again and every pytest worker rewrites every
# test module, about 8 % of the suite's CPU. The tests write their bytecode (__pycache__ is ignored).
TEST_WORKERS ?= $(shell $(PYTHON) -c 'import os; print((5 * (os.cpu_count() or 1) + 1) // 2)' 2>/dev/null || echo 3)
test: $(VENV)/.dev-installed
	PYTHONDONTWRITEBYTECODE= $(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal

# The fast tier: pure modules and fakes, no server, no subprocess (seconds).
check: $(VENV)/.dev-installed
	PYTHONDONTWRITEBYTECODE= $(PY) -m pytest -q tests/unit

# Benchmarks (bench/README.md): moto, and fauxqs from the npm registry when node is there.
bench/.fauxqs/node_modules/fauxqs:
	@if command -v npm >/dev/null; then mkdir -p bench/.fauxqs && cd bench/.fauxqs && npm install --silent fauxqs@1.9.2; \
	else echo "node/npm not found: benchmarks run on moto only"; fi

bench: $(VENV)/.dev-installed bench/.fauxqs/node_modules/fauxqs
	$(PY) bench/run_all.py

# Build the pinned wheelhouse (filejobs.ops.artifact) and upload it where the workers' user data
# fetches it: s3://BUCKET/code/filejobs-<version>-wheelhouse.tar.gz (the stack's CodeKey).
artifact: $(VENV)/.local-installed
	@test -n "$(BUCKET)" || { echo "usage: make artifact BUCKET=<bucket>" >&2; exit 2; }
	@ARCHIVE="$$($(PY) -m filejobs.ops.artifact --out dist --cache $(VENV)/wheel-cache)" && \
	    aws s3 cp "$$ARCHIVE" "s3://$(BUCKET)/code/$$(basename "$$ARCHIVE")"

# Long chaos / fault-injection / SIGTERM-drain runs on a local endpoint (~6 min); prints one table.
chaos: $(VENV)/.dev-installed
	$(PY) bench/chaos.py

clean:
	rm -rf $(VENV) build dist *.egg-info demo-output demo-events-output
