"""Treatment effects on the configured outcomes, before and after every matching method."""

from ganmatch.logs import script_logging
from ganmatch.stages.outcomes import estimate_outcomes_job

script_logging(snakemake)
estimate_outcomes_job(snakemake.input, snakemake.output, snakemake.params)
