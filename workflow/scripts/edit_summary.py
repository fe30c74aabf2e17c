"""All edits with identity drift, planted truth (demo) and the leakage table."""

import json

from ganmatch import io
from ganmatch.embeddings import latent_shards
from ganmatch.logs import script_logging
from ganmatch.stages import edit as edit_stage

log = script_logging(snakemake)  # noqa: F821
inp, out, p = snakemake.input, snakemake.output, snakemake.params  # noqa: F821
demo = "truth" in inp.keys()
files = {e: (f"{inp.embeddings[2 * i]}", f"{inp.embeddings[2 * i + 1]}") for i, e in enumerate(p.embeddings)}
edits, leakage = edit_stage.summarise(
    [io.read_parquet(f) for f in inp.edit_tables], [io.read_npy(f) for f in inp.edit_arrays], io.read_parquet(inp.index),
    files, p.thresholds, p.outcomes, truth=json.loads(open(inp.truth).read())["latent"] if demo else None,
    planted=io.read_parquet(inp.planted) if demo else None, treatment=p.treatment,
    selection_latents=edit_stage.latent_rows(*latent_shards(inp.tables, inp.arrays)))
log.info("%d edits; leakage rows %d", len(edits), len(leakage))
io.write_parquet(edits, out.edits)
io.write_parquet(leakage, out.leakage)
