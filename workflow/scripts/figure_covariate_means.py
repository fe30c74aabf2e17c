"""Covariate means per group before and after matching (the paper's main figure)."""

from ganmatch.logs import script_logging
from ganmatch.stages.figures import covariate_means_job

script_logging(snakemake)
covariate_means_job(snakemake.input, snakemake.output, snakemake.params)
