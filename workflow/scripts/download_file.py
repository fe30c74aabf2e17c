"""Download one configured file (annotations or weights): resumable, retried, verified."""

from ganmatch.logs import script_logging
from ganmatch.stages.download import download_file_job

script_logging(snakemake)
download_file_job(snakemake.output, snakemake.params)
