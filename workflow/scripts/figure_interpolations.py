"""Figure `interpolations` of the edit stage (ganmatch.edit_figures.interpolation_strips)."""

from ganmatch import edit_figures, io
from ganmatch.logs import script_logging

script_logging(snakemake)  # noqa: F821
inp, out = snakemake.input, snakemake.output  # noqa: F821
data = edit_figures.interpolation_strips(io.read_parquet(inp.table), out.pdf, out.png)  # noqa: F821
io.write_parquet(data, out.data)
