"""Experimental treatment effect along its edit direction, with the observational estimates beside it."""

from ganmatch.logs import script_logging
from ganmatch.stages.edit import edit_transects_job

script_logging(snakemake)
edit_transects_job(snakemake.input, snakemake.output, snakemake.params)
