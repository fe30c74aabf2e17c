"""Originals vs GAN reconstructions and loss/PSNR histograms."""

from ganmatch.logs import script_logging
from ganmatch.stages.figures import projection_quality_job

script_logging(snakemake)
projection_quality_job(snakemake.input, snakemake.output, snakemake.params)
