"""|Mean difference| (cobalt's: standardised, or raw if binary) per covariate before and after each method."""

from ganmatch.logs import script_logging
from ganmatch.stages.figures import love_plot_job

script_logging(snakemake)
love_plot_job(snakemake.input, snakemake.output)
