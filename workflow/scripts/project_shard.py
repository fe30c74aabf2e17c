"""Project one shard of aligned images into the generator's latent space."""

from ganmatch import io
from ganmatch.logs import script_logging
from ganmatch.stages import project as project_stage

log = script_logging(snakemake)  # noqa: F821
aligned = io.read_parquet(snakemake.input.table)  # noqa: F821
latents, table = project_stage.project_shard(aligned, snakemake.input.weights, snakemake.params.project,  # noqa: F821
                                             seed=snakemake.params.seed, threads=snakemake.threads,  # noqa: F821
                                             encoder=snakemake.input.get("encoder"))  # noqa: F821
log.info("projected %d images, median PSNR %.1f dB", len(table), table["psnr"].median() if len(table) else float("nan"))
io.write_npy(latents, snakemake.output.latents)  # noqa: F821
io.write_parquet(table, snakemake.output.table)  # noqa: F821
