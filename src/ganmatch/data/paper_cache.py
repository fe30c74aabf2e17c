"""The reference study's released outputs ("Data/cached outputs for reproducing pipeline",
csinva/matching-with-gans readme), read in their own formats so that the paper's matching can be rerun
without projecting anything.

Formats (from the reference repository's `data.py`, `config.py`, `matching_benchmarking/matching.py`,
`scripts/02_calc_matches.py` and notebook 07):
- annotations `data/processed/df.csv` (`load_all_labs`'s cache, `df.to_csv`): one row per CelebA-HQ image
  in idx order (0-29999; an unnamed first column holds that index), lower-case columns: `id` (CelebA
  identity, the reference's merges applied), `gender` (1 = male, each identity's mode), CelebA's 40 labels
  (`young`, `smiling`, `eyeglasses`, ...), `makeup` (= Heavy_Makeup), `race4_pred` (FairFace race-4), `yaw`,
  `pitch`, `roll` (Hopenet, degrees), `quality` (FaceQnet), `fname_id`, ...
- matrices `dists_pairwise_{gan,vgg,facial,facial_facenet_vgg2,facial_facenet_casia}.npy`: n x n, rows and
  columns in idx order (read by `ganmatch.analysis.matrices`, memory-mapped).
- latents `celeba_hq_latents_stylegan2.zip`: `00001.npy` ... `30000.npy` (file number = idx + 1), each an
  18 x 512 W+ latent of the projector with `regularize_mean_deviation_weight=0.1`.
- precomputed matches: `matches_gender_num=1200_facerecthresh=0.6.pkl` (a pandas DataFrame: `gender_0`,
  `gender_1`, `gender_0_ref`, `gender_1_ref` (idx), `dist`, `dist_ref0`, `dist_ref1`, one row per match in
  matching order) and `matches_propensity_caliper=0.1_matches=605.pkl` (a dict: `matches1` (the smaller group,
  men), `matches2` (their matches), lists of idx in matching order).
"""

from __future__ import annotations

import io
import os
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from ganmatch.data.safe_pickle import RestrictedUnpickler
from ganmatch.errors import DownloadError, InputDataError

DERIVED = {"black": ("race4_pred", "Black")}
"""Covariates the annotations hold as a category: the paper's Race=Black is race4_pred == 'Black'."""

LATENT_NAME = re.compile(r"(?:^|/)(\d{5})\.npy$")


def image_ids(n: int) -> np.ndarray:
    """Image ids of the CelebA-HQ idx 0..n-1, as the released files number them (`00000` ...)."""
    return np.array([f"{i:05d}" for i in range(n)])


def read_annotations(path: str | os.PathLike) -> pd.DataFrame:
    """The released annotations table (df.csv), one row per CelebA-HQ idx in order; columns lower-cased."""
    try:
        df = pd.read_csv(path, low_memory=False)
    except (OSError, ValueError) as err:
        raise InputDataError(f"{path}: not a readable annotations CSV ({err}).") from None
    first = df.columns[0]
    if first.startswith("Unnamed") or first == "":
        df = df.rename(columns={first: "idx"})
    df.columns = [str(c).lower() for c in df.columns]
    if "idx" in df.columns and not (df["idx"].to_numpy() == np.arange(len(df))).all():
        raise InputDataError(
            f"{path}: its index column is not 0, 1, ..., {len(df) - 1}; the released table has one "
            "row per CelebA-HQ image in idx order (put the original df.csv there)."
        )
    return df.reset_index(drop=True)


def annotation_column(df: pd.DataFrame, name: str, where: str, key: str) -> pd.Series:
    """Column `name` of the annotations, or a covariate derived from one (`DERIVED`); errors name the key."""
    if name in DERIVED:
        col, value = DERIVED[name]
        if col not in df.columns:
            raise InputDataError(
                f"{where}: covariate '{name}' ({key}) is read from column '{col}', which is missing."
            )
        return (df[col].astype(str) == value).astype(int)
    if name not in df.columns:
        raise InputDataError(f"{where}: no column '{name}' ({key}); it has {sorted(df.columns)[:40]}.")
    return df[name]


def paper_index(
    annotations: pd.DataFrame,
    treatment: str,
    treatment_column: str,
    covariates: list[str],
    test_fraction: float,
    seed: int,
    where: str = "annotations",
) -> pd.DataFrame:
    """The image index of the released outputs: image_id (idx, 5 digits), path (none: no photo is read),
    identity, split (seeded, by identity), matrix_row (the row of every released matrix), the treatment (from
    `treatment_column`, e.g. the reference's `gender`) and the covariates (0/1 labels, or numbers such as
    yaw)."""
    from ganmatch.data.celeba import identity_split

    if "id" not in annotations.columns:
        raise InputDataError(f"{where}: no identity column 'id' (the reference's CelebA identity).")
    index = pd.DataFrame(
        {
            "image_id": image_ids(len(annotations)),
            "path": "",
            "identity": annotations["id"].astype(str).to_numpy(),
        }
    )
    index["split"] = identity_split(index["identity"], test_fraction, seed).to_numpy()
    index["matrix_row"] = np.arange(len(annotations), dtype=np.int64)
    tr = annotation_column(annotations, treatment_column, where, "paper_cache.treatment_column")
    index[treatment] = pd.to_numeric(tr, errors="coerce").astype("Int64").to_numpy()
    for name in covariates:
        values = pd.to_numeric(annotation_column(annotations, name, where, "covariates"), errors="coerce")
        if values.isna().any():
            raise InputDataError(
                f"{where}: covariate '{name}' has {int(values.isna().sum())} missing or non-numeric values."
            )
        index[name] = (
            values.astype(int).to_numpy() if set(values.unique()) <= {0, 1} else values.to_numpy(float)
        )
    return index


def read_latents(path: str | os.PathLike, n: int, reduce: str | None = "mean") -> np.ndarray:
    """The released W+ latents (zip of `NNNNN.npy`, NNNNN = idx + 1) as float32 rows in idx order: the layer
    mean (n x 512, the paper's propensity features) with `reduce='mean'`, else flattened W+ (n x 18*512)."""
    out = None
    seen = np.zeros(n, bool)
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as err:
        raise InputDataError(
            f"{path}: not a readable zip of latents ({err}); put the released "
            "celeba_hq_latents_stylegan2.zip there again."
        ) from None
    with zf:
        for info in zf.infolist():
            m = LATENT_NAME.search(info.filename)
            if not m or info.is_dir():
                continue
            i = int(m.group(1)) - 1
            if not 0 <= i < n:
                raise InputDataError(
                    f"{path}: {info.filename} is latent {i + 1}, outside 1..{n} (the annotations' rows)."
                )
            w = np.load(io.BytesIO(zf.read(info)), allow_pickle=False)
            if w.ndim != 2:
                raise InputDataError(
                    f"{path}: {info.filename} has shape {w.shape}; a W+ latent is layers x 512."
                )
            row = w.mean(axis=0) if reduce == "mean" else w.reshape(-1)
            if out is None:
                out = np.zeros((n, row.size), np.float32)
            elif row.size != out.shape[1]:
                raise InputDataError(f"{path}: {info.filename} has shape {w.shape}, unlike the others.")
            out[i] = row
            seen[i] = True
    if not seen.all():
        miss = np.flatnonzero(~seen)
        raise InputDataError(
            f"{path}: {len(miss)} of {n} latents missing (first: {[f'{i + 1:05d}.npy' for i in miss[:3]]})."
        )
    return out


class _ReleasedUnpickler(RestrictedUnpickler):
    """Unpickles only what the released match files hold (pandas frames and indexes, numpy arrays and
    scalars): any other class named in the file is refused, so a tampered file cannot run code."""

    ALLOWED = {
        ("pandas.core.frame", "DataFrame"),
        ("pandas.core.internals.managers", "BlockManager"),
        ("pandas.core.indexes.base", "_new_Index"),
        ("pandas.core.indexes.base", "Index"),
        ("pandas.core.indexes.range", "RangeIndex"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("builtins", "slice"),
        # the same tables saved again by a current pandas (string columns are Arrow-backed there)
        ("pandas", "DataFrame"),
        ("pandas", "Index"),
        ("pandas", "RangeIndex"),
        ("pandas", "StringDtype"),
        ("pandas._libs.internals", "_unpickle_block"),
        ("pandas.arrays", "ArrowStringArray"),
        ("pyarrow.lib", "_restore_array"),
        ("pyarrow.lib", "type_for_alias"),
        ("pyarrow.lib", "py_buffer"),
        ("builtins", "bytearray"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.core.numeric", "_frombuffer"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}")
        if module == "numpy.core.multiarray" and hasattr(np, "_core"):
            module = "numpy._core.multiarray"
        return self.resolve(module, name)


def read_released_pickle(path: str | os.PathLike):
    """A released match file (.pkl) through the restricted unpickler; a .csv/.parquet copy is read as a
    table."""
    path = Path(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    try:
        with open(path, "rb") as fh:
            return _ReleasedUnpickler(fh).load()
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError) as err:
        raise InputDataError(f"{path}: not a released match file ({err}).") from None


def released_matches(obj, treated: np.ndarray, where: str = "released matches") -> pd.DataFrame:
    """The released matches as `order, treated_pos, control_pos, treated_ref, control_ref, distance` (idx
    positions; refs -1 and distance NaN where the file has none), in matching order; the treated side is the
    one whose treatment value is 1 (`treated`, one 0/1 per idx)."""
    treated = np.asarray(treated)
    if isinstance(obj, dict) and {"matches1", "matches2"} <= set(obj):
        a = np.asarray([int(x) for x in obj["matches1"]], np.int64)
        b = np.asarray([int(x) for x in obj["matches2"]], np.int64)
        refs = (np.full(len(a), -1), np.full(len(a), -1))
        dist = np.full(len(a), np.nan)
    elif isinstance(obj, pd.DataFrame):
        zero = [c for c in obj.columns if str(c).endswith("_0")]
        if len(zero) != 1 or zero[0][:-1] + "1" not in obj.columns:
            raise InputDataError(
                f"{where}: expected columns <attr>_0 and <attr>_1 (e.g. gender_0, gender_1), "
                f"got {list(obj.columns)}."
            )
        k0, k1 = zero[0], zero[0][:-1] + "1"
        a, b = obj[k1].to_numpy(np.int64), obj[k0].to_numpy(np.int64)
        refs = (
            obj.get(k1 + "_ref", pd.Series(-1, index=obj.index)).to_numpy(np.int64),
            obj.get(k0 + "_ref", pd.Series(-1, index=obj.index)).to_numpy(np.int64),
        )
        dist = obj["dist"].to_numpy(np.float64) if "dist" in obj else np.full(len(a), np.nan)
    else:
        raise InputDataError(f"{where}: neither the constrained matches' DataFrame nor the propensity dict.")
    n = len(treated)
    if len(a) and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n):
        raise InputDataError(f"{where}: image positions outside 0..{n - 1} (the annotations' rows).")
    swap = treated[a] == 0  # the propensity file's matches1 is the smaller group, whichever it is
    t = np.where(swap, b, a)
    c = np.where(swap, a, b)
    tr = np.where(swap, refs[1], refs[0])
    cr = np.where(swap, refs[0], refs[1])
    if len(t) and not ((treated[t] == 1) & (treated[c] == 0)).all():
        raise InputDataError(f"{where}: some pairs do not join a treated and a control image of this index.")
    return pd.DataFrame(
        {
            "order": np.arange(1, len(t) + 1),
            "treated_pos": t,
            "control_pos": c,
            "treated_ref": tr,
            "control_ref": cr,
            "distance": dist,
        }
    )


def verify_present(entry: dict, lock: str | os.PathLike | None) -> str:
    """Verify a released file that is already at its path (fetched or placed by hand): its sha256 or md5,
    else the sha256 recorded in `lock` (recorded now on first use). Returns the sha256; errors name the file
    and the fix."""
    from ganmatch.data.download import file_hash, locked_hash, record_hash

    path = Path(entry["path"])
    if not path.is_file():
        raise DownloadError(f"{path} is missing: {placement_hint(entry)}")
    sha = file_hash(path)
    if entry.get("sha256") and sha != entry["sha256"].lower():
        raise DownloadError(
            f"{path}: sha256 {sha} is not the configured {entry['sha256']}; the file is corrupt or "
            f"another file. {placement_hint(entry)}"
        )
    if entry.get("md5") and file_hash(path, "md5") != entry["md5"].lower():
        raise DownloadError(
            f"{path}: md5 differs from the configured {entry['md5']}. {placement_hint(entry)}"
        )
    if not (entry.get("sha256") or entry.get("md5")) and lock is not None:
        recorded = locked_hash(lock, path)
        if recorded is None:
            record_hash(lock, path, sha, url="(placed by hand; recorded on first use)")
        elif recorded != sha:
            raise DownloadError(
                f"{path}: sha256 {sha} differs from the one recorded on first use in {lock} "
                f"({recorded}); the file changed. Put the original back, or delete its entry from "
                f"{lock} if you replaced it on purpose."
            )
    return sha


def placement_hint(entry: dict) -> str:
    """How to get a released file by hand: where from, where to put it, how it is checked."""
    where = entry.get("description") or "the reference study's cached outputs (docs/downloads.md)"
    urls = entry.get("urls") or []
    got = f"Download {urls[0]} by hand" if urls else f"Get it from {where}"
    check = (
        f"sha256 {entry['sha256']}"
        if entry.get("sha256")
        else f"md5 {entry['md5']}"
        if entry.get("md5")
        else "no published checksum: its sha256 is recorded in downloads.lock on first use"
    )
    return f"{got} and put it at {entry['path']} ({check}); docs/downloads.md lists every released file."
