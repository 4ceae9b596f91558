# Two commands set everything up: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DO_NOT_TRACK := 1
export DAGSTER_DISABLE_TELEMETRY := 1

.PHONY: venv demo test lint bench soak serve browser clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/meterhouse demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

# Headless Chromium and its driver for the dashboard tests (Debian packages; needs root).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }

lint: $(STAMP)
	$(BIN)/python -m ruff check models orchestration api bench tests

serve: $(STAMP)
	$(BIN)/meterhouse serve

# Benchmark (bench/README.md): `make bench ARGS="--events 1000000"`; default 10M events;
# the same as `meterhouse bench ARGS`.
bench: $(STAMP)
	$(BIN)/python -m bench.run $(ARGS)

# Exactness under scale (orchestration/soak.py): `make soak ARGS="--events 1000000"`.
soak: $(STAMP)
	$(BIN)/meterhouse soak $(ARGS)

clean:
	rm -rf $(VENV) warehouse dbt_project/target dbt_project/logs
