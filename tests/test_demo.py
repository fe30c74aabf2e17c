"""The demo simulation: planted confounding, identity clusters, and landmarks that alignment can undo."""

import numpy as np
import pytest

from ganmatch.faces.align import align_face
from ganmatch.gan.render import render
from ganmatch.gan.stylegan2 import make_generator
from ganmatch.simulate import demo

CFG = {
    "n_identities": 120, "photos_per_identity": [2, 3], "resolution": 32, "z_dim": 16, "w_dim": 16,
    "channels": 16, "n_mlp": 2, "separation": 1.5, "attribute_noise": 0.2, "nuisance_scale": 0.15,
    "photo_spread": 0.1, "raw_size": 80,
    "misalign": {"rotate_deg": 12.0, "scale": 0.1, "shift": 0.05}, "effect": 1.0, "test_fraction": 0.3,
}


@pytest.fixture(scope="module")
def data():
    gen = make_generator(size=32, z_dim=16, w_dim=16, n_mlp=2, channels={r: 16 for r in (4, 8, 16, 32)},
                         seed=0)
    return gen, demo.simulate(gen, CFG, seed=0)


def test_shapes_and_ids(data):
    _, d = data
    n = len(d.labels)
    assert 240 <= n <= 360
    assert d.latents.shape == (n, 16) and d.latents.dtype == np.float32
    assert d.photos.shape == (n, 80, 80, 3) and d.photos.dtype == np.uint8
    assert d.labels["image_id"].is_unique
    # treatment is a property of the person
    assert (d.labels.groupby("identity")["male"].nunique() == 1).all()


def test_planted_confounding_gaps(data):
    _, d = data
    gaps = d.labels.groupby("male")[list(demo.PLANTED)].mean().diff().iloc[-1]
    assert gaps["young"] < 0 and gaps["makeup"] < 0 and gaps["eyeglasses"] > 0
    sd = d.labels[list(demo.PLANTED)].std()
    assert (gaps.abs() / sd > 0.3).sum() >= 3


def test_photos_of_one_identity_are_closer_than_others(data):
    _, d = data
    ids = d.labels["identity"].to_numpy()
    X = d.latents
    dist = np.linalg.norm(X[:, None] - X[None], axis=-1)
    same = (ids[:, None] == ids[None]) & ~np.eye(len(ids), dtype=bool)
    assert np.median(dist[same]) < 0.5 * np.median(dist[~same])


def test_alignment_undoes_planted_misalignment(data):
    gen, d = data
    truth = render(gen, d.latents[:8])
    for i in range(8):
        points = d.landmarks.iloc[i, 1:].to_numpy(float).reshape(5, 2)
        aligned = align_face(d.photos[i], points, 32)
        mse = np.mean((aligned.astype(float) - truth[i].astype(float)) ** 2)
        assert 10 * np.log10(255.0**2 / max(mse, 1e-9)) > 22


def test_same_seed_same_data():
    gen = make_generator(size=32, z_dim=16, w_dim=16, n_mlp=2, channels={r: 16 for r in (4, 8, 16, 32)},
                         seed=0)
    cfg = dict(CFG, n_identities=10)
    a, b = demo.simulate(gen, cfg, seed=3), demo.simulate(gen, cfg, seed=3)
    assert np.array_equal(a.photos, b.photos) and a.labels.equals(b.labels)


def test_face_error_rates_equal_the_dense_count_in_linear_memory():
    """The recogniser's truth over all photo pairs is counted in row blocks: the same counts as the dense
    n x n matrix, without ever holding it (at 30,000 photos that matrix alone was 7 GB)."""
    import tracemalloc

    rng = np.random.default_rng(3)
    owner = np.repeat(np.arange(700), 3)
    desc = rng.standard_normal((len(owner), 8)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    x = desc.astype(np.float64)
    d = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * x @ x.T))
    upper = np.triu(np.ones_like(d, bool), 1)
    same = (owner[:, None] == owner[None, :]) & upper
    diff = (owner[:, None] != owner[None, :]) & upper
    dense = (int((d[same] > 1.2).sum()), int(same.sum()), int((d[diff] <= 1.2).sum()), int(diff.sum()))
    del d, upper, same, diff
    tracemalloc.start()
    counts = demo.pair_error_counts(desc, owner, 1.2, block=64)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert counts == dense and counts[0] > 0 and counts[2] > 0
    assert peak < 0.25 * len(owner) ** 2 * 8  # the dense float64 matrix alone is 35 MB; a block is 1 MB
