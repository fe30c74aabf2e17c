"""Robust image reading: every awkward file is decoded to what a viewer shows, or rejected with a reason."""

import numpy as np
import pytest
from PIL import Image

from ganmatch.errors import ImageError
from ganmatch.faces.images import load_image, try_load_image


@pytest.fixture(scope="module")
def upright():
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[::4, ::4])  # 128 x 128 RGB


def _mad(a, b):
    return np.abs(a.astype(np.int32) - b.astype(np.int32)).mean()


def test_plain_rgb_png_roundtrip(tmp_path, upright):
    path = tmp_path / "a.png"
    Image.fromarray(upright).save(path)
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == upright.shape
    np.testing.assert_array_equal(out, upright)


def test_missing_and_empty_and_corrupt(tmp_path, upright):
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "nope.jpg")
    (tmp_path / "zero.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match=r"zero.jpg: empty file \(0 bytes\); "):
        load_image(tmp_path / "zero.jpg")
    (tmp_path / "text.png").write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(ImageError, match="unreadable"):
        load_image(tmp_path / "text.png")
    good = tmp_path / "good.jpg"
    Image.fromarray(upright).save(good, quality=90)
    raw = good.read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(tmp_path / "trunc.jpg")
    image, reason = try_load_image(tmp_path / "trunc.jpg")
    assert image is None and "trunc.jpg" in reason


def test_grayscale_and_palette(tmp_path, upright):
    gray = np.asarray(Image.fromarray(upright).convert("L"))
    Image.fromarray(gray).save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (*gray.shape, 3)
    np.testing.assert_array_equal(out[..., 0], gray)
    np.testing.assert_array_equal(out[..., 2], gray)
    Image.fromarray(upright).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    assert _mad(load_image(tmp_path / "p.png"), upright) < 8


def test_cmyk_jpeg(tmp_path, upright):
    Image.fromarray(upright).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    out = load_image(tmp_path / "c.jpg")
    assert out.shape == upright.shape and _mad(out, upright) < 4


def test_16bit_png_gray_and_rgb(tmp_path, upright):
    import cv2

    gray16 = upright[..., 0].astype(np.uint16) * 257
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    out = load_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(out[..., 1], upright[..., 0])
    rgb16 = upright.astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "c16.png"), rgb16[..., ::-1])  # 48-bit RGB PNG
    out = load_image(tmp_path / "c16.png")
    assert out.shape == upright.shape and _mad(out, upright) < 1


def test_alpha_is_composited_on_white(tmp_path, upright):
    rgba = np.dstack([upright, np.full(upright.shape[:2], 255, np.uint8)])
    rgba[:10, :10, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert (out[:10, :10] == 255).all()
    np.testing.assert_array_equal(out[20:, 20:], upright[20:, 20:])


def test_exif_rotated_jpeg_is_upright(tmp_path, upright):
    portrait = np.ascontiguousarray(upright[:, :96])  # 128 high, 96 wide, so orientation is visible
    stored = np.ascontiguousarray(np.rot90(portrait, 1))  # the camera stored it on its side
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(stored).save(tmp_path / "r.jpg", quality=100, subsampling=0, exif=exif)
    out = load_image(tmp_path / "r.jpg")
    assert out.shape == portrait.shape
    assert _mad(out, portrait) < 3
    assert _mad(out, portrait[::-1, ::-1]) > 20  # not upside down


def test_huge_images(tmp_path):
    big = Image.new("RGB", (20000, 2400), (10, 200, 30))
    big.save(tmp_path / "big.jpg", quality=80)
    out = load_image(tmp_path / "big.jpg")  # 48 Mpx > default 40 Mpx: decoded at half scale
    assert out.shape == (1200, 10000, 3)
    assert np.abs(out[600, 5000].astype(int) - [10, 200, 30]).max() < 6
    small = Image.new("RGB", (20000, 600), (10, 200, 30))
    small.save(tmp_path / "big.png")
    with pytest.raises(ImageError, match="too large"):
        load_image(tmp_path / "big.png", max_pixels=5_000_000)
    assert load_image(tmp_path / "big.png").shape == (600, 20000, 3)


def test_tiny_image_rejected(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "t.png")
    with pytest.raises(ImageError, match="too small"):
        load_image(tmp_path / "t.png")
