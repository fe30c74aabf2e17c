"""Verify the reference study's released files (checksums) before any job reads them."""

from ganmatch.logs import script_logging
from ganmatch.stages.paper_cache import verify_paper_cache_job

script_logging(snakemake)
verify_paper_cache_job(snakemake.input, snakemake.output, snakemake.params)
