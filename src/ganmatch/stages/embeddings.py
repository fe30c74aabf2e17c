"""Embeddings stage: gather the projected latents, or embed the aligned crops (pixel, dlib, facenet, hog)."""

from __future__ import annotations

import logging

from ganmatch.analysis import embeddings
from ganmatch.data.io import write_embedding

log = logging.getLogger("ganmatch")


def compute_embedding_job(inp, out, params, name: str) -> None:
    """The compute_embedding rule: one embedding as float32 rows plus their image ids."""
    spec = params.spec
    if spec["kind"] == "latent":
        ids, X = embeddings.gather_latents(inp.tables, inp.arrays, spec.get("reduce"))
    elif spec["kind"] == "paper_latents":   # the reference study's released W+ latents (source paper_cache)
        from ganmatch.data.io import read_parquet
        from ganmatch.data.paper_cache import read_latents

        index = read_parquet(inp.index, columns=["image_id", "matrix_row"])
        rows = index["matrix_row"].to_numpy()
        X = read_latents(inp.latents, int(rows.max()) + 1, spec.get("reduce"))[rows]
        ids = index["image_id"].to_numpy(str)
    else:
        aligned = embeddings.aligned_images(inp.tables)
        ids, X = aligned["image_id"].to_numpy(str), embeddings.compute_embedding(spec["kind"], aligned, spec)
    log.info("embedding %s: %d x %d", name, *X.shape)
    write_embedding(ids, X, out.npy, out.ids)
