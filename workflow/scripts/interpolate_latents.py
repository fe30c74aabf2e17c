"""Interpolation strips between matched pairs and between two photos of one identity."""

from pathlib import Path

from ganmatch import io
from ganmatch.logs import script_logging
from ganmatch.stages import edit as edit_stage

log = script_logging(snakemake)  # noqa: F821
inp, out, p = snakemake.input, snakemake.output, snakemake.params  # noqa: F821
cfg = p.interpolation
Path(out.images).mkdir(parents=True, exist_ok=True)
projected = set(edit_stage.latent_rows([io.read_parquet(t) for t in inp.tables], [])[0]["image_id"])
ends = edit_stage.interpolation_pairs({Path(f).stem: f for f in inp.matches}, io.read_parquet(inp.index), projected,
                                      cfg["n_pairs"], cfg["n_identities"], seed=p.seed)
latents, table = edit_stage.interpolate(ends, inp.tables, inp.arrays, inp.weights, cfg["steps"], out.images,
                                        batch_size=p.edit["batch_size"], device=p.edit["device"])
log.info("%d strips", len(ends))
io.write_npy(latents, out.latents)
io.write_parquet(table, out.table)
