"""Link an existing CelebA-HQ folder and/or fetch the images from the sources; write the fetch table."""

from ganmatch.logs import script_logging
from ganmatch.stages.download import fetch_celeba_hq_images_job

script_logging(snakemake)
fetch_celeba_hq_images_job(snakemake.output, snakemake.params)
