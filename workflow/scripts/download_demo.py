"""Materialise the embedded demo dataset as files, like a real download."""

from ganmatch.logs import script_logging
from ganmatch.stages.download import download_demo_job

script_logging(snakemake)
download_demo_job(snakemake.output, snakemake.params)
