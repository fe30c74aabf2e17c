"""Download one configured file (CelebA annotations, GAN or face-recognition weights): resumable, retried, verified."""

from ganmatch.logs import script_logging
from ganmatch.stages import download as download_stage

log = script_logging(snakemake)  # noqa: F821
path = download_stage.download_configured(snakemake.output[0], snakemake.config.get("downloads") or {})  # noqa: F821
log.info("%s verified (%s)", path, snakemake.params.checksum)  # noqa: F821
