"""Build the image index (the checkpoint that fixes the shards)."""

from ganmatch.logs import script_logging
from ganmatch.stages.index import index_images_job

script_logging(snakemake)
index_images_job(snakemake.input, snakemake.output, snakemake.params)
