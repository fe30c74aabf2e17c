"""Forest plot of the naive and matched effect estimates."""

from ganmatch.logs import script_logging
from ganmatch.stages.figures import outcomes_job

script_logging(snakemake)
outcomes_job(snakemake.input, snakemake.output)
