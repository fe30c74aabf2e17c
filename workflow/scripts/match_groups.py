"""Match treated to control images with one configured method."""

from ganmatch.logs import script_logging
from ganmatch.stages.matching import match_groups_job

script_logging(snakemake)
match_groups_job(snakemake.input, snakemake.output, snakemake.params, method=snakemake.wildcards.method)
