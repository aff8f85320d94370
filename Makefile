# refurbgrade's commands. The README's two set-up commands are `make run` and `make test`;
# .ci/run calls `make test`. Every dependency comes from pyproject.toml, pinned by constraints.txt.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv run serve test lint format clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[serve,train,dev]'
	touch $(STAMP)

venv: $(STAMP)

# The main job. Until the bundled model lands: the rules engine on a sample of measured defects.
run: $(STAMP)
	$(BIN)/refurbgrade standards list
	$(BIN)/refurbgrade rules grade datasets/samples/instances_example.json

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The test command (README, .ci/run). pytest exits 5 when it collects no test, which fails here too.
test: $(STAMP) lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
