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


def check_index(index: pd.DataFrame, treatment: str, covariates: list[str], source: str = "image index",
                partial_labels: bool = False) -> None:
    """Fail early, naming the column, on duplicate ids, missing columns or labels that are not 0/1.

    With `partial_labels` (a folder of photos) the treatment and covariate labels may be absent or have gaps:
    the attributes stage predicts them (see `with_treatment`); the labels that are given must still be 0/1.
    """
    required = ["image_id", "path", "identity"] + ([] if partial_labels else [treatment])
    missing = [c for c in required if c not in index.columns]
    if missing:
        raise InputDataError(f"{source}: missing column(s) {missing}; it has {list(index.columns)}.")
    dup = index["image_id"][index["image_id"].duplicated()]
    if len(dup):
        raise InputDataError(f"{source}: duplicate image_id values, e.g. {list(dup[:5])}; image ids must be unique.")
    for col in [c for c in [treatment, *covariates] if c in index.columns]:
        values = set(pd.unique(index[col].dropna()))
        if not values <= {0, 1}:
            raise InputDataError(f"{source}: column '{col}' must hold 0/1 labels, found {sorted(values)[:6]}.")
        if index[col].isna().any() and not partial_labels:
            raise InputDataError(f"{source}: column '{col}' has {int(index[col].isna().sum())} missing values.")
    if not partial_labels and index[treatment].nunique() < 2:
        raise InputDataError(f"{source}: treatment column '{treatment}' has only one group; matching needs both 0 and 1.")


def with_treatment(index: pd.DataFrame, attributes: pd.DataFrame | None, treatment: str) -> pd.DataFrame:
    """The index with its treatment column as resolved by the attributes stage, where that stage has it.

    For a folder of photos the treatment may be missing from the index (or partly labelled); the attributes
    table then holds it (label > prediction). Adapters that need the treatment call this first.
    """
    if attributes is not None and treatment in attributes.columns:
        resolved = attributes.astype({"image_id": str}).set_index("image_id")[treatment]
        if resolved.isna().any():
            raise InputDataError(f"treatment '{treatment}': {int(resolved.isna().sum())} images have neither a label nor a "
                                 "prediction; label them in folder.labels or set face_attributes.activate: true.")
        return index.assign(**{treatment: index["image_id"].astype(str).map(resolved).to_numpy()})
    if treatment not in index.columns or index[treatment].isna().any():
        raise InputDataError(f"treatment '{treatment}' is neither fully in the image index nor in the attributes table; "
                             "add it to the labels CSV (folder.labels) or predict it (face_attributes.activate: true).")
    return index


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
    ids = pd.Series([Path(r).with_suffix("").as_posix().replace("/", "__") for r in rel])
    clash = ids.duplicated(keep=False)  # a.jpg and a.png: keep the suffix to tell them apart
    ids[clash] = [Path(r).as_posix().replace("/", "__").replace(".", "_") for r in np.asarray(rel)[clash.to_numpy()]]
    index = pd.DataFrame({
        "image_id": ids.tolist(),
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
