"""Face detection and five-point landmarks on real photographs: MTCNN (facenet-pytorch) or dlib.

All models ship inside PyPI packages (facenet-pytorch's P/R/O-nets, face_recognition_models' dlib files),
so detection runs offline. Models load lazily on first use and are cached per process, so importing
this module is cheap. Landmarks are returned in `ganmatch.faces.align.LANDMARK_NAMES` order, in pixel
coordinates of the photo given (pixel centres on integers).
"""

from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ganmatch.errors import ImageError, WeightsError
from ganmatch.faces.align import ffhq_quad, landmarks68_to_5

BACKENDS = ("mtcnn", "dlib", "dlib_cnn")
LANDMARK_SOURCES = ("auto", "mtcnn", "dlib68")
POLICIES = ("largest", "first", "reject_multiple")
_POLICY_ALIASES = {"reject": "reject_multiple"}


# ---------------------------------------------------------------- model files and cached models


def face_models_dir() -> Path:
    """Folder of the dlib model files shipped by `face_recognition_models`, found without importing it
    (its `__init__` imports the deprecated `pkg_resources`)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("face_recognition_models is not installed; pip install face_recognition_models")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def dlib_model_path(name: str) -> Path:
    """Path of one shipped dlib model: 'shape_predictor_68_face_landmarks.dat',
    'shape_predictor_5_face_landmarks.dat', 'dlib_face_recognition_resnet_model_v1.dat' or
    'mmod_human_face_detector.dat'."""
    path = face_models_dir() / name
    if not path.is_file():
        raise WeightsError(f"{path}: missing dlib model file; reinstall face_recognition_models")
    return path


@functools.cache
def dlib_hog_detector():
    """dlib's frontal HOG + linear SVM face detector."""
    import dlib

    return dlib.get_frontal_face_detector()


@functools.cache
def dlib_cnn_detector():
    """dlib's MMOD CNN face detector (more robust to pose, slow on CPU)."""
    import dlib

    return dlib.cnn_face_detection_model_v1(str(dlib_model_path("mmod_human_face_detector.dat")))


@functools.cache
def shape_predictor(points: int = 68):
    """dlib's 68- or 5-point shape predictor."""
    import dlib

    if points not in (5, 68):
        raise ValueError(f"dlib shape predictors have 5 or 68 points, not {points}")
    return dlib.shape_predictor(str(dlib_model_path(f"shape_predictor_{points}_face_landmarks.dat")))


@functools.cache
def mtcnn_model(min_face_size: int = 20, device: str = "cpu"):
    """facenet-pytorch's MTCNN with its packaged P/R/O-net weights."""
    from facenet_pytorch import MTCNN

    return MTCNN(keep_all=True, min_face_size=int(min_face_size), device=device, post_process=False)


# ---------------------------------------------------------------- boxes and shapes


def dlib_rectangle(box) -> object:
    """A dlib.rectangle from an (x0, y0, x1, y1) box."""
    import dlib

    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return dlib.rectangle(x0, y0, x1, y1)


def box_from_landmarks(landmarks5: np.ndarray) -> np.ndarray:
    """A dlib-HOG-like face box (x0, y0, x1, y1) implied by five landmarks.

    Calibrated on dlib's detector: the box is centred about halfway from the eye midpoint to the mouth and
    its side is about 0.55 of the FFHQ quad side. Used to run dlib's shape predictors where the box is not
    known (an aligned crop, or landmarks from another detector).
    """
    pts = np.asarray(landmarks5, dtype=np.float64)
    eye_avg = (pts[0] + pts[1]) / 2
    mouth_avg = (pts[3] + pts[4]) / 2
    centre = eye_avg + 0.48 * (mouth_avg - eye_avg)
    quad = ffhq_quad(pts)
    half = 0.55 * np.hypot(*(quad[3] - quad[0])) / 2
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])


def dlib_shape(image: np.ndarray, box, points: int = 5):
    """dlib full_object_detection of `points` landmarks inside `box` (x0, y0, x1, y1) of `image`."""
    return shape_predictor(points)(np.ascontiguousarray(image), dlib_rectangle(box))


def shape_to_array(shape) -> np.ndarray:
    """(n, 2) float array from a dlib full_object_detection."""
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


# ---------------------------------------------------------------- detector


@dataclass(frozen=True)
class Detection:
    """One face: box (x0, y0, x1, y1), five landmarks (5, 2), detector score, and how many faces the photo
    had."""

    box: np.ndarray
    landmarks5: np.ndarray
    score: float
    n_faces: int = 1
    landmarks68: np.ndarray | None = None

    @property
    def size(self) -> float:
        """Face size in pixels: the geometric mean of the box sides."""
        return float(math.sqrt(max(self.box[2] - self.box[0], 0) * max(self.box[3] - self.box[1], 0)))


class FaceDetector:
    """Find one face per photo with MTCNN or dlib, and its five landmarks.

    `backend`: "mtcnn" (facenet-pytorch), "dlib" (HOG) or "dlib_cnn" (MMOD CNN). `landmarks`: "auto" (MTCNN's
    own 5 points for mtcnn, dlib's 68-point predictor for dlib), "mtcnn" or "dlib68". `policy` for several
    faces:
    "largest", "first" (highest score) or "reject_multiple" (alias "reject"). Faces smaller than
    `min_face_size` px are rejected as too small; photos larger than `max_side` px are searched at reduced
    scale.
    """

    def __init__(
        self,
        backend: str = "mtcnn",
        landmarks: str = "auto",
        policy: str = "largest",
        min_face_size: int = 40,
        max_side: int = 1024,
        score_threshold: float = 0.0,
        upsample: int = 1,
        device: str = "cpu",
    ):
        self.backend = backend
        self.landmarks = landmarks
        self.policy = policy
        self.min_face_size = min_face_size
        self.max_side = max_side
        self.score_threshold = score_threshold
        self.upsample = upsample
        self.device = device

    def _check(self) -> tuple[str, str]:
        from ganmatch.errors import ConfigError

        if self.backend not in BACKENDS:
            raise ConfigError(f"align.detector: unknown backend {self.backend!r}; use one of {BACKENDS}")
        policy = _POLICY_ALIASES.get(self.policy, self.policy)
        if policy not in POLICIES:
            raise ConfigError(
                f"align.policy: unknown policy {self.policy!r}; use one of {POLICIES} or 'reject'"
            )
        source = self.landmarks
        if source == "auto":
            source = "mtcnn" if self.backend == "mtcnn" else "dlib68"
        if source not in LANDMARK_SOURCES or (source == "mtcnn" and self.backend != "mtcnn"):
            raise ConfigError(
                f"FaceDetector(landmarks={self.landmarks!r}) does not fit backend {self.backend!r}; use auto "
                "or dlib68"
            )
        return policy, source

    def detect_all(self, image: np.ndarray) -> list[Detection]:
        """Every face found, largest first, with landmarks (coordinates of `image`)."""
        _, source = self._check()
        img = np.ascontiguousarray(image)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ImageError(
                f"image must be uint8 HxWx3, got {img.dtype} {img.shape}; load it with "
                "ganmatch.faces.images.load_image"
            )
        small, factor = _shrink(img, self.max_side)
        if self.backend == "mtcnn":
            found = self._mtcnn(small)
        else:
            found = self._dlib(small)
        found = [(b, s, p) for b, s, p in found if s >= self.score_threshold]
        dets = []
        for box, score, pts5 in found:
            box = _unshrink(np.asarray(box, np.float64).reshape(2, 2), factor).reshape(4)
            pts68 = None
            if source == "dlib68":
                pts68 = shape_to_array(dlib_shape(img, box, 68))
                pts5 = landmarks68_to_5(pts68)
            else:
                pts5 = _unshrink(np.asarray(pts5, np.float64), factor)
            dets.append(
                Detection(box=box, landmarks5=pts5, score=float(score), n_faces=len(found), landmarks68=pts68)
            )
        dets.sort(key=lambda d: -d.size)
        return dets

    def detect(self, image: np.ndarray) -> Detection | None:
        """The face chosen by `policy`, or None if there is none.

        Raises `ImageError` with the reason when faces were found but the photo is rejected: the chosen
        face is smaller than `min_face_size`, or several faces and policy "reject_multiple".
        """
        policy, _ = self._check()
        dets = self.detect_all(image)
        if not dets:
            return None
        if policy == "reject_multiple" and len(dets) > 1:
            raise ImageError(
                f"{len(dets)} faces found and align.policy is reject_multiple; crop the photo or use policy "
                "largest"
            )
        chosen = max(dets, key=lambda d: d.score) if policy == "first" else dets[0]
        if chosen.size < self.min_face_size:
            raise ImageError(
                f"face too small ({chosen.size:.0f} px < min_face_size {self.min_face_size}); "
                "use a larger photo or lower align.min_face_size"
            )
        return chosen

    def locate(self, image: np.ndarray) -> tuple[Detection | None, str]:
        """`detect` that returns (detection, "") or (None, reason) and never raises for a bad photo."""
        try:
            det = self.detect(image)
        except ImageError as err:
            return None, str(err)
        return (det, "") if det is not None else (None, "no face found")

    # -- backends return [(box (4,), score, landmarks5 or None)] in the coordinates of the image given

    def _mtcnn(self, image: np.ndarray):
        from PIL import Image

        model = mtcnn_model(min(20, int(self.min_face_size)), self.device)
        boxes, probs, points = model.detect(Image.fromarray(image), landmarks=True)
        if boxes is None:
            return []
        return [
            (np.asarray(b, np.float64), float(p), np.asarray(q, np.float64))
            for b, p, q in zip(boxes, probs, points, strict=True)
        ]

    def _dlib(self, image: np.ndarray):
        if self.backend == "dlib_cnn":
            hits = dlib_cnn_detector()(image, int(self.upsample))
            return [
                ((h.rect.left(), h.rect.top(), h.rect.right(), h.rect.bottom()), float(h.confidence), None)
                for h in hits
            ]
        rects, scores, _ = dlib_hog_detector().run(image, int(self.upsample), 0.0)
        return [
            ((r.left(), r.top(), r.right(), r.bottom()), float(s), None)
            for r, s in zip(rects, scores, strict=True)
        ]

    def __repr__(self) -> str:
        return (
            f"FaceDetector(backend={self.backend!r}, landmarks={self.landmarks!r}, policy={self.policy!r}, "
            f"min_face_size={self.min_face_size})"
        )


def _shrink(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Reduce a big photo for the detector search; returns it and the scale factor (small / original)."""
    import cv2

    side = max(image.shape[:2])
    if not max_side or side <= max_side:
        return image, 1.0
    factor = max_side / side
    w, h = max(int(round(image.shape[1] * factor)), 1), max(int(round(image.shape[0] * factor)), 1)
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA), factor


def _unshrink(points: np.ndarray, factor: float) -> np.ndarray:
    """Map (n, 2) points of the reduced image back to the original (pixel centres on integers)."""
    if factor == 1.0:
        return points
    return (points + 0.5) / factor - 0.5
