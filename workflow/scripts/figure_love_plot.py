"""|Mean difference| (cobalt's: standardised, or raw for binary covariates) per covariate before and after
every method."""

from ganmatch.logs import script_logging
from ganmatch.stages.figures import love_plot_job

script_logging(snakemake)
love_plot_job(snakemake.input, snakemake.output)
