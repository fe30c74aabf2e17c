"""Materialise the embedded demo dataset as files, like a real download."""

from ganmatch import demo, io
from ganmatch.logs import script_logging
from ganmatch.stylegan2 import make_generator
from ganmatch.weights import save_generator

log = script_logging(snakemake)  # noqa: F821
cfg, seed = snakemake.params.demo, snakemake.params.seed  # noqa: F821
out = snakemake.output  # noqa: F821
generator = make_generator(size=cfg["resolution"], z_dim=cfg["z_dim"], w_dim=cfg["w_dim"], n_mlp=cfg["n_mlp"],
                           channels={r: cfg["channels"] for r in (4, 8, 16, 32, 64, 128, 256)}, seed=seed)
data = demo.simulate(generator, cfg, seed=seed)
log.info("demo: %d photos, %d identities, treated share %.2f", len(data.labels), data.labels.identity.nunique(), data.labels.male.mean())
for image_id, photo in zip(data.labels["image_id"], data.photos, strict=True):
    io.write_png(photo, f"{out.images}/{image_id}.png")
io.write_parquet(data.labels, out.labels)
io.write_parquet(data.landmarks, out.landmarks)
io.write_parquet(data.directions, out.directions)
io.write_npy(data.latents, out.latents)
# the planted treatment effect (for the outcome stage) and how attributes follow from a latent (for the edit stage)
io.write_json({"outcome": cfg["effect"], "latent": data.latent_truth}, out.truth)
save_generator(generator, out.weights)
