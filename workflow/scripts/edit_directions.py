"""Attribute directions in W (plain and conditional), their table, unit array and cosine matrix."""

from ganmatch.logs import script_logging
from ganmatch.stages.edit import edit_directions_job

script_logging(snakemake)
edit_directions_job(snakemake.input, snakemake.output, snakemake.params)
