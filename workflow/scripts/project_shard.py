"""Project one aligned shard into the generator's latent space."""

from ganmatch.logs import script_logging
from ganmatch.stages.project import project_shard_job

script_logging(snakemake)
project_shard_job(snakemake.input, snakemake.output, snakemake.params, threads=snakemake.threads)
