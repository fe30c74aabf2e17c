"""Link an existing CelebA-HQ folder and/or fetch the images from the configured sources; write the fetch table."""

from ganmatch.logs import script_logging
from ganmatch.stages import download as download_stage

log = script_logging(snakemake)  # noqa: F821
cfg = snakemake.config  # noqa: F821
table = download_stage.fetch_celeba_hq_images(cfg.get("celeba_hq") or {}, cfg.get("downloads") or {}, snakemake.output.report)  # noqa: F821
log.info("CelebA-HQ images: %s", table["status"].value_counts().to_dict())
