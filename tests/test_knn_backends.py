"""Exact kNN backends (numpy blocked / symmetric, faiss, torch on a device): every one gives the same
neighbours and bit-identical distances as a brute-force sort of `pairwise`, ties and duplicates included;
auto picks torch only with CUDA and falls back to numpy without faiss; the certified refinement finishes
to the exact kernel's float32 values."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from test_distances import brute

from ganmatch.analysis import distances, knn_kernels
from ganmatch.errors import InputDataError

pytest.importorskip("torch")
HAVE_FAISS = distances._import_faiss() is not None
BACKENDS = ["numpy", "torch", pytest.param("faiss", marks=pytest.mark.skipif(not HAVE_FAISS,
                                                                             reason="no faiss"))]


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
    # a refill
    assert distances._choose_backend("auto", None, 512, False, work=1 * 18_000 * 512)[0] != "torch"
    assert distances._choose_backend("auto", None, 9216, False) == ("torch", "cuda")
    monkeypatch.setattr(distances, "_cuda_available", lambda: False)
    assert distances._choose_backend("auto", None, 9216, True) == ("numpy", None)
    # faster than faiss (benchmark)
    assert distances._choose_backend("auto", None, 512, False) == ("numpy", None)
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


# ---------------------------------------------------------------- the compiled search (knn_kernels)


def test_block_rounds_cover_every_pair_once_and_share_no_block():
    for n in range(1, 18):
        rounds = distances._rounds(n)
        pairs = sorted(tuple(sorted(p)) for r in rounds for p in r)
        assert pairs == [(a, b) for a in range(n) for b in range(a + 1, n)]
        assert all(len({q for p in r for q in p}) == 2 * len(r) for r in rounds)  # one writer per list


def _reservoir_truth(res, entries, r):
    """The reservoir of row r holds every entry below its threshold, and its final list is the keep
    smallest."""
    vals, cols = res.final(r, r + 1)
    want = np.sort(np.array(entries, np.float32))[: res.keep]
    assert (vals[0] == want).all()
    below = sorted(v for v in entries if v < res.thr[r])
    assert sorted(res.bv[r, : res.cnt[r]][res.bv[r, : res.cnt[r]] < res.thr[r]].tolist()) == below


@pytest.mark.parametrize("seed", range(4))
def test_reservoirs_keep_the_smallest_through_rows_cols_cuts_and_seeds(seed):
    """Blocks merged in random order, as rows and transposed, with ties, cuts at a full reservoir (the
    transposed merge meeting a list the row merge filled to capacity), and the sampled seed of an empty
    row (1,024 columns) including its fallback when the sample's threshold leaves too few entries."""
    rng = np.random.default_rng(seed)
    n, keep = 3000, 20
    res = distances.Reservoirs(n, keep)
    seen = [[] for _ in range(n)]
    off = rng.integers(0, 5, size=n).astype(np.float32)
    for step in range(12):
        r0, c0 = (int(v) for v in rng.integers(0, n - 1024, size=2))
        h, w = int(rng.integers(1, 200)), 1024 if step < 3 else int(rng.integers(1, 300))
        g = rng.integers(0, 60, size=(h, w)).astype(np.float32)  # many ties
        if step == 1:
            g[:, 0:80:8] = -100.0  # 10 tiny entries in the strided sample: its threshold leaves < keep below
        self0 = r0 if step % 2 == 0 else -1
        res.rows(g, off, c0, r0, self0)
        for i in range(h):
            seen[r0 + i] += [g[i,
                               j] + off[c0 + j] for j in range(w) if not (self0 >= 0 and c0 + j == self0 + i)]
        g2 = rng.integers(0, 60, size=(h, w)).astype(np.float32)
        res.cols(g2, off, r0, c0)
        for j in range(w):
            seen[c0 + j] += [g2[i, j] + off[r0 + i] for i in range(h)]
    touched = [r for r in range(n) if len(seen[r]) >= keep]
    assert len(touched) > 100
    for r in touched[:: max(1, len(touched) // 150)]:
        _reservoir_truth(res, seen[r], r)


def test_large_symmetric_and_blocked_searches_equal_brute_force():
    """Sizes where the sampled seed, the rounds and the per-thread slabs all run (and a non-square tail)."""
    rng = np.random.default_rng(11)
    X = (rng.normal(size=(2600, 16)) + 2.0).astype(np.float32)
    X[100:140] = X[100]                          # 40 exact duplicates: ties at distance 0
    for args in ({}, {"Y": X[::2], "exclude_self": False}):
        idx, dist = distances.knn(X, 50, backend="numpy", block_size=1024, **args)
        o, d = brute(X, 50, **args)
        assert (idx == o).all() and (dist == d).all()


def test_compiled_selection_and_pair_dots():
    rng = np.random.default_rng(3)
    dist = rng.integers(0, 6, size=(50, 40)).astype(np.float32)
    dist[:, -3:] = np.inf
    cols = np.stack([rng.permutation(1000)[:40] for _ in range(50)])
    idx, val = distances._select(dist, cols, 10)
    order = np.lexsort((cols, dist), axis=-1)[:, :10]
    assert (idx == np.take_along_axis(cols, order, 1)).all() and (val == np.take_along_axis(dist, order,
                                                                                            1)).all()
    X = rng.normal(size=(30, 700)).astype(np.float32)
    Y = rng.normal(size=(5000, 700)).astype(np.float32)
    rows, c = rng.integers(0, 30, size=20), rng.integers(0, 5000, size=(20, 9)).astype(np.int32)
    width = rng.integers(0, 10, size=20)
    out = np.zeros((20, 9))
    knn_kernels.pair_dots(X, Y, rows, c, width, 0, 20, out)
    want = np.einsum("rd,rtd->rt", X[rows].astype(np.float64), Y[c].astype(np.float64))
    mask = np.arange(9) < width[:, None]
    assert np.allclose(out[mask], want[mask], rtol=1e-12, atol=1e-9) and (out[~mask] == 0).all()
