"""Compare our matches with the reference study's released precomputed matches, pair for pair."""

from ganmatch.logs import script_logging
from ganmatch.stages.paper_cache import compare_paper_matches_job

script_logging(snakemake)
compare_paper_matches_job(snakemake.input, snakemake.output, snakemake.params)
