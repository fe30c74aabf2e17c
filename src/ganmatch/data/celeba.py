"""CelebA / CelebA-HQ metadata: the HQ -> CelebA mapping, identities, 40 attributes, and the image index.

CelebA-HQ's 30,000 images are a subset of CelebA; `celeba_hq_mapping.txt` (`idx orig_idx orig_file
proc_md5 final_md5`) links each HQ image to its CelebA file, and through `identity_CelebA.txt` and
`list_attr_celeba.txt` to a person and 40 binary labels. Matching needs the identity: an image is
selectable only if its person has another photo to serve as reference.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from ganmatch.errors import ConfigError, DownloadError, InputDataError

MAPPING_COLUMNS = ["idx", "orig_idx", "orig_file", "proc_md5", "final_md5"]
N_ATTRIBUTES = 40
# CelebA's attribute columns, in list_attr_celeba.txt's order (Liu et al. 2015).
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair "
    "Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male "
    "Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline "
    "Rosy_Cheeks "
    "Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
    "Wearing_Necklace "
    "Wearing_Necktie Young"
).split()

# Short names used in configs -> CelebA attribute columns (lower-cased). Others map by lower-casing.
ATTRIBUTE_ALIASES = {
    "makeup": "heavy_makeup",
    "glasses": "eyeglasses",
    "lipstick": "wearing_lipstick",
    "hat": "wearing_hat",
    "beard": "no_beard",  # note: CelebA stores the absence; see `build_celeba_hq_index`
}
INVERTED_ALIASES = {"beard"}


def attribute_column(name: str) -> str:
    """CelebA column for a config name: 'Male' -> 'male', 'makeup' -> 'heavy_makeup'."""
    key = name.strip().lower()
    return ATTRIBUTE_ALIASES.get(key, key)


# ---------------------------------------------------------------- readers


def read_hq_mapping(path: str | os.PathLike) -> pd.DataFrame:
    """CelebA-HQ's `image_list.txt` as a table `idx, orig_idx, orig_file, proc_md5, final_md5` (ids as
    int)."""
    path = Path(path)
    try:
        df = pd.read_csv(path, sep=r"\s+", dtype={"orig_file": str, "proc_md5": str, "final_md5": str})
    except (OSError, pd.errors.ParserError) as err:
        raise InputDataError(f"cannot read the CelebA-HQ mapping file {path}: {err}") from err
    missing = [c for c in MAPPING_COLUMNS if c not in df.columns]
    if missing:
        raise InputDataError(f"{path}: expected columns {MAPPING_COLUMNS} (CelebA-HQ image_list.txt), "
                             f"missing {missing}.")
    df = df[MAPPING_COLUMNS].copy()
    df["idx"] = df["idx"].astype(int)
    df["orig_idx"] = df["orig_idx"].astype(int)
    if df["idx"].duplicated().any():
        raise InputDataError(f"{path}: duplicate idx values, e.g. "
                             f"{df['idx'][df['idx'].duplicated()].head(3).tolist()}.")
    return df


def read_identities(path: str | os.PathLike) -> pd.DataFrame:
    """CelebA's `identity_CelebA.txt` (`000001.jpg 2880` per line) as a table `file, identity` (both str)."""
    path = Path(path)
    try:
        df = pd.read_csv(path, sep=r"\s+", header=None, names=["file", "identity"], dtype=str)
    except (OSError, pd.errors.ParserError) as err:
        raise InputDataError(f"cannot read the CelebA identity file {path}: {err}") from err
    if df["identity"].isna().any() or df["file"].duplicated().any():
        raise InputDataError(f"{path}: expected one 'file identity' pair per line with unique files "
                             "(identity_CelebA.txt).")
    return df


def read_celeba_attributes(path: str | os.PathLike) -> pd.DataFrame:
    """CelebA's `list_attr_celeba.txt` as `file` + 40 int8 0/1 columns named as in the file (e.g. `Male`).

    The format: a count line, a line of 40 attribute names, then `file v1 ... v40` with -1/1 values.
    """
    path = Path(path)
    try:
        with open(path) as fh:
            count_line = fh.readline()
            names = fh.readline().split()
            df = pd.read_csv(fh, sep=r"\s+", header=None, names=["file", *names], dtype={"file": str})
    except (OSError, pd.errors.ParserError, ValueError) as err:
        raise InputDataError(f"cannot read the CelebA attribute file {path}: {err}") from err
    if len(names) != N_ATTRIBUTES:
        raise InputDataError(f"{path}: line 2 should name {N_ATTRIBUTES} attributes, found {len(names)}.")
    try:
        count = int(count_line.strip())
    except ValueError as err:
        raise InputDataError(
            f"{path}: line 1 should be the number of images, got {count_line.strip()!r}."
        ) from err
    if count != len(df):
        raise InputDataError(
            f"{path}: header says {count} images but {len(df)} rows follow (truncated download?)."
        )
    values = df[names].to_numpy()
    bad = ~np.isin(values, (-1, 1))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InputDataError(
            f"{path}: attribute values must be -1/1; row {row + 3} column {names[col]} has "
            f"{values[row, col]!r}."
        )
    df[names] = (values > 0).astype(np.int8)
    return df


def read_eval_partition(path: str | os.PathLike) -> pd.DataFrame:
    """CelebA's `list_eval_partition.txt` (`file 0|1|2` = train/val/test) as `file, partition`."""
    df = pd.read_csv(path, sep=r"\s+", header=None, names=["file", "partition"], dtype={"file": str})
    if not set(df["partition"].unique()) <= {0, 1, 2}:
        raise InputDataError(f"{path}: partition values must be 0, 1 or 2.")
    return df


# ---------------------------------------------------------------- index


def image_file_name(idx: int, pattern: str = "{idx}.jpg") -> str:
    """File name of CelebA-HQ image `idx`: '{idx}.jpg' -> '0.jpg', '{idx:05d}.png' -> '00000.png'."""
    try:
        return pattern.format(idx=int(idx), image_id=f"{int(idx):05d}")
    except (KeyError, IndexError, ValueError) as err:
        raise ConfigError(
            f"celeba_hq.file_pattern {pattern!r} is invalid ({err}); use fields {{idx}} or "
            f"{{image_id}}, e.g. '{{idx:05d}}.png'."
        ) from err


def identity_split(identities: pd.Series, test_fraction: float, seed: int = 0) -> pd.Series:
    """'train'/'test' per row, whole identities together, from a seeded hash (stable under subsampling)."""
    if not 0 <= test_fraction < 1:
        raise ConfigError(f"celeba_hq.test_fraction must be in [0, 1), got {test_fraction}.")

    def unit(identity: str) -> float:
        digest = hashlib.sha256(f"{seed}:{identity}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    is_test = {i: unit(str(i)) < test_fraction for i in pd.unique(identities)}
    return pd.Series(
        np.where(identities.map(is_test).to_numpy(dtype=bool), "test", "train"), index=identities.index
    )


def build_celeba_hq_index(
    mapping: pd.DataFrame,
    identities: pd.DataFrame,
    attributes: pd.DataFrame | None = None,
    *,
    image_dir: str | os.PathLike,
    file_pattern: str = "{idx}.jpg",
    treatment: str = "male",
    covariates: Iterable[str] = (),
    partition: pd.DataFrame | None = None,
    test_fraction: float = 0.0,
    seed: int = 0,
) -> pd.DataFrame:
    """The image index of CelebA-HQ (docs/architecture.md): one row per HQ image.

    Columns: `image_id` ('00000' for idx 0), `path` (image_dir / file_pattern), `identity` (str), `split`
    (CelebA's partition with val folded into train when given, else a seeded identity-level split),
    `orig_file`, `final_md5`, `n_photos` (photos of that identity within the index), `single_photo`
    (bool: not selectable for reference-constrained matching), then the treatment and every covariate
    CelebA labels as int 0/1 columns under the config's names. Covariates CelebA lacks (e.g. dark_skin)
    are left out for the attributes stage to predict.
    """
    identity = mapping["orig_file"].map(identities.set_index("file")["identity"])
    missing = identity.isna()
    if missing.any():
        raise InputDataError(
            f"{int(missing.sum())} CelebA-HQ images have no identity, e.g. "
            f"{mapping['orig_file'][missing].head(3).tolist()}; "
            "is the identity file identity_CelebA.txt complete?"
        )
    index = pd.DataFrame(
        {
            "image_id": [f"{i:05d}" for i in mapping["idx"]],
            "path": [str(Path(image_dir) / image_file_name(i, file_pattern)) for i in mapping["idx"]],
            "identity": identity.astype(str).to_numpy(),
            "orig_file": mapping["orig_file"].to_numpy(),
            "final_md5": mapping["final_md5"].to_numpy(),
        }
    )
    if partition is not None:
        part = index["orig_file"].map(partition.set_index("file")["partition"])
        if part.isna().any():
            raise InputDataError(
                f"{int(part.isna().sum())} CelebA-HQ images are missing from the partition file."
            )
        split = np.where(part.to_numpy() == 2, "test", "train")
    else:
        split = identity_split(index["identity"], test_fraction, seed).to_numpy()
    index.insert(3, "split", split)
    counts = index["identity"].map(index["identity"].value_counts())
    index["n_photos"] = counts.astype(int).to_numpy()
    index["single_photo"] = (counts == 1).to_numpy()

    names = [treatment, *[c for c in covariates if c != treatment]]
    if attributes is not None:
        attrs = attributes.copy()
        attrs.columns = ["file", *[c.lower() for c in attrs.columns[1:]]]
        attrs = attrs.set_index("file")
        absent = index["orig_file"].map(pd.Series(True, index=attrs.index)).isna()
        if absent.any():
            raise InputDataError(
                f"{int(absent.sum())} CelebA-HQ images are missing from the attribute file, "
                "e.g. "
                f"{index['orig_file'][absent].head(3).tolist()}."
            )
        for name in names:
            col = attribute_column(name)
            if col in attrs.columns:
                values = index["orig_file"].map(attrs[col]).astype(int)
                index[name] = (1 - values) if name.strip().lower() in INVERTED_ALIASES else values
    if treatment not in index.columns:
        raise InputDataError(
            f"treatment '{treatment}' is not a CelebA attribute (or no attribute file was "
            "given); "
            "set celeba_hq.attributes to list_attr_celeba.txt and treatment to one of its "
            "40 names, e.g. male."
        )
    return index


def identity_counts(index: pd.DataFrame) -> pd.Series:
    """Number of photos per identity in `index`, largest first."""
    return index["identity"].value_counts()


def selectable_identities(index: pd.DataFrame, min_photos: int = 2) -> pd.Index:
    """Identities with at least `min_photos` photos in `index`: the only ones that can supply a reference
    image."""
    counts = identity_counts(index)
    return pd.Index(sorted(counts.index[counts >= min_photos]), name="identity")


def selectable_mask(index: pd.DataFrame, min_photos: int = 2) -> np.ndarray:
    """Boolean per row of `index`: does this image's identity have at least `min_photos` photos?"""
    return (index["identity"].map(identity_counts(index)) >= min_photos).to_numpy()


# ---------------------------------------------------------------- image verification and download manifest


def pixel_md5(path: str | os.PathLike) -> str:
    """md5 of an image's decoded RGB pixels in channel-first (3, H, W) uint8 order.

    This is how CelebA-HQ's `final_md5` was computed (over the 3x1024x1024 array, not a file), so it
    verifies lossless copies (PNG, NPY) only; JPEG copies never match and need a sha256 lock instead.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        img = np.load(path, allow_pickle=False)
        img = img.reshape(img.shape[-3:])
    else:
        from PIL import Image

        with Image.open(path) as im:
            img = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
    return hashlib.md5(np.ascontiguousarray(img, dtype=np.uint8).tobytes()).hexdigest()


def check_final_md5(path: str | os.PathLike, final_md5: str) -> None:
    """Raise DownloadError unless the image's pixels hash to CelebA-HQ's `final_md5`."""
    got = pixel_md5(path)
    if got != final_md5.lower():
        raise DownloadError(
            f"{path}: pixel md5 {got} differs from CelebA-HQ's final_md5 {final_md5}; "
            "the image is corrupt, not 1024 px, or a lossy (JPEG) copy."
        )


def celeba_hq_manifest(
    mapping: pd.DataFrame, base_url: str | list[str] | None, file_pattern: str = "{idx:05d}.png"
) -> list[dict]:
    """Entries for `download.fetch_manifest`: one per HQ image, with its URL(s) and `final_md5`."""
    bases = [] if base_url is None else [base_url] if isinstance(base_url, str) else list(base_url)
    entries = []
    for idx, md5 in zip(mapping["idx"], mapping["final_md5"], strict=True):
        name = image_file_name(idx, file_pattern)
        entries.append({"path": name, "urls": [b.rstrip("/") + "/" + name for b in bases], "final_md5": md5})
    return entries


# ---------------------------------------------------------------- config entry point


def hq_mapping(cfg: dict) -> pd.DataFrame:
    """The mapping rows a run uses: all, or the first `subsample` by HQ index (the index and the fetch
    agree)."""
    mapping = read_hq_mapping(cfg["mapping"])
    if cfg["subsample"]:
        mapping = mapping.sort_values("idx").head(int(cfg["subsample"])).reset_index(drop=True)
    return mapping


def celeba_hq_index(cfg: dict, treatment: str, covariates: list[str], seed: int) -> pd.DataFrame:
    """The CelebA-HQ image index from the config's `celeba_hq` block (defaults filled by validation)."""
    mapping = hq_mapping(cfg)
    attributes = read_celeba_attributes(cfg["attributes"]) if cfg["attributes"] else None
    partition = read_eval_partition(cfg["partition"]) if cfg["partition"] else None
    return build_celeba_hq_index(
        mapping,
        read_identities(cfg["identities"]),
        attributes,
        image_dir=cfg["image_dir"],
        file_pattern=cfg["file_pattern"],
        treatment=treatment,
        covariates=covariates,
        partition=partition,
        test_fraction=float(cfg["test_fraction"]),
        seed=int(seed),
    )
