# The two commands the README promises, plus the pieces they are made of.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-browser install services lint clean

$(BIN)/drip: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/drip

install: $(BIN)/drip

# The main job on embedded defaults: no Redis, PostgreSQL or provider account needed.
demo: install
	$(BIN)/drip demo

# The whole suite. Uses PostgreSQL and Redis on localhost (see README) if they answer, else
# starts private ones from the test extra's packages (tests/services.py).
test: install
	$(BIN)/python -m pytest

# Only the browser tests (also part of `make test`): Chromium through every page, axe-core's
# checks, full-page screenshots in build/screenshots/.
test-browser: install
	$(BIN)/python -m pytest tests/browser

# The design's lines held by tools: lint rules, formatting, import boundaries, and the
# campaigns' copy (strict: every step clinically reviewed as it stands).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/drip campaigns lint --strict --quiet

clean:
	rm -rf var/demo preview .pytest_cache build/screenshots
