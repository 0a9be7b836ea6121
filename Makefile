# The README's two commands are `make demo` and `make test`; both create .venv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck unit bench soak schema clean

$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "fotawatch needs Python >= 3.11 (set PY=python3.11)")'
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fotawatch demo

lint: $(STAMP)
	$(BIN)/ruff check fotawatch tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m bench

# 30 min, 1,000 campaigns at 1 s with faults; FOTAWATCH_SOAK_{SECONDS,CAMPAIGNS,INTERVAL,CHANGES,REPORT}
# change it (tests/test_soak.py). Prints the JSON figures for docs/reliability.md.
soak: $(STAMP)
	$(BIN)/pytest -m soak -s tests/test_soak.py

schema: $(STAMP)
	$(BIN)/python -m fotawatch.config schema > config/fotawatch.schema.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
