"""Same-identity face verification by group, before and after matching."""

from ganmatch.logs import script_logging
from ganmatch.stages.outcomes import verification_bias_job

script_logging(snakemake)
verification_bias_job(snakemake.input, snakemake.output, snakemake.params)
