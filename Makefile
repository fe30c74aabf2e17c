# Two entry points, as in the README: `make demo` installs and runs the whole default DAG, `make test` runs the tests.
# `make test-fast` runs the light unit tests only (no Snakemake run, no model loading; under a minute) while developing.
PY ?= python

.PHONY: install demo test test-fast

install:
	$(PY) -m pip install -e ".[test]"

demo: install
	snakemake --cores 2

test:
	ruff check src tests workflow/scripts benchmarks
	snakemake --lint
	snakefmt --check Snakefile workflow/rules
	$(PY) -m pytest -q

test-fast:
	GANMATCH_FAST_TESTS=1 $(PY) -m pytest -q -x -m "not slow and not slurm and not heavy"
