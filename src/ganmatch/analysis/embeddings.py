"""Per-image embeddings gathered into one float32 matrix each: GAN latents, pixels, face descriptors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ganmatch.data.io import read_embedding, read_npy, read_parquet
from ganmatch.errors import InputDataError


def latent_shards(shard_tables: Sequence[str], shard_arrays: Sequence[str]) -> tuple[list[pd.DataFrame],
                                                                                     list[np.ndarray]]:
    """The projection shard tables and their latent arrays (memory-mapped), each array checked against its
    table."""
    tables, arrays = [], []
    for table_path, array_path in zip(shard_tables, shard_arrays, strict=True):
        table = read_parquet(table_path)
        arr = read_npy(array_path, mmap=True)
        if len(arr) != len(table):
            raise InputDataError(f"{array_path}: {len(arr)} latents but {table_path} has {len(table)} rows; "
                                 "delete both and rerun.")
        tables.append(table)
        arrays.append(arr)
    return tables, arrays


class StackedRows:
    """Shard arrays read as one stacked array by row position (`rows[pos]`), touching only the rows asked
    for."""

    def __init__(self, arrays: Sequence[np.ndarray]):
        self.arrays = list(arrays)
        self.offsets = np.cumsum([0, *map(len, self.arrays)])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, pos) -> np.ndarray:
        pos = np.asarray(pos, np.int64)
        if pos.size and (pos.min() < 0 or pos.max() >= len(self)):
            raise IndexError(f"row positions must be in [0, {len(self)})")
        shard = np.searchsorted(self.offsets, pos, side="right") - 1
        return np.stack([self.arrays[s][p - self.offsets[s]] for s, p in zip(shard, pos, strict=True)])


def gather_latents(shard_tables: Sequence[str], shard_arrays: Sequence[str], reduce: str | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate projection shards, keeping only images whose projection succeeded; W+ is flattened, or with
    `reduce="mean"` averaged over its layers (the reference study's "restricted style space" for
    propensity)."""
    if reduce not in (None, "mean"):
        raise InputDataError(f"latent embedding: reduce must be 'mean' or absent, got '{reduce}' (config key "
                             "embeddings.<name>.reduce).")
    ids, blocks = [], []
    for table, arr in zip(*latent_shards(shard_tables, shard_arrays), strict=True):
        ok = (table["status"] == "ok").to_numpy()
        ids.append(table["image_id"].to_numpy()[ok])
        rows = arr[ok]
        if reduce == "mean" and rows.ndim == 3:
            rows = rows.astype(np.float64).mean(axis=1)
        blocks.append(rows.reshape(int(ok.sum()), -1))
    return np.concatenate(ids).astype(str), np.concatenate(blocks).astype(np.float32)


def aligned_images(shard_tables: Sequence[str]) -> pd.DataFrame:
    """The accepted rows of the aligned shard tables (image_id, aligned_path, landmarks)."""
    table = pd.concat([read_parquet(p) for p in shard_tables], ignore_index=True)
    return table[table["status"] == "ok"].reset_index(drop=True)


def precomputed_rows(image_ids: Sequence[str], path: str) -> np.ndarray:
    """Rows of a precomputed embedding (`path`: float32 .npy, its ids in the sibling .parquet, column
    image_id) in the order of `image_ids`; every image must have a row."""
    ids_path = str(path)[: -len(".npy")] + ".parquet" if str(path).endswith(".npy") else None
    if ids_path is None:
        raise InputDataError(f"embeddings: precomputed path '{path}' must be a .npy file (its ids in a "
                             ".parquet beside it).")
    ids, X = read_embedding(path, ids_path)
    pos = pd.Series(np.arange(len(ids)), index=ids)
    missing = [i for i in image_ids if i not in pos.index]
    if missing:
        raise InputDataError(f"{path}: no row for {len(missing)} image(s) (first: {missing[:3]}); "
                             "the precomputed embedding must cover every accepted image (config key "
                             "embeddings.<name>.path).")
    return np.asarray(X[pos.loc[list(image_ids)].to_numpy()], np.float32)


def compute_embedding(kind: str, aligned: pd.DataFrame, params: dict) -> np.ndarray:
    """Embedding of the aligned images by kind (pixel, dlib, facenet, hog, vgg; see
    ganmatch.faces.face_embeddings), or the rows of a precomputed one (kind precomputed: e.g. the demo's
    simulated face recogniser).

    Computed in chunks of images (progress lines in the job log; one chunk of decoded crops in memory at a
    time).
    """
    if kind == "precomputed":
        return precomputed_rows(aligned["image_id"].astype(str).tolist(), params["path"])
    from ganmatch.faces import face_embeddings
    from ganmatch.progress import Progress, map_in_chunks

    paths = aligned["aligned_path"].tolist()
    progress = Progress(len(paths), f"embedding {kind}")
    return map_in_chunks(lambda part: face_embeddings.embed_images(kind, part, **params), paths, progress)
