"""The paper's main figure: covariate means per group before and after matching."""

from ganmatch import figures, io
from ganmatch.logs import script_logging

script_logging(snakemake)  # noqa: F821
out = snakemake.output  # noqa: F821
data = figures.covariate_means(io.read_parquet(snakemake.input.means), out.pdf, out.png,  # noqa: F821
                               treatment=snakemake.params.treatment)  # noqa: F821
io.write_parquet(data, out.data)
