"""Gather one embedding into a float32 matrix plus its row ids."""

from ganmatch.logs import script_logging
from ganmatch.stages.embeddings import compute_embedding_job

script_logging(snakemake)
compute_embedding_job(snakemake.input, snakemake.output, snakemake.params, name=snakemake.wildcards.embedding)
