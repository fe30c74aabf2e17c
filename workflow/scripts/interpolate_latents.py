"""Interpolation strips between matched pairs and between two photos of one identity."""

from ganmatch.logs import script_logging
from ganmatch.stages.edit import interpolate_latents_job

script_logging(snakemake)
interpolate_latents_job(snakemake.input, snakemake.output, snakemake.params)
