"""Atomic, typed reading and writing of the pipeline's tables, arrays and images.

Every writer goes through a temporary file in the target directory and `os.replace`, so a killed job
never leaves a half-written output that a rerun would mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a DataFrame to Parquet atomically, without the pandas index."""
    with atomic_path(path, ".parquet") as tmp:
        df.to_parquet(tmp, index=False)


def read_parquet(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a Parquet table written by `write_parquet`."""
    return pd.read_parquet(path, columns=columns)


def read_named_parquets(paths) -> dict[str, pd.DataFrame]:
    """<dir>/<name>.parquet files -> {name: table} (one matches or neighbours table per method or
    embedding)."""
    return {Path(p).stem: read_parquet(p) for p in map(str, paths)}


def write_npy(array: np.ndarray, path: str | os.PathLike) -> None:
    """Write an array to `.npy` atomically."""
    with atomic_path(path, ".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array), allow_pickle=False)


def read_npy(path: str | os.PathLike, mmap: bool = False) -> np.ndarray:
    """Read a `.npy` array (never unpickling objects); `mmap=True` maps it instead of loading."""
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def read_embedding(npy: str | os.PathLike, ids: str | os.PathLike | None = None) -> tuple[np.ndarray,
                                                                                          np.ndarray]:
    """An embedding as (ids, X): `<name>.npy` and its row ids `<name>.parquet` (column image_id), checked to
    be one unique id per row. The one reader of the embedding file pair."""
    from ganmatch.errors import InputDataError

    npy = str(npy)
    ids_path = str(ids) if ids is not None else npy[: -len(".npy")] + ".parquet"
    image_ids = read_parquet(ids_path, columns=["image_id"])["image_id"].to_numpy(str)
    X = read_npy(npy)
    if len(image_ids) != len(X) or len(np.unique(image_ids)) != len(image_ids):
        raise InputDataError(f"{npy}: {len(X)} rows for {len(image_ids)} ids (unique: "
                             f"{len(np.unique(image_ids))}); "
                             "embedding ids must be unique, one per row. Delete the embedding and rerun.")
    return image_ids, X


def write_embedding(ids, X: np.ndarray, npy: str | os.PathLike, ids_path: str | os.PathLike) -> None:
    """Write an embedding's float32 rows and their ids (the pair `read_embedding` reads)."""
    write_npy(X, npy)
    write_parquet(pd.DataFrame({"image_id": np.asarray(ids)}), ids_path)


def write_json(obj, path: str | os.PathLike) -> None:
    """Write JSON atomically with sorted keys, so reruns are byte-identical."""
    with atomic_path(path, ".json") as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_text(text: str, path: str | os.PathLike) -> None:
    """Write a UTF-8 text file atomically (a plain-text report beside a table)."""
    with atomic_path(path, ".txt") as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_png(image: np.ndarray, path: str | os.PathLike, portable: bool = False) -> None:
    """Write an HxWx3 uint8 image to PNG atomically.

    `portable`: uncompressed deflate blocks (`png_bytes_stored`), the same bytes with any zlib build (Pillow's
    bundled zlib-ng and distributions' zlibs compress differently); the demo's photos use it."""
    with atomic_path(path, ".png") as tmp:
        if portable:
            tmp.write_bytes(png_bytes_stored(image))
        else:
            from PIL import Image

            Image.fromarray(np.asarray(image, dtype=np.uint8)).save(tmp, format="PNG")


def png_bytes_stored(image: np.ndarray) -> bytes:
    """An 8-bit RGB PNG whose zlib stream holds stored (uncompressed) blocks: its bytes depend only on the
    pixels."""
    import struct
    import zlib

    img = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 uint8 image, got shape {img.shape}")
    h, w = img.shape[:2]
    raw = b"".join(b"\x00" + img[row].tobytes() for row in range(h))  # filter type 0 on every row
    blocks, limit = [], 65535
    for start in range(0, max(len(raw), 1), limit):
        part = raw[start : start + limit]
        final = start + limit >= len(raw)
        blocks.append(struct.pack("<BHH", int(final), len(part), len(part) ^ 0xFFFF) + part)
    stream = b"\x78\x01" + b"".join(blocks) + struct.pack(">I", zlib.adler32(raw))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def write_table_pair(df: pd.DataFrame, out: str | os.PathLike, head: str) -> None:
    """A benchmark table as `<out>.csv` (the numbers) and `<out>.md` (`head` then the table), each
    atomically."""
    out = Path(out)
    with atomic_path(out.with_suffix(".csv"), ".csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.5g")
    with atomic_path(out.with_suffix(".md"), ".md") as tmp:
        tmp.write_text(head + df.to_markdown(index=False, floatfmt=".4g") + "\n")
