"""Propensity-score overlap by group, before and after each matching method."""

from ganmatch.logs import script_logging
from ganmatch.stages.figures import propensity_overlap_job

script_logging(snakemake)
propensity_overlap_job(snakemake.input, snakemake.output, snakemake.params)
