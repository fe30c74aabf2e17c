"""Identity retrieval error and attribute mismatch of nearest neighbours per embedding."""

from ganmatch.logs import script_logging
from ganmatch.stages.figures import neighbour_quality_job

script_logging(snakemake)
neighbour_quality_job(snakemake.input, snakemake.output, snakemake.params)
