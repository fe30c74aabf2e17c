"""This run next to the paper's numbers (or the demo's planted truth): covariate means and neighbours."""

from ganmatch.logs import script_logging
from ganmatch.stages.figures import paper_comparison_job

script_logging(snakemake)
paper_comparison_job(snakemake.input, snakemake.output, snakemake.params)
