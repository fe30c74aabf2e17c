"""Build the image index (the checkpoint that fixes the shards) for any source, checked and sharded."""

from __future__ import annotations

import pandas as pd

from .. import dataset
from ..io import read_parquet


def image_index(source: str, treatment: str, covariates: list[str], shard_size: int, labels: str | None = None,
                images: str | None = None, folder: dict | None = None, allow_unmatched: bool = False,
                config: dict | None = None) -> pd.DataFrame:
    """The demo's labels and photos, a folder of the user's photos (+ labels CSV), or CelebA-HQ (from `config`).

    Errors name the user's own file (the labels CSV or the folder), never the derived index.
    """
    if source == "demo":
        index, where = dataset.demo_index(read_parquet(labels), images), labels
    elif source == "folder":
        folder = folder or {}
        index = dataset.folder_index(folder["path"], folder.get("labels"), [treatment, *covariates],
                                     allow_unmatched=allow_unmatched)
        where = folder.get("labels") or folder["path"]
    else:
        from ..celeba import index_from_config

        index, where = index_from_config(config), "the CelebA-HQ index (celeba_hq block)"
    dataset.check_index(index, treatment, covariates, source=str(where),
                        partial_labels=source == "folder")  # photos: the attributes stage predicts missing labels
    return dataset.assign_shards(index, shard_size)
