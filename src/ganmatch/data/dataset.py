"""The image index: one row per image with id, path, identity, split, shard, treatment and labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ganmatch.errors import InputDataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def assign_shards(index: pd.DataFrame, shard_size: int) -> pd.DataFrame:
    """Add a `shard` column: consecutive blocks of `shard_size` rows in index order."""
    out = index.reset_index(drop=True).copy()
    out["shard"] = (np.arange(len(out)) // shard_size).astype(int)
    return out


def check_index(index: pd.DataFrame, treatment: str, covariates: list[str], source: str = "image index",
                partial_labels: bool = False, numeric: tuple[str, ...] | list[str] = ()) -> None:
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
        raise InputDataError(f"{source}: duplicate image_id values, e.g. {list(dup[:5])}; image ids must be "
                             "unique.")
    for col in [c for c in [treatment, *covariates] if c in index.columns]:
        values = set(pd.unique(index[col].dropna()))
        if col in numeric and col != treatment:   # a measured covariate (e.g. the reference's predicted yaw)
            values = set()
        if not values <= {0, 1}:
            raise InputDataError(
                f"{source}: column '{col}' must hold 0/1 labels, found {sorted(values)[:6]}."
            )
        if index[col].isna().any() and not partial_labels:
            raise InputDataError(
                f"{source}: column '{col}' has {int(index[col].isna().sum())} missing values."
            )
    if not partial_labels and index[treatment].nunique() < 2:
        raise InputDataError(
            f"{source}: treatment column '{treatment}' has only one group; matching needs both 0 and 1."
        )


def check_treatment_resolved(values: pd.Series, treatment: str) -> None:
    """Every analysed image has a treatment value (a label or a prediction), else an error saying how to give
    one."""
    if values.isna().any():
        raise InputDataError(
            f"treatment '{treatment}': {int(values.isna().sum())} images have neither a "
            "label nor a "
            "prediction; label them in folder.labels or set face_attributes.activate: true."
        )


def treatment_vector(treated, n: int) -> np.ndarray:
    """The treatment of `n` rows as int8 0/1, checked: the validation the neighbour tables and matching
    share."""
    t = np.asarray(treated)
    if t.shape != (n,):
        raise InputDataError(f"treatment has shape {t.shape}, expected ({n},).")
    if pd.isna(t).any() or not np.isin(t, [0, 1]).all():
        raise InputDataError("treatment must be 0/1 for every row (config key treatment).")
    return t.astype(np.int8)


def with_treatment(index: pd.DataFrame, attributes: pd.DataFrame | None, treatment: str) -> pd.DataFrame:
    """The index with its treatment column as resolved by the attributes stage, where that stage has it.

    For a folder of photos the treatment may be missing from the index (or partly labelled); the attributes
    table then holds it (label > prediction). Adapters that need the treatment call this first.
    """
    if attributes is not None and treatment in attributes.columns:
        resolved = attributes.astype({"image_id": str}).set_index("image_id")[treatment]
        check_treatment_resolved(resolved, treatment)
        return index.assign(**{treatment: index["image_id"].astype(str).map(resolved).to_numpy()})
    if treatment not in index.columns or index[treatment].isna().any():
        raise InputDataError(
            f"treatment '{treatment}' is neither fully in the image index nor in the "
            "attributes table; "
            "add it to the labels CSV (folder.labels) or predict it "
            "(face_attributes.activate: true)."
        )
    return index


def mixed_treatment_identities(identity, treated) -> np.ndarray:
    """Identities (sorted) whose photos carry both treatment values."""
    frame = pd.DataFrame(
        {"identity": np.asarray(identity).astype(str), "t": np.asarray(treated, float)}
    ).dropna()
    spread = frame.groupby("identity")["t"].agg(["min", "max"])
    return np.sort(spread.index[spread["min"] != spread["max"]].to_numpy())


def demo_index(labels: pd.DataFrame, image_dir: str | Path) -> pd.DataFrame:
    """Index for the demo: labels plus the path of each rendered photo."""
    out = labels.copy()
    out.insert(1, "path", [str(Path(image_dir) / f"{i}.png") for i in out["image_id"]])
    return out


RESERVED_LABEL_COLUMNS = ("image_id", "path", "shard")  # the index makes these itself


def image_ids(relative_paths: list[str]) -> list[str]:
    """Unique, readable image ids for files of one folder: the path without its suffix, '/' -> '__'.

    Ids that would collide keep their suffix (a.jpg, a.png -> a_jpg, a_png); any still colliding (a/b.jpg
    and a__b.jpg) get a short hash of their relative path, until every id is unique: one-to-one for any
    layout.
    """
    import hashlib

    stem = [Path(r).with_suffix("").as_posix().replace("/", "__") for r in relative_paths]
    ids = list(stem)
    for attempt in range(len(relative_paths) + 1):
        clash = pd.Series(ids).duplicated(keep=False).to_numpy()
        if not clash.any():
            return ids
        for i in np.flatnonzero(clash):
            if attempt == 0:
                ids[i] = Path(relative_paths[i]).as_posix().replace("/", "__").replace(".", "_")
            else:
                digest = hashlib.sha1(f"{attempt}:{relative_paths[i]}".encode()).hexdigest()[:8]
                ids[i] = f"{stem[i]}~{digest}"
    raise AssertionError("unreachable: hashed ids are unique")


def _csv_line(row: int) -> int:
    """The line of a CSV file holding data row `row` (line 1 is the header)."""
    return int(row) + 2


def read_labels(
    labels_csv: str | Path, files: list[str], label_columns: list[str] = (), allow_unmatched: bool = False
) -> pd.DataFrame:
    """The user's labels CSV, checked: a `file` column naming photos of the folder once each, no reserved
    column, 0/1 (or empty) values in `label_columns`. Every error names the CSV file, its line and column.

    Rows that match no photo stop the run with their list and case-insensitive near matches, unless
    `allow_unmatched` (then they are dropped with a warning).
    """
    import warnings

    where = f"labels file '{labels_csv}'"
    try:
        labels = pd.read_csv(labels_csv, dtype={"file": str, "identity": str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise InputDataError(
            f"{where} cannot be read as CSV ({err}); save it as comma-separated UTF-8 text "
            "with a header line."
        ) from err
    if "file" not in labels.columns:
        raise InputDataError(
            f"{where} needs a 'file' column with paths relative to the photo folder; "
            f"its columns are {list(labels.columns)}."
        )
    problems = []  # every problem of the file at once (a CSV with four problems took four runs to clean)
    reserved = [c for c in RESERVED_LABEL_COLUMNS if c in labels.columns]
    if reserved:
        problems.append(
            f"column(s) {reserved} are made by the pipeline itself (reserved: "
            f"{', '.join(RESERVED_LABEL_COLUMNS)}); rename or remove them."
        )
    missing_file = labels["file"].isna()
    if missing_file.any():
        problems.append(
            f"line(s) {[_csv_line(i) for i in np.flatnonzero(missing_file)][:10]} have an empty 'file' cell."
        )
    labels = labels[~missing_file].copy()
    labels["file"] = labels["file"].astype(str).str.strip().map(lambda f: Path(f).as_posix())
    dup = labels["file"].duplicated(keep=False).to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)
        first = labels["file"].iloc[rows[0]]
        lines = [_csv_line(labels.index[i]) for i in np.flatnonzero(labels["file"].to_numpy() == first)]
        problems.append(
            f"file '{first}' is listed more than once (lines {lines}; {int(dup.sum())} "
            "duplicated rows "
            "in all); keep one row per photo."
        )
    for col in [c for c in dict.fromkeys(label_columns) if c in labels.columns]:
        values = pd.to_numeric(labels[col], errors="coerce")
        bad = (labels[col].notna() & ~values.isin([0, 1])).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            problems.append(
                f"line {_csv_line(labels.index[i])}, column '{col}': '{labels[col].iloc[i]}' is "
                "not 0 or 1 "
                f"({int(bad.sum())} such cell(s)); labels are 0/1, or empty to have them "
                "predicted."
            )
        labels[col] = values
    unmatched = ~labels["file"].isin(files)
    if unmatched.any():
        by_lower = {f.lower(): f for f in files}
        listed = []
        for i in np.flatnonzero(unmatched)[:20]:
            name = labels["file"].iloc[i]
            near = by_lower.get(name.lower())
            listed.append(
                f"line {_csv_line(labels.index[i])}: '{name}'"
                + (f" (did you mean '{near}'?)" if near else "")
            )
        msg = (
            f"{int(unmatched.sum())} row(s) match no photo of the folder (file names are case-sensitive "
            "paths relative to folder.path):\n    " + "\n    ".join(listed)
        )
        if not allow_unmatched:
            problems.append(
                msg + "\n  Fix the names, remove the rows, or set labels.allow_unmatched: true to drop them."
            )
        else:
            warnings.warn(
                f"{where}: {msg}\nThese rows are dropped (labels.allow_unmatched: true).", stacklevel=2
            )
        labels = labels[~unmatched]
    if len(problems) == 1:
        raise InputDataError(f"{where}: {problems[0]}")
    if problems:
        raise InputDataError(
            f"{where} has {len(problems)} problems:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return labels


def folder_index(
    folder: str | Path,
    labels_csv: str | Path | None = None,
    label_columns: list[str] = (),
    allow_unmatched: bool = False,
) -> pd.DataFrame:
    """Index for a folder of the user's photos; an optional CSV (column `file`) adds identity and labels."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputDataError(
            f"photo folder '{folder}' does not exist; set folder.path in your config to a "
            "folder of JPEG/PNG files."
        )
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise InputDataError(f"photo folder '{folder}' has no images ({', '.join(IMAGE_SUFFIXES)}).")
    rel = [p.relative_to(folder).as_posix() for p in files]
    index = pd.DataFrame({"image_id": image_ids(rel), "path": [str(p) for p in files], "file": rel})
    if labels_csv:
        labels = read_labels(labels_csv, rel, label_columns, allow_unmatched)
        index = index.merge(labels, on="file", how="left", validate="one_to_one")
    if "identity" not in index.columns:
        index["identity"] = index["image_id"]
    index["identity"] = index["identity"].fillna(index["image_id"]).astype(str)
    if "split" not in index.columns:
        index["split"] = "train"
    return index


# ---------------------------------------------------------------- what the index leaves out, and why


DUPLICATE_POLICIES = ("drop", "identity")


MAX_HASHED_PIXELS = 50_000_000  # larger images are not decoded at indexing (alignment rejects huge ones)


def _image_header(path: str) -> tuple | None:
    """(mode, size) from the file's header, without decoding; None when it is not a readable image."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.mode, im.size
    except Exception:  # noqa: BLE001 - any failure: not compared here, rejected with its reason at alignment
        return None


def _pixel_digest(path: str) -> str | None:
    """A digest of the decoded pixels (mode, size, bytes): the same photo under any name or container; None
    when the file cannot be decoded (alignment rejects it with its reason)."""
    import hashlib

    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return hashlib.sha256(f"{im.mode}:{im.size}".encode() + im.tobytes()).hexdigest()
    except Exception:  # noqa: BLE001 - any decoding failure: not hashed here, rejected with its reason later
        return None


def pixel_digests(paths) -> list[str | None]:
    """Each file's pixel digest, decoding only files that share their (mode, size) header with another one
    (only those can be duplicates) and are at most MAX_HASHED_PIXELS; None for the others."""
    headers = [_image_header(p) for p in paths]
    counts = pd.Series([h for h in headers if h is not None], dtype=object).value_counts()
    shared = {h for h, n in counts.items() if n > 1 and h[1][0] * h[1][1] <= MAX_HASHED_PIXELS}
    return [_pixel_digest(p) if h in shared else None for p, h in zip(paths, headers, strict=True)]


def unsupported_files(folder: str | Path, labels: str | Path | None = None) -> pd.DataFrame:
    """Files of the photo folder the index leaves out, with the reason (columns file, path, reason): animated
    GIFs and any other type that is not an image suffix the pipeline reads (hidden files and the labels CSV
    `labels` are not listed)."""
    folder = Path(folder)
    skip = Path(labels).resolve() if labels else None
    rows = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if (
            not p.is_file()
            or p.suffix.lower() in IMAGE_SUFFIXES
            or any(part.startswith(".") for part in rel.parts)
            or p.resolve() == skip
        ):
            continue
        reason = (
            f"unsupported file type '{p.suffix or '(none)'}': the index reads {', '.join(IMAGE_SUFFIXES)}"
        )
        if p.suffix.lower() == ".gif":
            frames = _gif_frames(p)
            reason = (
                "animated GIF" + (f" ({frames} frames)" if frames > 1 else "") if frames != 1 else "GIF"
            ) + ": convert the photo to PNG or JPEG (one frame) to include it"
        rows.append({"file": rel.as_posix(), "path": str(p), "reason": reason})
    return pd.DataFrame(rows, columns=["file", "path", "reason"])


def _gif_frames(path: Path) -> int:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return int(getattr(im, "n_frames", 1))
    except Exception:  # noqa: BLE001 - unreadable: still listed, as a GIF
        return 0


def resolve_duplicates(
    index: pd.DataFrame, policy: str = "drop"
) -> tuple[pd.DataFrame, pd.DataFrame, list[list[str]]]:
    """Photos with the same pixels under different names (same decoded image): (index, rejected rows, groups).

    Each group keeps its first file (sorted order). `drop` (the default) removes the copies from the index,
    each a rejected row naming the photo it copies; `identity` keeps them but gives every copy the first one's
    identity, so they can never be matched to each other (one person, one treatment value:
    identities.mixed_treatment). Either way two copies never form a pair at distance 0."""
    if policy not in DUPLICATE_POLICIES:
        raise InputDataError(f"folder.duplicates is '{policy}'; use one of {', '.join(DUPLICATE_POLICIES)}.")
    digests = pd.Series(pixel_digests(list(index["path"])), index=index.index, dtype=object)
    valid = digests.notna()
    dup = valid & digests.duplicated(keep=False)
    groups = [index.loc[g.index, "file"].tolist() for _, g in digests[dup].groupby(digests[dup], sort=False)]
    rejected = pd.DataFrame(columns=["file", "path", "reason"])
    if not dup.any():
        return index, rejected, groups
    first = digests[dup].drop_duplicates(keep="first")
    keeper = digests.map(pd.Series(first.index, index=first.values))  # row of each duplicate's first copy
    copies = dup & (keeper != index.index.to_series())
    if policy == "drop":
        rejected = pd.DataFrame(
            {
                "file": index.loc[copies, "file"],
                "path": index.loc[copies, "path"],
                "reason": [
                    f"duplicate of '{index.at[k, 'file']}' (same pixels); left out (folder.duplicates: drop)"
                    for k in keeper[copies]
                ],
            }
        )
        index = index[~copies]
    else:
        index = index.copy()
        index.loc[dup, "identity"] = index.loc[keeper[dup].astype(int).to_numpy(), "identity"].to_numpy()
    return index.reset_index(drop=True), rejected.reset_index(drop=True), groups
