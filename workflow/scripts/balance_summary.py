"""Concatenate every method's balance table and group means."""

import pandas as pd

from ganmatch import io
from ganmatch.logs import script_logging

script_logging(snakemake)  # noqa: F821
inp, out = snakemake.input, snakemake.output  # noqa: F821
io.write_parquet(pd.concat([io.read_parquet(p) for p in inp.tables], ignore_index=True), out.table)
io.write_parquet(pd.concat([io.read_parquet(p) for p in inp.means], ignore_index=True), out.means)
