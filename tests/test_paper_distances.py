"""The paper's other distances, offline: the L1 metric, VGG16 perceptual features (randomly initialised
weights of torchvision's architecture) and FaceNet with a CASIA-WebFace-shaped state dict."""

from __future__ import annotations

import numpy as np
import pytest

from ganmatch.analysis import distances
from ganmatch.errors import WeightsError
from ganmatch.faces import face_embeddings

pytestmark = pytest.mark.heavy  # loads real models, trains, projects or renders (not in make test-fast)


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
    """A torchvision VGG16 state dict with seeded random weights (the features part, as the real file's
    keys)."""
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
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224,
                                                                                   0.225]).view(1, 3, 1, 1)
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
        face_embeddings.embed_images("vgg", [np.zeros((8, 8, 3), np.uint8)],
                                     weights=str(tmp_path / "none.pth"))


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


def test_a_web_page_is_not_recorded_as_the_file(tmp_path):
    """A file host's sign-in page (FairFace's weights live on Google Drive) is refused, not hashed into the
    lock."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from ganmatch.data import download as dl
    from ganmatch.errors import DownloadError

    class Page(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            body = b"<!DOCTYPE html><html><body>Google Drive can't scan this file</body></html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        lock = tmp_path / "lock.json"
        with pytest.raises(DownloadError, match="web page"):
            dl.download(f"http://127.0.0.1:{srv.server_address[1]}/f.pt", tmp_path / "f.pt", lock=lock,
                        retries=1, backoff=0, progress=False)
        assert not (tmp_path / "f.pt").exists() and not lock.exists()
    finally:
        srv.shutdown()
        srv.server_close()


# ---------------------------------------------------------------- FairFace: the Race covariate


@pytest.fixture(scope="module")
def fairface_weights(tmp_path_factory):
    """A FairFace-shaped state dict (ResNet-34, 18 outputs) with seeded random weights, saved as the real
    file is (a DataParallel 'module.' prefix is accepted too)."""
    import torch
    from torchvision.models import resnet34

    torch.manual_seed(2)
    model = resnet34(weights=None)
    model.fc = torch.nn.Linear(512, 18)
    path = tmp_path_factory.mktemp("ff") / "fairface_alldata_20191111.pt"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)
    return path, model.eval()


def test_fairface_predicts_race_with_probabilities(fairface_weights):
    import torch

    from ganmatch.faces.face_embeddings import face_crop, landmarks_for
    from ganmatch.faces.fairface import RACES, predict_race

    path, model = fairface_weights
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    table = predict_race(imgs, weights=str(path))
    assert list(table.columns) == ["race", "race_prob", "black_prob", "fairface_male_prob", "fairface_age"]
    # the same chip through the model by hand: 224 px, ImageNet-normalised, softmax over the first 7 logits
    chip = face_crop(imgs[0], landmarks_for(imgs[:1], None)[0], 224, 0.25).astype(np.float32) / 255.0
    x = (chip - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    with torch.no_grad():
        z = model(torch.from_numpy(x).permute(2, 0, 1)[None]).numpy()[0].astype(np.float64)
    p = np.exp(z[:7] - z[:7].max())
    p /= p.sum()
    assert table.loc[0, "race"] == RACES[7][int(np.argmax(p))]
    assert np.isclose(table.loc[0, "black_prob"], p[1], atol=1e-4) and np.isclose(table.loc[0, "race_prob"],
                                                                                  p.max(), atol=1e-4)
    four = predict_race(imgs, weights=str(path), races=4)
    assert set(four["race"]) <= set(RACES[4]) and "fairface_age" not in four


def test_race_label_takes_precedence_and_black_is_a_covariate(fairface_weights, tmp_path):
    from ganmatch.analysis.attributes import attributes_table
    from ganmatch.stages.faces import race_columns

    path, _ = fairface_weights
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(6)]
    from PIL import Image

    paths = []
    for i, im in enumerate(imgs):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(im).save(paths[-1])
    race = race_columns(paths, str(path))
    assert {"race", "race_prob", "black_prob", "black_confidence"} <= set(race.columns)
    ids = np.array([f"img{i}" for i in range(6)])
    import pandas as pd

    index = pd.DataFrame({"image_id": ids, "split": "train", "race": [None, "Indian", None, None, None, None],
                          "black": [np.nan, 1.0, np.nan, np.nan, np.nan, np.nan]})
    preds = pd.concat([pd.DataFrame({"image_id": ids}), race], axis=1)
    X = rng.normal(size=(6, 3)).astype(np.float32)
    table, _ = attributes_table(index, ids, X, ["black"], cv_folds=2, predictions=preds)
    assert table["race_source"].tolist() == ["predicted", "label", "predicted", "predicted", "predicted",
                                             "predicted"]
    assert table.loc[1, "race"] == "Indian" and table.loc[0, "race"] == race.loc[0, "race"]
    assert table["black_source"].tolist()[:2] == ["predicted", "label"]
    assert np.allclose(table.loc[[0, 2], "black_prob"], race.loc[[0, 2], "black_prob"])
    assert table.loc[0, "black"] == float(race.loc[0, "black_prob"] >= 0.5)
