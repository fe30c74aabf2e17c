"""Treated/control image pairs per method."""

from ganmatch.logs import script_logging
from ganmatch.stages.figures import matched_pairs_job

script_logging(snakemake)
matched_pairs_job(snakemake.input, snakemake.output, snakemake.params)
