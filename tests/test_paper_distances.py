"""The paper's other distances, offline: the L1 metric, VGG16 perceptual features (randomly initialised
weights of torchvision's architecture) and FaceNet with a CASIA-WebFace-shaped state dict."""

from __future__ import annotations

import numpy as np
import pytest

from ganmatch import distances, face_embeddings
from ganmatch.errors import WeightsError


def test_l1_metric_is_exact_and_consistent():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(70, 9)).astype(np.float32)
    X[5] = X[9]                                    # ties
    Y = rng.normal(size=(40, 9)).astype(np.float32)
    want = np.abs(X.astype(np.float64)[:, None] - Y.astype(np.float64)[None]).sum(-1).astype(np.float32)
    P = distances.pairwise(X, Y, "l1")
    assert np.array_equal(P, want)
    rows, cols = rng.integers(0, 70, 50), rng.integers(0, 40, 50)
    assert np.array_equal(distances.pair_distances(X, Y, rows, cols, "l1"), P[rows, cols])
    idx, dist = distances.knn(X, 6, "l1", Y=Y, exclude_self=False)
    order = np.lexsort((np.broadcast_to(np.arange(40), P.shape), P), axis=1)[:, :6]
    assert np.array_equal(idx, order) and np.array_equal(dist, np.take_along_axis(P, order, 1))
    idx, dist = distances.knn(X, 4, "l1")          # self excluded, the duplicate's twin first at distance 0
    assert idx[5, 0] == 9 and dist[5, 0] == 0 and (idx != np.arange(70)[:, None]).all()


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory):
    """A torchvision VGG16 state dict with seeded random weights (the features part, as the real file's keys)."""
    import torch
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(1)
    feats = make_layers(cfgs["D"])
    path = tmp_path_factory.mktemp("w") / "vgg16.pth"
    state = {f"features.{k}": v for k, v in feats.state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)  # the real file has a head: it is ignored
    torch.save(state, path)
    return path


def test_vgg_features_follow_the_reference_recipe(vgg_weights):
    import torch
    import torch.nn.functional as F
    from torchvision.models.vgg import cfgs, make_layers

    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(2)]
    full = face_embeddings.embed_images("vgg", imgs[:1], weights=str(vgg_weights), pool=None)
    assert full.shape == (1, 64 * 112**2 + 128 * 56**2 + 256 * 28**2 + 512 * 14**2) == (1, 1_505_280)
    # the reference's VGGPerceptualLoss.encode: to [0, 1], normalise, resize to 112 (bilinear), 4 blocks
    feats = make_layers(cfgs["D"])
    feats.load_state_dict({k[9:]: v for k, v in torch.load(vgg_weights).items() if k.startswith("features.")})
    x = torch.from_numpy(imgs[0]).permute(2, 0, 1)[None].float() / 255.0
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = F.interpolate(x, size=(112, 112), mode="bilinear", align_corners=False)
    want = []
    with torch.no_grad():
        for a, b in ((0, 4), (4, 9), (9, 16), (16, 23)):
            x = feats[a:b](x)
            want.append(x.flatten().numpy().copy())
    assert np.allclose(full[0], np.concatenate(want), atol=1e-5)
    pooled = face_embeddings.embed_images("vgg", imgs, weights=str(vgg_weights), pool=2)
    assert pooled.shape == (2, 960 * 4) and pooled.dtype == np.float32
    # pooling is the mean over each grid cell of each map: relu1_2 (64 x 112 x 112) -> 64 x 2 x 2
    first = want[0].reshape(64, 2, 56, 2, 56).mean(axis=(2, 4)).ravel()
    assert np.allclose(pooled[0, :256], first, atol=1e-5)
    assert not np.allclose(pooled[0], pooled[1])


def test_vgg_weights_are_required_and_checked(tmp_path):
    with pytest.raises(WeightsError, match="needs weights"):
        face_embeddings.embed_images("vgg", [np.zeros((8, 8, 3), np.uint8)])
    with pytest.raises(WeightsError, match="not found"):
        face_embeddings.embed_images("vgg", [np.zeros((8, 8, 3), np.uint8)], weights=str(tmp_path / "none.pth"))


def test_facenet_casia_state_dict_loads(tmp_path):
    import torch
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    model = InceptionResnetV1(pretrained=None, classify=True, num_classes=10575)   # CASIA-WebFace's classes
    path = tmp_path / "20180408-102900-casia-webface.pt"
    torch.save(model.state_dict(), path)
    img = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    emb = face_embeddings.embed_images("facenet", [img, img[::-1]], weights=str(path))
    assert emb.shape == (2, 512) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
    face_embeddings.load_facenet.cache_clear()
