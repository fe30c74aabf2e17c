"""Edit and render one projection shard's selected images along every direction at every strength."""

from ganmatch.logs import script_logging
from ganmatch.stages.edit import edit_shard_job

script_logging(snakemake)
edit_shard_job(snakemake.input, snakemake.output, snakemake.params, shard=int(snakemake.wildcards.shard),
               threads=snakemake.threads)
