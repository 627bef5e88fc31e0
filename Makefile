# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test docs-test lint bench-gap mutation native clean

# setup.py compiles the online core with mypyc when a C compiler works (pure Python
# otherwise, or with ALLOCATOR_PURE_PYTHON=1); `allocator --version` says which.
$(STAMP): pyproject.toml setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,ray]'
	touch $(STAMP)

## Recompile the online core if a source of its compiled build changed (until then an
## editable install runs the Python source instead, with a warning: allocator/_native.py).
## `make demo` and `make test` run this first.
native: $(STAMP)
	@$(BIN)/python -c 'import sys; from allocator import _native; sys.exit(_native.decide()[1])' \
		|| $(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/allocator --version

## Create .venv, install, and solve the bundled overloaded-cluster example.
demo: native
	$(BIN)/allocator solve data/examples/seed-overloaded.json -o out/seed-overloaded.plan.json
	$(BIN)/allocator validate data/examples/seed-overloaded.json out/seed-overloaded.plan.json

## Lint, type-check and run the whole test suite (what CI runs): two pytest workers (one a
## core), then the few tests marked `serial` (wall-clock asserts) on a machine left to them.
test: native
	$(BIN)/ruff check allocator models api tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -n 2 --dist loadfile -m 'not serial'
	$(BIN)/pytest -m serial

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
	rm -rf $(VENV) out build .pytest_cache .mypy_cache .ruff_cache .mutation
	rm -f allocator/online/*.so allocator/online/*.pyd allocator/online/_native_build.json
