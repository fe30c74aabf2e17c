"""Forest plot of the naive and matched treatment effect estimates."""

from ganmatch import figures, io
from ganmatch.logs import script_logging

script_logging(snakemake)  # noqa: F821
out = snakemake.output  # noqa: F821
data = figures.outcomes_forest(io.read_parquet(snakemake.input.outcomes), out.pdf, out.png)  # noqa: F821
io.write_parquet(data, out.data)
