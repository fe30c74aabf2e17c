"""FFHQ alignment: quad geometry, identity on aligned faces, and undoing a planted similarity transform."""

import numpy as np
import pytest

from ganmatch.faces.align import (
    LANDMARK_NAMES,
    align_face,
    alignment_matrix,
    canonical_landmarks,
    ffhq_quad,
    landmarks68_to_5,
    similarity_warp,
    transform_points,
)

pytestmark = pytest.mark.heavy  # loads real models, trains, projects or renders (not in make test-fast)

S = 128


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


@pytest.fixture(scope="module")
def face():
    """A smooth, textured test image (astronaut, downscaled) standing in for an aligned face."""
    import cv2
    from skimage import data

    return cv2.resize(data.astronaut(), (S, S), interpolation=cv2.INTER_AREA)


def test_landmark_names_order():
    assert LANDMARK_NAMES == ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def test_ffhq_quad_known_answer():
    # eyes 100 px apart, mouth 120 px below: the mouth term (1.8 * 120 = 216) beats the eye term (200)
    pts = np.array([[100.0, 200], [200, 200], [150, 260], [120, 320], [180, 320]])
    quad = ffhq_quad(pts)
    c = np.array([150.0, 200 + 12])
    np.testing.assert_allclose(quad, c + np.array([[-216, -216], [-216, 216], [216, 216], [216, -216]]))


def test_canonical_landmarks_quad_is_output_square():
    for size in (64, 256, 1024):
        lm = canonical_landmarks(size)
        quad = ffhq_quad(lm)
        np.testing.assert_allclose(
            quad, [[-0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5], [size - 0.5, -0.5]], atol=1e-9
        )
        assert lm[0, 1] == lm[1, 1] and lm[1, 0] - lm[0, 0] == pytest.approx(size / 4)
        assert lm[3, 1] > lm[2, 1] > lm[0, 1]  # mouth below nose below eyes


def test_align_already_aligned_is_identity(face):
    out = align_face(face, canonical_landmarks(S), S)
    assert out.dtype == np.uint8 and out.shape == (S, S, 3)
    np.testing.assert_array_equal(out, face)


@pytest.mark.parametrize(
    "angle,scale,shift,shape",
    [
        (20.0, 1.3, (30.0, -10.0), (220, 220)),
        (-35.0, 1.1, (-20.0, 15.0), (160, 200)),
        (8.0, 3.0, (120.0, 130.0), (400, 420)),
    ],
)
def test_similarity_warp_then_align_recovers(face, angle, scale, shift, shape):
    lm = canonical_landmarks(S)
    warped, lm_w = similarity_warp(face, lm, angle, scale, shift, shape)
    assert warped.shape == (*shape, 3)
    # the landmarks moved with the image: alignment maps them back to the canonical ones
    np.testing.assert_allclose(transform_points(alignment_matrix(lm_w, S), lm_w), lm, atol=1e-6)
    back = align_face(warped, lm_w, S)
    inner = slice(S // 4, 3 * S // 4)  # away from borders that the warp may have pushed out of frame
    assert _psnr(back[inner, inner], face[inner, inner]) > 30


def test_landmarks_follow_pixels(face):
    """A bright dot planted at each landmark ends up where the warped landmark says."""
    img = np.zeros((S, S, 3), np.uint8)
    lm = canonical_landmarks(S)
    for x, y in lm[[0, 1, 3]]:
        img[int(round(y)) - 1 : int(round(y)) + 2, int(round(x)) - 1 : int(round(x)) + 2] = 255
    lm_r = np.round(lm)
    warped, lm_w = similarity_warp(img, lm_r, 30.0, 1.5, (20.0, 10.0), (250, 250))
    for x, y in lm_w[[0, 1, 3]]:
        patch = warped[int(round(y)) - 1 : int(round(y)) + 2, int(round(x)) - 1 : int(round(x)) + 2, 0]
        assert patch.max() > 150


def test_big_downscale_is_antialiased():
    """A fine checkerboard shrunk 16x must average to grey, not alias into stripes."""
    big = np.indices((2048, 2048)).sum(0) % 2 * 255
    big = np.repeat(big[..., None], 3, axis=2).astype(np.uint8)
    lm = canonical_landmarks(S) * 16 + 7.5
    out = align_face(big, lm, S)
    assert abs(out.mean() - 127.5) < 3 and out.std() < 10


def test_landmarks68_to_5():
    pts = np.zeros((68, 2))
    pts[36:42] = [10, 20]
    pts[42:48] = [30, 20]
    pts[30] = [20, 30]
    pts[48] = [12, 40]
    pts[54] = [28, 40]
    np.testing.assert_allclose(landmarks68_to_5(pts), [[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]])


def test_bad_landmarks_raise(face):
    with pytest.raises(ValueError, match="5, 2"):
        align_face(face, np.zeros((4, 2)), S)
    with pytest.raises(ValueError, match="degenerate"):
        ffhq_quad(np.zeros((5, 2)))
