"""The image index: one row per image with id, path, identity, split, shard, treatment and labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputDataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def assign_shards(index: pd.DataFrame, shard_size: int) -> pd.DataFrame:
    """Add a `shard` column: consecutive blocks of `shard_size` rows in index order."""
    out = index.reset_index(drop=True).copy()
    out["shard"] = (np.arange(len(out)) // shard_size).astype(int)
    return out


def check_index(index: pd.DataFrame, treatment: str, covariates: list[str], source: str = "image index") -> None:
    """Fail early, naming the column, on duplicate ids, missing columns or labels that are not 0/1."""
    required = ["image_id", "path", "identity", treatment]
    missing = [c for c in required if c not in index.columns]
    if missing:
        raise InputDataError(f"{source}: missing column(s) {missing}; it has {list(index.columns)}.")
    dup = index["image_id"][index["image_id"].duplicated()]
    if len(dup):
        raise InputDataError(f"{source}: duplicate image_id values, e.g. {list(dup[:5])}; image ids must be unique.")
    for col in [treatment, *[c for c in covariates if c in index.columns]]:
        values = set(pd.unique(index[col].dropna()))
        if not values <= {0, 1}:
            raise InputDataError(f"{source}: column '{col}' must hold 0/1 labels, found {sorted(values)[:6]}.")
        if index[col].isna().any():
            raise InputDataError(f"{source}: column '{col}' has {int(index[col].isna().sum())} missing values.")
    if index[treatment].nunique() < 2:
        raise InputDataError(f"{source}: treatment column '{treatment}' has only one group; matching needs both 0 and 1.")


def demo_index(labels: pd.DataFrame, image_dir: str | Path) -> pd.DataFrame:
    """Index for the demo: labels plus the path of each rendered photo."""
    out = labels.copy()
    out.insert(1, "path", [str(Path(image_dir) / f"{i}.png") for i in out["image_id"]])
    return out


def folder_index(folder: str | Path, labels_csv: str | Path | None = None) -> pd.DataFrame:
    """Index for a folder of the user's photos; an optional CSV (column `file`) adds identity and labels."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputDataError(f"photo folder '{folder}' does not exist; set folder.path in your config to a folder of JPEG/PNG files.")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise InputDataError(f"photo folder '{folder}' has no images ({', '.join(IMAGE_SUFFIXES)}).")
    rel = [str(p.relative_to(folder)) for p in files]
    index = pd.DataFrame({
        "image_id": [Path(r).with_suffix("").as_posix().replace("/", "__") for r in rel],
        "path": [str(p) for p in files],
        "file": rel,
    })
    if labels_csv:
        labels = pd.read_csv(labels_csv)
        if "file" not in labels.columns:
            raise InputDataError(f"labels file '{labels_csv}' needs a 'file' column with paths relative to {folder}.")
        index = index.merge(labels, on="file", how="left")
    if "identity" not in index.columns:
        index["identity"] = index["image_id"]
    index["identity"] = index["identity"].fillna(index["image_id"]).astype(str)
    if "split" not in index.columns:
        index["split"] = "train"
    return index
