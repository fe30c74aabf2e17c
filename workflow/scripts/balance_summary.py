"""Concatenate every method's balance table and group means."""

from ganmatch.logs import script_logging
from ganmatch.stages.balance import balance_summary_job

script_logging(snakemake)
balance_summary_job(snakemake.input, snakemake.output)
