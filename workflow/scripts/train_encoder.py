"""Train the latent encoder that initialises projection (project.init: encoder)."""

from ganmatch.logs import script_logging
from ganmatch.stages.project import train_encoder_job

script_logging(snakemake)
train_encoder_job(snakemake.input, snakemake.output, snakemake.params, threads=snakemake.threads)
