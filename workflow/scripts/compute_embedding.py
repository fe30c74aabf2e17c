"""Gather one embedding into a float32 matrix plus its row ids."""

import pandas as pd

from ganmatch import embeddings, io
from ganmatch.logs import script_logging

log = script_logging(snakemake)  # noqa: F821
spec, inp = snakemake.params.spec, snakemake.input  # noqa: F821
if spec["kind"] == "latent":
    ids, X = embeddings.gather_latents(inp.tables, inp.arrays, spec.get("reduce"))
else:
    aligned = embeddings.aligned_images(inp.tables)
    ids, X = aligned["image_id"].to_numpy(str), embeddings.compute_embedding(spec["kind"], aligned, spec)
log.info("embedding %s: %d x %d", snakemake.wildcards.embedding, *X.shape)  # noqa: F821
io.write_npy(X, snakemake.output.npy)  # noqa: F821
io.write_parquet(pd.DataFrame({"image_id": ids}), snakemake.output.ids)  # noqa: F821
