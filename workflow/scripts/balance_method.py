"""Balance before and after one matching method."""

from ganmatch.logs import script_logging
from ganmatch.stages.balance import balance_method_job

script_logging(snakemake)
balance_method_job(snakemake.input, snakemake.output, snakemake.params, method=snakemake.wildcards.method)
