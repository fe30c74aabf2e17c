"""Figure `edits` of the edit stage (ganmatch.edit_figures.edit_grid)."""

from ganmatch import edit_figures, io
from ganmatch.logs import script_logging

script_logging(snakemake)  # noqa: F821
inp, out = snakemake.input, snakemake.output  # noqa: F821
data = edit_figures.edit_grid(io.read_parquet(inp.edits), io.read_parquet(inp.selection), out.pdf, out.png, treatment=snakemake.params.treatment)  # noqa: F821
io.write_parquet(data, out.data)
