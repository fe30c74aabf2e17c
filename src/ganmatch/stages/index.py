"""Build the image index (the checkpoint that fixes the shards) for any source, checked and sharded."""

from __future__ import annotations

import logging

import pandas as pd

from ganmatch.data import dataset
from ganmatch.data.io import read_parquet

log = logging.getLogger("ganmatch")


def image_index(source: str, treatment: str, covariates: list[str], shard_size: int, spec: dict,
                labels: str | None = None, images: str | None = None) -> pd.DataFrame:
    """The demo's labels and photos, a folder of the user's photos (+ labels CSV), or CelebA-HQ.

    `spec` is what defines the index of the source: {} (demo), {folder, allow_unmatched} or {celeba_hq, seed}.
    Errors name the user's own file (the labels CSV or the folder), never the derived index.
    """
    if source == "demo":
        index, where = dataset.demo_index(read_parquet(labels), images), labels
    elif source == "folder":
        folder = spec["folder"]
        index = dataset.folder_index(folder["path"], folder["labels"], [treatment, *covariates],
                                     allow_unmatched=spec["allow_unmatched"])
        where = folder["labels"] or folder["path"]
    else:
        from ganmatch.data.celeba import celeba_hq_index

        index = celeba_hq_index(spec["celeba_hq"], treatment, covariates, spec["seed"])
        where = "the CelebA-HQ index (celeba_hq block)"
    dataset.check_index(index, treatment, covariates, source=str(where),
                        partial_labels=source == "folder")  # photos: the attributes stage predicts missing labels
    return dataset.assign_shards(index, shard_size)


def index_images_job(inp, out, params) -> None:
    """The index_images checkpoint: the checked, sharded image index."""
    from ganmatch.data.io import write_parquet

    index = image_index(params.source, params.treatment, params.covariates, params.shard_size, params.spec,
                        labels=inp.get("labels"), images=inp.get("images"))
    log.info("%d images in %d shards", len(index), index["shard"].max() + 1)
    write_parquet(index, out.index)
