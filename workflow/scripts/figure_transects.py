"""Figure `transects` of the edit stage (ganmatch.edit_figures.transects_figure)."""

from ganmatch import edit_figures, io
from ganmatch.logs import script_logging

script_logging(snakemake)  # noqa: F821
inp, out = snakemake.input, snakemake.output  # noqa: F821
data = edit_figures.transects_figure(io.read_parquet(inp.transects), out.pdf, out.png)  # noqa: F821
io.write_parquet(data, out.data)
