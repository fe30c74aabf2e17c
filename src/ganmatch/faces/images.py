"""Robust reading of user photographs into uint8 RGB, with a reason whenever one cannot be used.

Real folders hold everything: EXIF-rotated phone JPEGs, grayscale scans, CMYK prints, 16-bit PNGs,
transparent PNGs, truncated downloads and empty files. Each is either decoded to what a viewer shows or
rejected with an `ImageError` saying why and what to do, so one bad file never stops a run.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ganmatch.errors import ImageError

DEFAULT_MAX_PIXELS = 40_000_000
"""Largest decoded size (width x height). Bigger JPEGs are decoded at 1/2, 1/4 or 1/8 scale; other formats
are rejected."""

MIN_SIDE = 16
"""Images with a shorter side than this cannot hold a usable face."""

_BACKGROUND = (255, 255, 255)  # transparent pixels are composited onto white


def _error(path, reason: str, fix: str) -> ImageError:
    return ImageError(f"{path}: {reason}; {fix}")


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale a single-channel integer or float array to uint8 by its nominal range."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == "f":
        finite = arr[np.isfinite(arr)]
        hi = float(finite.max()) if finite.size else 0.0
        scale = 255.0 if hi <= 1.0 else (255.0 / 65535.0 if hi > 255.0 else 1.0)
        return np.clip(np.nan_to_num(arr) * scale, 0, 255).round().astype(np.uint8)
    hi = int(arr.max()) if arr.size else 0
    if hi <= 255:
        return np.clip(arr, 0, 255).astype(np.uint8)
    if hi <= 65535:  # 16-bit data (PIL reads 16-bit grayscale as "I;16" or "I")
        return (np.clip(arr, 0, 65535).astype(np.uint32) * 255 + 32767) // 65535
    return (arr.astype(np.float64) / hi * 255).round().astype(np.uint8)


def _pil_to_rgb(im) -> np.ndarray:
    """Convert any PIL mode to an HxWx3 uint8 array as a viewer would show it."""
    from PIL import Image

    mode = im.mode
    if mode == "RGB":
        return np.asarray(im)
    if mode.startswith("I") or mode == "F":
        gray = _to_uint8(np.asarray(im))
        if gray.ndim == 3:  # multi-channel 16-bit arrays decoded by newer Pillow versions
            gray = gray[..., :3] if gray.shape[2] >= 3 else gray[..., :1].repeat(3, axis=2)
            return np.ascontiguousarray(gray.astype(np.uint8))
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_BACKGROUND, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(im.convert("RGB"))  # L, 1, P, CMYK, YCbCr, LAB, HSV


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB, upright per its EXIF orientation.

    Grayscale, palette, CMYK, 16-bit and transparent images are converted; JPEGs over `max_pixels` are
    decoded at a reduced scale. Raises `ImageError("<path>: <reason>; <fix>")` for a file that cannot be used.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise _error(path, "file not found", "check the path column of the image index")
    if path.stat().st_size == 0:
        raise _error(path, "empty file (0 bytes)", "re-download or remove it")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # size is checked below
            with Image.open(path) as im:
                width, height = im.size
                if width * height > max_pixels:
                    if im.format == "JPEG":
                        factor = next((f for f in (2, 4, 8) if (width // f) * (height // f) <= max_pixels), 8)
                        im.draft("RGB", (width // factor, height // factor))
                    if im.size[0] * im.size[1] > max_pixels:
                        raise _error(
                            path,
                            f"too large ({width} x {height} px > max_pixels {max_pixels})",
                            "downscale it (the limit is the max_pixels argument of "
                            "ganmatch.faces.images.load_image)",
                        )
                im.load()
                im = ImageOps.exif_transpose(im)
                rgb = _pil_to_rgb(im)
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise _error(
            path, f"unreadable ({type(err).__name__}: {err})", "convert it to PNG or JPEG, or remove it"
        ) from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise _error(path, f"corrupt or truncated ({err})", "re-download or remove it") from err
    if min(rgb.shape[:2]) < MIN_SIDE:
        raise _error(
            path, f"too small ({rgb.shape[1]} x {rgb.shape[0]} px)", f"use images of at least {MIN_SIDE} px"
        )
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def try_load_image(
    path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray | None, str]:
    """`load_image` that returns (image, "") or (None, reason) instead of raising."""
    try:
        return load_image(path, max_pixels=max_pixels), ""
    except ImageError as err:
        return None, str(err)
