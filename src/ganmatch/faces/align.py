"""FFHQ-style face alignment from five landmarks, shared by the demo and by real photographs.

Coordinates are pixel coordinates with pixel centres on integers (what dlib, MTCNN and OpenCV report):
the top-left pixel covers [-0.5, 0.5]^2. The FFHQ quad of a face is mapped onto the edges of the output
square, so its corners land on (-0.5, -0.5) and (S - 0.5, S - 0.5) of an S x S crop.
"""

from __future__ import annotations

import math

import numpy as np

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
"""MTCNN's five-point order; "left" means the left of the image (the subject's right)."""

LANDMARK_COLUMNS = tuple(f"{a}{i}" for i in range(5) for a in "xy")
"""Landmark columns of the landmarks / aligned tables: x0, y0, ..., x4, y4 in `LANDMARK_NAMES` order."""

# Canonical geometry of an aligned crop, in units of the output size: eye distance S/4 (so the eye term
# of the FFHQ quad, 2 * |eye_to_eye| = S/2, sets the crop size), eye-to-mouth distance below the
# 1.8 * |eye_to_mouth| < S/2 limit, nose between eyes and mouth, mouth corners a little narrower than the
# eyes.
_EYE_DIST = 0.25
_EYE_TO_MOUTH = 0.24
_NOSE_DROP = 0.60  # fraction of eye-to-mouth below the eye line
_MOUTH_HALF_WIDTH = 0.09


def _as_landmarks(landmarks5) -> np.ndarray:
    pts = np.asarray(landmarks5, dtype=np.float64)
    if pts.shape != (5, 2) or not np.all(np.isfinite(pts)):
        raise ValueError(
            f"landmarks must be a finite (5, 2) array in {LANDMARK_NAMES} order, got shape {pts.shape}"
        )
    return pts


def ffhq_quad(landmarks5: np.ndarray) -> np.ndarray:
    """The FFHQ crop quad (4, 2) from five landmarks: corners top-left, bottom-left, bottom-right, top-right.

    Follows the FFHQ recipe: the crop is centred a little below the eyes, oriented by the eye line and the
    eye-to-mouth vector, and sized by the larger of 2x the eye distance and 1.8x the eye-to-mouth distance.
    """
    pts = _as_landmarks(landmarks5)
    eye_left, eye_right, _, mouth_left, mouth_right = pts
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (mouth_left + mouth_right) * 0.5
    eye_to_mouth = mouth_avg - eye_avg

    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    norm = np.hypot(*x)
    if norm == 0:
        raise ValueError("degenerate landmarks: eyes and mouth give no orientation")
    x /= norm
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def canonical_landmarks(output_size: int) -> np.ndarray:
    """Five landmarks (5, 2) of an aligned `output_size` crop whose FFHQ quad is exactly the output square.

    Aligning an image that already has these landmarks is therefore the identity.
    """
    s = float(output_size)
    centre = (s - 1.0) / 2.0
    d, m = _EYE_DIST * s, _EYE_TO_MOUTH * s
    eye_y = centre - 0.1 * m  # the quad centre sits 0.1 * eye_to_mouth below the eye midpoint
    mouth_y = eye_y + m
    w = _MOUTH_HALF_WIDTH * s
    return np.array(
        [
            [centre - d / 2, eye_y],
            [centre + d / 2, eye_y],
            [centre, eye_y + _NOSE_DROP * m],
            [centre - w, mouth_y],
            [centre + w, mouth_y],
        ]
    )


def alignment_matrix(landmarks5: np.ndarray, output_size: int) -> np.ndarray:
    """The 2x3 similarity matrix taking raw-image coordinates to aligned-crop coordinates."""
    quad = ffhq_quad(landmarks5)
    x_axis = quad[3] - quad[0]  # top-left -> top-right
    side = np.hypot(*x_axis)
    scale = output_size / side
    cos, sin = x_axis / side
    rot = np.array([[cos, sin], [-sin, cos]]) * scale  # rotates the quad's x axis onto +x, then scales
    t = np.array([-0.5, -0.5]) - rot @ quad[0]
    return np.hstack([rot, t[:, None]])


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to (n, 2) points."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def _invert(matrix: np.ndarray) -> np.ndarray:
    a = np.linalg.inv(matrix[:, :2])
    return np.hstack([a, (-a @ matrix[:, 2])[:, None]])


def _border(mode: str) -> int:
    import cv2

    modes = {"reflect": cv2.BORDER_REFLECT_101, "edge": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT}
    if mode not in modes:
        raise ValueError(f"border must be one of {sorted(modes)}, got {mode!r}")
    return modes[mode]


def warp_affine(
    image: np.ndarray, to_out: np.ndarray, shape_hw: tuple[int, int], border: str = "reflect"
) -> np.ndarray:
    """Resample `image` into an output of `shape_hw` under the raw->output matrix `to_out`.

    When the output shrinks the image by 2x or more, the relevant part of the image is first reduced by an
    integer factor with area averaging (as FFHQ pre-shrinks), so the final bicubic step never aliases.
    """
    import cv2

    img = np.ascontiguousarray(image)
    h_out, w_out = shape_hw
    shrink_factor = 1.0 / math.sqrt(abs(np.linalg.det(to_out[:, :2])))  # input px per output px
    # Crop to the source region (plus a margin for the filters) so huge photos stay cheap.
    corners = np.array([[-0.5, -0.5], [w_out - 0.5, -0.5], [w_out - 0.5, h_out - 0.5], [-0.5, h_out - 0.5]])
    src = transform_points(_invert(to_out), corners)
    margin = 4.0 * max(shrink_factor, 1.0)
    x0 = int(max(math.floor(src[:, 0].min() - margin), 0))
    y0 = int(max(math.floor(src[:, 1].min() - margin), 0))
    x1 = int(min(math.ceil(src[:, 0].max() + margin) + 1, img.shape[1]))
    y1 = int(min(math.ceil(src[:, 1].max() + margin) + 1, img.shape[0]))
    if x1 > x0 and y1 > y0 and (x0 > 0 or y0 > 0 or x1 < img.shape[1] or y1 < img.shape[0]):
        img = img[y0:y1, x0:x1]
        to_out = to_out.copy()
        to_out[:, 2] += to_out[:, :2] @ [x0, y0]
    shrink = int(math.floor(shrink_factor))
    if shrink >= 2 and min(img.shape[:2]) >= 2 * shrink:
        h, w = img.shape[:2]
        small = cv2.resize(img, (max(w // shrink, 1), max(h // shrink, 1)), interpolation=cv2.INTER_AREA)
        sx, sy = small.shape[1] / w, small.shape[0] / h
        # small-pixel centre u maps to raw centre (u + 0.5) / s - 0.5
        to_raw = np.array([[1 / sx, 0, 0.5 / sx - 0.5], [0, 1 / sy, 0.5 / sy - 0.5]])
        to_out = np.hstack(
            [to_out[:, :2] @ to_raw[:, :2], (to_out[:, :2] @ to_raw[:, 2] + to_out[:, 2])[:, None]]
        )
        img = small
    return cv2.warpAffine(
        img,
        to_out,
        (w_out, h_out),
        flags=cv2.INTER_CUBIC,
        borderMode=_border(border),
    )


def _check_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be uint8 HxWx3, got {img.dtype} {img.shape}")
    return img


def align_face(
    image: np.ndarray, landmarks5: np.ndarray, output_size: int, border: str = "reflect"
) -> np.ndarray:
    """Warp a uint8 HxWx3 photo so the face's FFHQ quad fills an `output_size` square crop.

    Outside the photo the crop is filled by `border` ("reflect", "edge" or "constant" black).
    """
    img = _check_image(image)
    matrix = alignment_matrix(landmarks5, output_size)
    return warp_affine(img, matrix, (output_size, output_size), border)


def landmarks68_to_5(points68: np.ndarray) -> np.ndarray:
    """Reduce dlib/iBUG 68-point landmarks to the five points in `LANDMARK_NAMES` order.

    Eyes are the means of their six contour points (36-41 image-left, 42-47 image-right), the nose is its
    tip (30) and the mouth corners are 48 and 54, which gives the same eye and mouth averages FFHQ used.
    """
    pts = np.asarray(points68, dtype=np.float64)
    if pts.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {pts.shape}")
    return np.stack([pts[36:42].mean(0), pts[42:48].mean(0), pts[30], pts[48], pts[54]])


def similarity_matrix(angle_deg: float, scale: float, shift_xy, centre_xy) -> np.ndarray:
    """2x3 matrix: rotate by `angle_deg` (counter-clockwise on screen) and scale about `centre_xy`, then
    shift."""
    a = math.radians(angle_deg)
    cos, sin = math.cos(a) * scale, math.sin(a) * scale
    rot = np.array([[cos, sin], [-sin, cos]])
    c = np.asarray(centre_xy, dtype=np.float64)
    t = c - rot @ c + np.asarray(shift_xy, dtype=np.float64)
    return np.hstack([rot, t[:, None]])


def similarity_warp(
    image: np.ndarray,
    landmarks5: np.ndarray,
    angle_deg: float,
    scale: float,
    shift_xy,
    output_shape: tuple[int, int],
    border: str = "reflect",
) -> tuple[np.ndarray, np.ndarray]:
    """Apply a known similarity transform to a photo and its landmarks (to plant or test misalignment).

    The image is rotated by `angle_deg` and scaled by `scale` about its own centre, then moved by
    `shift_xy` (x, y) pixels into an output of `output_shape` (height, width). Returns the warped image and
    the landmarks (any number of points) in the warped image's coordinates.
    """
    img = _check_image(image)
    h, w = img.shape[:2]
    matrix = similarity_matrix(angle_deg, scale, shift_xy, ((w - 1) / 2.0, (h - 1) / 2.0))
    out_h, out_w = int(output_shape[0]), int(output_shape[1])
    warped = warp_affine(img, matrix, (out_h, out_w), border)
    return warped, transform_points(matrix, landmarks5)
