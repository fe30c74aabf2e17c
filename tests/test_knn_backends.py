"""Exact kNN backends (numpy blocked / symmetric, faiss, torch on a device): every one gives the same
neighbours and bit-identical distances as a brute-force sort of `pairwise`, ties and duplicates included;
auto picks torch only with CUDA and falls back to numpy without faiss; the certified refinement finishes
to the exact kernel's float32 values."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from test_distances import brute

from ganmatch.analysis import distances
from ganmatch.errors import InputDataError

pytest.importorskip("torch")
HAVE_FAISS = distances._import_faiss() is not None
BACKENDS = ["numpy", "torch", pytest.param("faiss", marks=pytest.mark.skipif(not HAVE_FAISS, reason="no faiss"))]


def run(X, k, metric, backend, **kw):
    extra = {"device": "cpu"} if backend == "torch" else {}
    return distances.knn(X, k, metric, backend=backend, **extra, **kw)


def data(seed=0, n=300, d=24, offset=3.0):
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, d)) + offset).astype(np.float32)
    X[10] = X[20] = X[30]                   # exact duplicates: ties at distance 0
    X[40] = X[41] + np.float32(1e-6)        # a near-duplicate
    X[50:60] = X[50] + rng.choice([-1, 1], size=(10, 1)).astype(np.float32) * np.eye(d, dtype=np.float32)[0]
    return X                                 # rows 50..59: equal distances to row 50, many ties


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("block", [16, 4096])          # 16: many blocks (the symmetric search), 4096: one
def test_backends_equal_brute_force(backend, metric, block):
    X = data()
    Y = np.random.default_rng(9).normal(size=(120, 24)).astype(np.float32)
    for args in ({}, {"exclude_self": False}, {"Y": Y, "exclude_self": False}):
        idx, dist = run(X, 12, metric, backend, block_size=block, **args)
        o, d = brute(X, 12, metric, **args)
        assert (idx == o).all()
        assert (dist == d).all()  # bit-identical to pairwise
        assert idx.dtype == np.int64 and dist.dtype == np.float32


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_widen_on_many_ties(backend, monkeypatch):
    monkeypatch.setattr(distances, "_MARGIN", 1)
    rng = np.random.default_rng(1)
    base = rng.normal(size=(1, 8)).astype(np.float32)
    X = np.vstack([np.repeat(base, 40, axis=0), rng.normal(size=(60, 8)).astype(np.float32) + 100])
    X = X[rng.permutation(len(X))]
    for kw in ({}, {"Y": X[::3], "exclude_self": False}):
        idx, dist = run(X, 5, "euclidean", backend, block_size=16, **kw)
        o, d = brute(X, 5, **kw)
        assert (idx == o).all() and (dist == d).all()


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_wide_rows_chunked(backend, monkeypatch):
    monkeypatch.setattr(distances, "_CHUNK", 8)   # 30 features = 4 chunks, as W+'s 9216 = 18 x 512
    X = data(6, n=200, d=30, offset=2.0)
    for metric in ("euclidean", "cosine"):
        idx, dist = run(X, 7, metric, backend, block_size=64)
        o, d = brute(X, 7, metric)
        assert (idx == o).all() and (dist == d).all()
    if HAVE_FAISS:
        with pytest.raises(InputDataError, match="at most 8 features"):
            distances.knn(X, 3, backend="faiss")


def test_high_offset_and_duplicates_every_backend():
    rng = np.random.default_rng(2)
    X = (rng.normal(size=(300, 64)) * 0.01 + 1000).astype(np.float32)
    X[5] = X[6]
    want = brute(X, 10)
    for backend in ["numpy", "torch"] + (["faiss"] if HAVE_FAISS else []):
        idx, dist = run(X, 10, "euclidean", backend, block_size=50)
        assert (idx == want[0]).all() and (dist == want[1]).all()


def test_auto_without_faiss_falls_back_to_numpy(monkeypatch):
    X = data(4)
    want = brute(X, 9)
    monkeypatch.setitem(sys.modules, "faiss", None)       # import faiss now raises ImportError
    monkeypatch.setattr(distances, "_cuda_available", lambda: False)
    assert distances._import_faiss() is None
    assert distances._choose_backend("auto", None, 24, True) == ("numpy", None)
    idx, dist = distances.knn(X, 9, block_size=32)
    assert (idx == want[0]).all() and (dist == want[1]).all()
    with pytest.raises(InputDataError, match="faiss-cpu"):
        distances.knn(X, 9, backend="faiss")


def test_auto_choice(monkeypatch):
    monkeypatch.setattr(distances, "_cuda_available", lambda: True)
    assert distances._choose_backend("auto", None, 512, True) == ("torch", "cuda")
    assert distances._choose_backend("auto", None, 512, False, work=1 * 18_000 * 512)[0] != "torch"  # a refill
    assert distances._choose_backend("auto", None, 9216, False) == ("torch", "cuda")
    monkeypatch.setattr(distances, "_cuda_available", lambda: False)
    assert distances._choose_backend("auto", None, 9216, True) == ("numpy", None)
    if HAVE_FAISS:
        assert distances._choose_backend("auto", None, 512, False) == ("faiss", None)
    with pytest.raises(InputDataError, match="backend"):
        distances.knn(np.ones((3, 2)), 1, backend="annoy")


def test_auto_on_gpu_runs_the_torch_path(monkeypatch):
    """With CUDA present auto takes torch; here the 'GPU' is the CPU device (the same code path)."""
    seen = []
    real = distances._candidates_torch

    def spy(ctx, kk, available, self_ex, block_size, device):
        seen.append(device)
        return real(ctx, kk, available, self_ex, block_size, "cpu")

    monkeypatch.setattr(distances, "_cuda_available", lambda: True)
    monkeypatch.setattr(distances, "_GPU_MIN_WORK", 0)
    monkeypatch.setattr(distances, "_candidates_torch", spy)
    X = data(5)
    idx, dist = distances.knn(X, 6)
    want = brute(X, 6)
    assert seen == ["cuda"] and (idx == want[0]).all() and (dist == want[1]).all()


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_certified_refinement_matches_the_exact_kernel(metric):
    rng = np.random.default_rng(7)
    spec = distances.METRICS[metric]
    X = spec["prepare"]((rng.normal(size=(200, 40)) * 0.001 + 50).astype(np.float32))  # heavy cancellation
    X[1] = X[0]
    X[3] = np.nextafter(X[2], np.float32(np.inf))
    cols = rng.integers(0, 200, size=(200, 30))
    cols[:4, 0] = [1, 0, 3, 2]
    rows = np.arange(200)
    nrm = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    fast = distances._refine_certified(X, X, rows, cols, spec["finish"], nrm, nrm)
    exact = distances._refine(X, X, rows, cols)
    assert (spec["finish"](fast) == spec["finish"](exact)).all()
    assert (fast[:4, 0] == exact[:4, 0]).all()   # doubtful pairs (duplicates) took the exact kernel


def test_torch_on_cuda_when_present():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device (the same code path runs on the CPU device above)")
    X = data(8)
    Y = np.random.default_rng(8).normal(size=(120, 24)).astype(np.float32)
    for args in ({}, {"Y": Y, "exclude_self": False}):
        idx, dist = distances.knn(X, 12, backend="torch", device="cuda", block_size=64, **args)
        o, d = brute(X, 12, **args)
        assert (idx == o).all() and (dist == d).all()
