"""Face embeddings of aligned crops: dlib identity distances on real photos, FaceNet loader, fallbacks."""

import numpy as np
import pytest
import torch
from helpers import PHOTO_LANDMARKS, real_photos
from PIL import Image

from ganmatch.errors import ConfigError, WeightsError
from ganmatch.faces.align import align_face
from ganmatch.faces.face_embeddings import (
    EMBEDDERS,
    dlib_chips,
    embed_images,
    facenet_embeddings,
    load_facenet,
    pixel_embeddings,
)

pytestmark = pytest.mark.heavy  # loads real models, trains, projects or renders (not in make test-fast)

# MTCNN landmarks of the two shipped photos (fixed here so these tests do not depend on the detector)
LANDMARKS = PHOTO_LANDMARKS
S = 160


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def crops():
    """Aligned crops: astronaut, its mirror image, a half-size astronaut photo, Grace Hopper, her mirror
    image."""
    import cv2

    photos = real_photos()
    hopper, ast = photos["hopper"], photos["astronaut"]
    la, lh = np.array(LANDMARKS["astronaut"]), np.array(LANDMARKS["hopper"])
    a = align_face(ast, la, S)
    half = cv2.resize(ast, (256, 256), interpolation=cv2.INTER_AREA)
    a_half = align_face(half, (la + 0.5) / 2 - 0.5, S)
    h = align_face(hopper, lh, S)
    return np.stack([a, a[:, ::-1], a_half, h, h[:, ::-1]])


def _dist(e):
    return np.linalg.norm(e[:, None] - e[None], axis=-1)


def test_dlib_same_person_below_06_different_above(crops):
    e = embed_images("dlib", crops)
    assert e.shape == (5, 128) and e.dtype == np.float32
    d = _dist(e)
    same = [d[0, 1], d[0, 2], d[1, 2], d[3, 4]]
    assert max(same) < 0.6
    assert min(d[:3, 3:].ravel()) > 0.6


def test_dlib_chips_are_standard(crops):
    chips = dlib_chips(crops[:3]).astype(float)
    assert chips.shape == (3, 150, 150, 3)
    # dlib's chip geometry is fixed by the face: a rescaled photo gives the same chip, a mirrored one its
    # mirror
    assert np.corrcoef(chips[0].ravel(), chips[2].ravel())[0, 1] > 0.95
    assert np.corrcoef(chips[0].ravel(), chips[1][:, ::-1].ravel())[0, 1] > 0.9


def test_paths_and_arrays_give_the_same_embedding(tmp_path, crops):
    paths = []
    for i, im in enumerate(crops[:2]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(im).save(paths[-1])
    np.testing.assert_array_equal(embed_images("dlib", paths), embed_images("dlib", crops[:2]))
    np.testing.assert_array_equal(
        embed_images("pixel", paths, kind="pixel", size=8), embed_images("pixel", list(crops[:2]), size=8)
    )


def test_facenet_random_weights_offline(crops):
    with pytest.raises(WeightsError, match="needs weights"):
        facenet_embeddings(crops[:1])
    e1 = embed_images("facenet", crops[:3], allow_random=True, random_state=3)
    e2 = embed_images("facenet", crops[:3], allow_random=True, random_state=3)
    assert e1.shape == (3, 512) and e1.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e1, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(e1, e2)
    e3 = embed_images("facenet", crops[:1], allow_random=True, random_state=4)
    assert not np.allclose(e1[0], e3[0])


def test_facenet_loads_a_state_dict_file(tmp_path, crops):
    model = load_facenet(None, True, 7)
    state = dict(model.state_dict())
    state["logits.weight"] = torch.zeros(8631, 512)  # facenet-pytorch's files carry a classifier head
    state["logits.bias"] = torch.zeros(8631)
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    from_file = embed_images("facenet", crops[:2], weights=str(path))
    random = embed_images("facenet", crops[:2], allow_random=True, random_state=7)
    np.testing.assert_allclose(from_file, random, atol=1e-6)
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="not a loadable"):
        load_facenet(str(tmp_path / "bad.pt"))
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="does not fit"):
        load_facenet(str(tmp_path / "other.pt"))
    with pytest.raises(WeightsError, match="not found"):
        load_facenet(str(tmp_path / "missing.pt"))


def test_pixel_embedding_known_answer():
    img = np.zeros((2, 32, 32, 3), np.uint8)
    img[0] = (255, 0, 51)
    e = pixel_embeddings(img, size=4)
    assert e.shape == (2, 48)
    np.testing.assert_allclose(e[0].reshape(16, 3), np.tile([1.0, 0.0, 0.2], (16, 1)), atol=1e-6)
    assert pixel_embeddings(img, size=4, grayscale=True).shape == (2, 16)


def test_hog_sees_the_mirror_image(crops):
    e = embed_images("hog", crops[:3])
    d = _dist(e)
    assert e.shape[0] == 3 and d[0, 2] < d[0, 1]  # rescaled copy closer than the mirrored one


def test_registry_and_errors(crops):
    assert set(EMBEDDERS) >= {"dlib", "facenet", "pixel", "hog"}
    with pytest.raises(ConfigError, match="unknown face embedding"):
        embed_images("arcface", crops)
    from ganmatch.errors import InputDataError

    with pytest.raises(InputDataError, match="not a square"):
        embed_images("dlib", [np.zeros((100, 120, 3), np.uint8)])
