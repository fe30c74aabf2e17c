"""kNN distances per embedding, same vs different identity."""

from ganmatch.logs import script_logging
from ganmatch.stages.figures import distance_distributions_job

script_logging(snakemake)
distance_distributions_job(snakemake.input, snakemake.output, snakemake.params)
