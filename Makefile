# The two commands of the README, and the steps they are made of. Recipes are plain shell, so
# they can be copied by hand on a machine without make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint install bench clean

## First command: install, migrate SQLite, load demo data, create a demo key, serve.
run: install
	$(BIN)/decision-server quickstart --host $(HOST) --port $(PORT)

## Second command: the whole test suite, on SQLite and PostgreSQL.
test: install
	$(BIN)/python -m pytest

## Lint and format check (CI runs it before the tests); `$(BIN)/ruff format .` formats.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) var build *.egg-info
