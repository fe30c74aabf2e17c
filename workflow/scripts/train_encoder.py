"""Train the projector's encoder initialisation on (w, G(w)) pairs of the generator."""

from ganmatch.encoder import save_encoder
from ganmatch.logs import script_logging
from ganmatch.stages import project as project_stage

log = script_logging(snakemake)  # noqa: F821
encoder = project_stage.train_encoder(snakemake.input.weights, snakemake.params.project,  # noqa: F821
                                      seed=snakemake.params.seed, threads=snakemake.threads)  # noqa: F821
log.info("encoder trained in %.1f s, training loss per epoch %s", encoder.fit_seconds_,
         [round(h, 4) for h in encoder.history_])
save_encoder(encoder, snakemake.output.encoder)  # noqa: F821
