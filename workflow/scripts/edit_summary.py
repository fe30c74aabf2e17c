"""All edits with identity drift, planted truth (demo) and the leakage table."""

from ganmatch.logs import script_logging
from ganmatch.stages.edit import edit_summary_job

script_logging(snakemake)
edit_summary_job(snakemake.input, snakemake.output, snakemake.params)
