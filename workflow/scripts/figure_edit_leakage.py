"""Figure `edit_leakage` of the edit stage (ganmatch.edit_figures.leakage_heatmap)."""

from ganmatch import edit_figures, io
from ganmatch.logs import script_logging

script_logging(snakemake)  # noqa: F821
inp, out = snakemake.input, snakemake.output  # noqa: F821
data = edit_figures.leakage_heatmap(io.read_parquet(inp.leakage), out.pdf, out.png)  # noqa: F821
io.write_parquet(data, out.data)
