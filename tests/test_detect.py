"""Face detection on real photos that ship offline (skimage's astronaut, matplotlib's Grace Hopper)."""

import sys

import numpy as np
import pandas as pd
import pytest
from helpers import real_photos, schema_block
from PIL import Image

from ganmatch.errors import ConfigError, ImageError
from ganmatch.faces.align import align_face, alignment_matrix, similarity_warp, transform_points
from ganmatch.faces.detect import Detection, FaceDetector, box_from_landmarks, face_models_dir
from ganmatch.stages.align import align_shard

pytestmark = pytest.mark.heavy  # loads real models, trains, projects or renders (not in make test-fast)

BACKENDS = ["mtcnn", "dlib"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def photos():
    return real_photos()


# where the faces are (eye centres, by hand from the photos), x, y
EYES = {"astronaut": [(204, 102), (247, 104)], "hopper": [(222, 191), (307, 188)]}


def _eye_distance(lm):
    return float(np.hypot(*(lm[1] - lm[0])))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["astronaut", "hopper"])
def test_finds_the_face(photos, backend, name):
    det = FaceDetector(backend=backend).detect(photos[name])
    assert isinstance(det, Detection)
    lm = det.landmarks5
    assert lm.shape == (5, 2)
    eyes = np.array(EYES[name], float)
    assert np.abs(lm[:2] - eyes).max() < 0.15 * _eye_distance(eyes)
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # image-left before image-right
    assert lm[:2, 1].max() < lm[2, 1] < lm[3:, 1].min()  # eyes above nose above mouth
    x0, y0, x1, y1 = det.box
    assert x0 < lm[:, 0].min() and lm[:, 0].max() < x1 and y0 < lm[:, 1].min() and lm[:, 1].max() < y1
    assert det.size > 80


@pytest.mark.parametrize("backend", BACKENDS)
def test_warped_copy_aligns_to_the_same_crop(photos, backend):
    detector = FaceDetector(backend=backend)
    img = photos["hopper"]
    det = detector.detect(img)
    warped, expected = similarity_warp(img, det.landmarks5, 17.0, 0.8, (60.0, -30.0), (640, 640))
    det_w = detector.detect(warped)
    err = np.abs(det_w.landmarks5 - expected)
    assert err.max() < 0.08 * _eye_distance(expected)  # a few pixels (eye distance ~70 px here)
    # in the aligned 128 px crops, the true face points land within a few pixels of each other
    ref = transform_points(alignment_matrix(det.landmarks5, 128), det.landmarks5)
    got = transform_points(alignment_matrix(det_w.landmarks5, 128), expected)
    assert np.abs(got - ref).max() < 4
    a = align_face(img, det.landmarks5, 32).astype(float)
    b = align_face(warped, det_w.landmarks5, 32).astype(float)
    assert np.corrcoef(a[6:26, 6:26].ravel(), b[6:26, 6:26].ravel())[0, 1] > 0.9


def test_big_photo_is_searched_at_reduced_scale(photos):
    import cv2

    img = photos["astronaut"]
    big = cv2.resize(img, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    det = FaceDetector(backend="mtcnn", max_side=512).detect(big)
    ref = FaceDetector(backend="mtcnn").detect(img)
    np.testing.assert_allclose(det.landmarks5, (ref.landmarks5 + 0.5) * 4 - 0.5, atol=6)


def test_box_from_landmarks_matches_dlib_box(photos):
    for img in photos.values():
        det = FaceDetector(backend="dlib").detect(img)
        box = box_from_landmarks(det.landmarks5)
        ix = max(0, min(box[2], det.box[2]) - max(box[0], det.box[0]))
        iy = max(0, min(box[3], det.box[3]) - max(box[1], det.box[1]))
        inter = ix * iy
        union = np.prod(box[2:] - box[:2]) + np.prod(det.box[2:] - det.box[:2]) - inter
        assert inter / union > 0.7


@pytest.fixture(scope="module")
def two_faces(photos):
    """Astronaut (small face) beside Grace Hopper (large face) on one canvas."""
    canvas = np.full((600, 1024, 3), 255, np.uint8)
    canvas[:512, :512] = photos["astronaut"]
    canvas[:600, 512:] = photos["hopper"]
    return canvas


def test_policy_for_several_faces(two_faces):
    largest = FaceDetector(policy="largest").detect(two_faces)
    assert largest.n_faces >= 2 and largest.landmarks5[:, 0].min() > 512  # Grace Hopper's face
    with pytest.raises(ImageError, match="reject_multiple"):
        FaceDetector(policy="reject").detect(two_faces)
    first = FaceDetector(policy="first").detect(two_faces)
    assert first.score == max(d.score for d in FaceDetector().detect_all(two_faces))


def test_small_face_and_no_face(photos):
    import cv2

    tiny = cv2.resize(photos["astronaut"], (160, 160), interpolation=cv2.INTER_AREA)  # face ~30 px
    det, reason = FaceDetector(min_face_size=40).locate(tiny)
    assert det is None and "too small" in reason
    assert FaceDetector(min_face_size=20).detect(tiny) is not None
    blank = np.full((200, 200, 3), 128, np.uint8)
    for backend in BACKENDS:
        assert FaceDetector(backend=backend).detect(blank) is None
        assert FaceDetector(backend=backend).locate(blank) == (None, "no face found")


def test_bad_settings():
    with pytest.raises(ConfigError, match="backend"):
        FaceDetector(backend="yolo").detect(np.zeros((50, 50, 3), np.uint8))
    with pytest.raises(ConfigError, match="landmarks"):
        FaceDetector(backend="dlib", landmarks="mtcnn").detect(np.zeros((50, 50, 3), np.uint8))
    with pytest.raises(ImageError, match="uint8"):
        FaceDetector().detect(np.zeros((50, 50), np.uint8))


def test_model_files_found_without_importing_the_package():
    sys.modules.pop("face_recognition_models", None)
    assert (face_models_dir() / "shape_predictor_68_face_landmarks.dat").is_file()
    assert "face_recognition_models" not in sys.modules


def test_align_shard_never_stops(tmp_path, photos):
    src = tmp_path / "raw"
    src.mkdir()
    Image.fromarray(photos["astronaut"]).save(src / "ok.jpg", quality=90)
    (src / "zero.jpg").write_bytes(b"")
    (src / "junk.png").write_bytes(b"\x89PNG not really")
    Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(src / "blank.png")
    ids = ["ok", "zero", "junk", "blank", "missing"]
    paths = [src / "ok.jpg", src / "zero.jpg", src / "junk.png", src / "blank.png", src / "missing.png"]
    rows = pd.DataFrame({"image_id": ids, "path": [str(p) for p in paths]})
    table = align_shard(rows, schema_block("align", detector="mtcnn", output_size=64), tmp_path / "aligned",
                        detector=FaceDetector())
    assert list(table["image_id"]) == ids
    assert list(table["status"]) == ["ok", "rejected", "rejected", "rejected", "rejected"]
    reasons = dict(zip(table["image_id"], table["reason"], strict=True))
    assert reasons["ok"] == "" and "empty file" in reasons["zero"] and "unreadable" in reasons["junk"]
    assert "no face found" in reasons["blank"] and "not found" in reasons["missing"]
    out = np.asarray(Image.open(table.loc[0, "aligned_path"]))
    assert out.shape == (64, 64, 3)
    assert np.isfinite(table.loc[0, ["x0", "y0", "x4", "y4"]].astype(float)).all()
    assert table.loc[1:, "x0"].isna().all()
    # landmarks from a table instead of a detector
    marks = table.loc[[0], ["image_id", "x0", "y0", "x1", "y1", "x2", "y2", "x3", "y3", "x4", "y4"]]
    again = align_shard(rows[:2], schema_block("align", detector="table", output_size=64),
                        tmp_path / "aligned2",
                        landmarks=pd.DataFrame(marks))
    assert list(again["status"]) == ["ok", "rejected"]
    np.testing.assert_array_equal(np.asarray(Image.open(again.loc[0, "aligned_path"])), out)
