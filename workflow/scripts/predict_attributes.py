"""Attributes per image: labels where present, latent linear-model predictions otherwise."""

from ganmatch.logs import script_logging
from ganmatch.stages.attributes import predict_attributes_job

script_logging(snakemake)
predict_attributes_job(snakemake.input, snakemake.output, snakemake.params)
