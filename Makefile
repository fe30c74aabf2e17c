# Two entry points, as in the README: `make demo` installs and runs the whole default DAG, `make test` runs the tests.
PY ?= python

.PHONY: install demo test lint

install:
	$(PY) -m pip install -e ".[test]"

demo: install
	snakemake --cores 2

test:
	ruff check src tests workflow/scripts benchmarks
	snakemake --lint
	$(PY) -m pytest -q
