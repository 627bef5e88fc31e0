# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test docs-test lint bench-gap mutation clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,ray]'
	touch $(STAMP)

## Create .venv, install, and solve the bundled overloaded-cluster example.
demo: $(STAMP)
	$(BIN)/allocator solve data/examples/seed-overloaded.json -o out/seed-overloaded.plan.json
	$(BIN)/allocator validate data/examples/seed-overloaded.json out/seed-overloaded.plan.json

## Lint, type-check and run the whole test suite (what CI runs).
test: $(STAMP)
	$(BIN)/ruff check allocator models api tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest

## Run every shell example of README.md and docs/*.md (also part of `make test`).
docs-test: $(STAMP)
	$(BIN)/pytest tests/test_docs_examples.py

lint: $(STAMP)
	$(BIN)/ruff check allocator models api tests benchmarks
	$(BIN)/mypy

bench-gap: $(STAMP)
	$(BIN)/allocator bench gap data/gap/orlib/gap*.txt --time-limit 10 --solver greedy --solver cpsat

## Mutation testing of the core modules (mutmut), each against its fast tests; not part of
## `make test`. Prints a score table and the surviving mutants. MODULES="allocator/validate.py"
## limits the run; MUTATION_JOBS sets the parallel workers (default 2).
MUTATION_JOBS ?= 2
mutation: $(STAMP)
	nice -n 10 $(BIN)/python benchmarks/mutation.py --max-children $(MUTATION_JOBS) --min-score 90 $(MODULES)

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache .mutation
