"""Love plot: |SMD| per covariate before and after every matching method."""

from ganmatch import figures, io
from ganmatch.logs import script_logging

script_logging(snakemake)  # noqa: F821
out = snakemake.output  # noqa: F821
data = figures.love_plot(io.read_parquet(snakemake.input.summary), out.pdf, out.png)  # noqa: F821
io.write_parquet(data, out.data)
