"""Align one shard of the index (FFHQ crop); a bad image is a rejected row."""

from ganmatch.logs import script_logging
from ganmatch.stages.align import align_shard_job

script_logging(snakemake)
align_shard_job(snakemake.input, snakemake.output, snakemake.params, shard=int(snakemake.wildcards.shard))
