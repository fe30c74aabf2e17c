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
    else:
        aligned = embeddings.aligned_images(inp.tables)
        ids, X = aligned["image_id"].to_numpy(str), embeddings.compute_embedding(spec["kind"], aligned, spec)
    log.info("embedding %s: %d x %d", name, *X.shape)
    write_embedding(ids, X, out.npy, out.ids)
