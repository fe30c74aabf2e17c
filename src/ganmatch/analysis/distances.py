"""Exact k nearest neighbours and small dense distance matrices, blockwise in float32.

The paper held six dense 30k x 30k float64 matrices; here neighbours are found block by block: a float32
product ranks candidates cheaply (BLAS in the search's own threads, each row keeping a running list of its
smallest estimates in compiled code, `knn_kernels`; by symmetry each block pair once when Y = X; or
faiss-cpu's flat search; or torch on the GPU), a rigorous bound on its rounding error says which candidates
could still be among the k nearest, and only those are re-scored exactly (`_refine_certified`: a float64
estimate whose own bound proves its float32 result, the exact pair kernel `_pair_sq` where it cannot). The
distances returned are therefore the same float32 numbers `pairwise` gives for the same pair, and the
neighbours are exactly the k smallest of them (ties broken by the lower index), whatever the block size or
backend.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

from ganmatch.analysis.knn_kernels import Reservoirs, pair_dots, run_ranges, select_rows
from ganmatch.errors import InputDataError

# float32 unit roundoff, used in the matmul error bound
_U32 = float(np.finfo(np.float32).eps) / 2
# extra candidates taken per row beyond k before the error bound is checked
_MARGIN = 16
# features per matmul call; bounds the float32 matmul's rounding error for wide (W+) embeddings
_CHUNK = 512
# the largest dense matrix `pairwise` builds without `force=True` (elements)
MAX_DENSE = 25_000_000


# ---------------------------------------------------------------- metrics (row transforms + pair kernel)


def _prepare_euclidean(X: np.ndarray) -> np.ndarray:
    return X


def _prepare_cosine(X: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
    if np.any(norms == 0):
        raise InputDataError(f"cosine distance: {int(np.sum(norms == 0))} row(s) have zero norm (first: row "
                             f"{int(np.argmax(norms == 0))}); drop them or use metric 'euclidean'.")
    return (X / norms[:, None]).astype(np.float32)


def _finish_euclidean(sq: np.ndarray) -> np.ndarray:
    return np.sqrt(sq).astype(np.float32)


def _finish_cosine(sq: np.ndarray) -> np.ndarray:
    # for unit vectors 1 - cos = |x - y|^2 / 2
    return (sq * 0.5).astype(np.float32)


def _finish_l1(total: np.ndarray) -> np.ndarray:
    return total.astype(np.float32)


def _pair_l1(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """L1 of broadcast float32 row pairs, in float64 (exact differences, accurate sum): like `_pair_sq`,
    a pair's value depends only on its two rows, so `knn`, `pairwise` and `pair_distances` agree to the
    bit."""
    d = np.subtract(a, b, out=out, dtype=np.float64)
    np.abs(d, out=d)
    return d.sum(axis=-1)


METRICS = {
    "euclidean": {"prepare": _prepare_euclidean, "finish": _finish_euclidean,
                  "label": "Euclidean (L2) distance"},
    "cosine": {"prepare": _prepare_cosine, "finish": _finish_cosine,
               "label": "cosine distance, 1 - cos(x, y)"},
    # the reference study's perceptual (VGG) distance; no matmul shortcut exists, so knn computes every
    # pair exactly (O(n m d): see docs/scaling.md)
    "l1": {"prepare": _prepare_euclidean, "finish": _finish_l1, "label": "L1 (Manhattan) distance",
           "kernel": "l1"},
}


def _kernel(spec: dict):
    return _pair_l1 if spec.get("kernel") == "l1" else _pair_sq


def _pair_sq(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Squared L2 of broadcast float32 row pairs, in float64: the differences are exact and the sum is
    accurate to ~1e-12, so the float32 distance made from it is the true distance correctly rounded
    (up to rare float64 ties). Every caller reduces a fresh contiguous (..., d) array along its last axis,
    so a pair's value depends only on its two rows: `knn`, `pairwise` and `pair_distances` agree to the bit.
    """
    d = np.subtract(a, b, out=out, dtype=np.float64)
    return np.einsum("...k,...k->...", d, d)


# ---------------------------------------------------------------- validation


def as_matrix(X, name: str) -> np.ndarray:
    """float32 C-contiguous (n, d) view of X; W+ latents (n, 18, 512) are flattened; NaN rows are an error."""
    X = np.asarray(X)
    if X.ndim == 1:
        raise InputDataError(f"{name}: expected a 2-D array (rows = images), got shape {X.shape}.")
    if X.ndim > 2:
        X = X.reshape(X.shape[0], -1)
    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.shape[1] == 0:
        raise InputDataError(f"{name}: rows have no features (shape {X.shape}).")
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise InputDataError(f"{name}: {len(rows)} row(s) contain NaN or inf (first rows: "
                             f"{rows[:5].tolist()}); "
                             "drop those images or fix the embedding stage.")
    return X


def _metric(metric: str) -> dict:
    if metric not in METRICS:
        raise InputDataError(f"unknown metric '{metric}'; choose one of {sorted(METRICS)} (config key "
                             "distances.metric).")
    return METRICS[metric]


# ---------------------------------------------------------------- dense


def pairwise(X, Y=None, metric: str = "euclidean", force: bool = False, block_size: int = 256,
             out_path=None) -> np.ndarray:
    """Dense float32 distance matrix between rows of X and Y (default X), for small problems only.

    Raises InputDataError when it would exceed MAX_DENSE elements unless `force=True`. With `out_path`
    the matrix is filled block by block into a float32 `.npy` memmap there (written atomically) and
    returned read-only mapped, so it never has to fit in RAM.
    """
    spec = _metric(metric)
    X = spec["prepare"](as_matrix(X, "X"))
    Y = X if Y is None else spec["prepare"](as_matrix(Y, "Y"))
    if X.shape[1] != Y.shape[1]:
        raise InputDataError(f"X has {X.shape[1]} features but Y has {Y.shape[1]}.")
    n, m = len(X), len(Y)
    if n * m > MAX_DENSE and not force:
        raise InputDataError(f"a dense {n} x {m} distance matrix is too big; use knn()/neighbour_table() "
                             "or pass force=True.")
    if out_path is None:
        out = np.empty((n, m), np.float32)
        _fill_pairwise(out, X, Y, spec, block_size)
        return out
    from ganmatch.data.io import atomic_path

    with atomic_path(out_path, ".npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, m))
        _fill_pairwise(out, X, Y, spec, block_size)
        out.flush()
        del out
    return np.load(out_path, mmap_mode="r", allow_pickle=False)


def _fill_pairwise(out: np.ndarray, X: np.ndarray, Y: np.ndarray, spec: dict, block_size: int) -> None:
    """Fill `out` (n, m) with distances, one block at a time."""
    n, m = out.shape
    # rows per step so that a (rows, cols, d) float32 temporary stays near 32 MB
    cols = max(1, min(m, block_size))
    rows = max(1, int(8_000_000 // max(1, cols * X.shape[1])))
    for j0 in range(0, m, cols):
        yb = Y[None, j0:j0 + cols, :]
        for i0 in range(0, n, rows):
            out[i0:i0 + rows, j0:j0 + cols] = spec["finish"](_kernel(spec)(X[i0:i0 + rows, None, :], yb))


def prepare(X, metric: str = "euclidean", name: str = "X") -> np.ndarray:
    """Validated float32 rows transformed for `metric` (unit rows for cosine), for `pair_distances`."""
    return _metric(metric)["prepare"](as_matrix(X, name))


def pair_distances(Xp: np.ndarray, Yp: np.ndarray, rows, cols, metric: str = "euclidean") -> np.ndarray:
    """Distances of the pairs (Xp[rows[i]], Yp[cols[i]]) for rows already passed through `prepare`.

    Bit-identical to the same pairs in `pairwise` and `knn`.
    """
    rows = np.atleast_1d(np.asarray(rows, np.int64))
    cols = np.atleast_1d(np.asarray(cols, np.int64))
    spec = _metric(metric)
    return spec["finish"](_refine(Xp, Yp, rows, cols[:, None], kernel=_kernel(spec)))[:, 0]


class RowSearch:
    """Exact nearest rows of Y, among a chosen subset, for one row of X at a time: a matcher's refills.

    X and Y are validated, prepared and their norms taken once, so a search costs one pass over the chosen
    rows of Y (O(len(cols) d), no copy of Y), where `knn` on Y[cols] would copy, centre and re-validate
    them each time. Results equal `knn`'s for the same rows: the same float32 distances, ties by index.
    """

    def __init__(self, X, Y, metric: str = "euclidean"):
        self.spec = _metric(metric)
        self.Xp = self.spec["prepare"](as_matrix(X, "X"))
        self.Yp = self.spec["prepare"](as_matrix(Y, "Y"))
        if self.Xp.shape[1] != self.Yp.shape[1]:
            raise InputDataError(f"X has {self.Xp.shape[1]} features but Y has {self.Yp.shape[1]}.")
        self.l1 = self.spec.get("kernel") == "l1"
        self.nxp = self.nyp = None
        if not self.l1:
            self.nxp = np.einsum("ij,ij->i", self.Xp, self.Xp, dtype=np.float64)
            self.nyp = np.einsum("ij,ij->i", self.Yp, self.Yp, dtype=np.float64)

    def nearest(self, row: int, cols: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The min(k, len(cols)) entries of `cols` (ascending indices into Y) nearest to X[row], as (indices,
        float32 distances) in (distance, index) order."""
        cols = np.asarray(cols, np.int64)
        q = np.array([row], np.int64)
        finish = self.spec["finish"]
        if self.l1:
            dist = finish(_refine(self.Xp, self.Yp, q, cols[None, :], kernel=_pair_l1))[0]
        else:
            sq = _refine_certified(self.Xp, self.Yp, q, cols[None, :], finish, self.nxp, self.nyp)
            dist = finish(sq)[0]
        k = min(int(k), len(cols))
        if k < len(cols):  # every entry tied with the k-th smallest stays in, then (distance, index) decides
            keep = np.flatnonzero(dist <= np.partition(dist, k - 1)[k - 1])
            cols, dist = cols[keep], dist[keep]
        order = np.lexsort((cols, dist))[:k]
        return cols[order], dist[order]


# ---------------------------------------------------------------- kNN


def _refine(Xp: np.ndarray, Yp: np.ndarray, qrows: np.ndarray, cols: np.ndarray, budget: int = 524_288,
            kernel=_pair_sq) -> np.ndarray:
    """Exact squared distances (or L1 sums) of the pairs (qrows[i], cols[i, j]) with the shared pair kernel.

    Works in tiles of about `budget` coordinates (rows x candidates x features) so that the gathered rows
    and their float64 copy stay in the core's cache; the kernel sees the same float64 values as anywhere.
    """
    out = np.empty(cols.shape, np.float64)
    if cols.size == 0:
        return out
    c, d = cols.shape[1], Xp.shape[1]
    step = max(1, budget // max(1, c * d))          # query rows per tile
    cstep = c if step > 1 else max(1, budget // d)  # candidates per tile (wide rows: split the candidates)
    tiles = [(s, c0) for s in range(0, len(qrows), step) for c0 in range(0, c, cstep)]
    local = threading.local()

    def work(tile: tuple[int, int]) -> None:
        s, c0 = tile
        cs = cols[s:s + step, c0:c0 + cstep]
        if not hasattr(local, "buf"):  # one float64 scratch per thread: no page faults per tile
            size = min(len(qrows), step) * min(c, cstep) * d
            local.buf = np.empty(size, np.float64)
        g = local.buf[: cs.size * d].reshape(cs.shape + (d,))
        g[...] = Yp[cs]
        out[s:s + step, c0:c0 + cstep] = kernel(Xp[qrows[s:s + step]].astype(np.float64)[:, None, :], g,
                                                out=g)

    _run_tiles(work, tiles)
    return out


# float64 unit roundoff, in the certified refinement's bound
_U64 = float(np.finfo(np.float64).eps) / 2


def _refine_certified(Xp: np.ndarray, Yp: np.ndarray, qrows: np.ndarray, cols: np.ndarray, finish,
                      nxp: np.ndarray, nyp: np.ndarray, width: np.ndarray | None = None) -> np.ndarray:
    """`_refine` for the squared-L2 kernel, several times faster and with the same float32 results.

    s = |x|^2 + |y|^2 - 2 x.y in float64 (exact float32 products; any summation order) is within
    E = 2.5 (d + 4) u64 (|x| + |y|)^2 of the true squared distance, and so is `_pair_sq`'s value. Where
    finish(s - E) == finish(s + E) every number in between, `_pair_sq`'s included, finishes to the same
    float32 (finish is monotone), so s stands in for it; the few pairs where they differ get `_pair_sq`.
    `nxp`/`nyp` are the float64 squared norms of the rows of Xp/Yp. With `width` only the leading width[r]
    pairs of row r are scored; the others come back inf.
    """
    if cols.size == 0:
        return np.empty(cols.shape, np.float64)
    d = Xp.shape[1]
    width = np.full(len(qrows), cols.shape[1], np.int64) if width is None else width
    dot = np.zeros(cols.shape, np.float64)
    cols32 = np.ascontiguousarray(cols, np.int32 if len(Yp) < 2**31 else np.int64)
    run_ranges(lambda lo, hi: pair_dots(Xp, Yp, qrows, cols32, width, lo, hi, dot), len(qrows), _n_threads(),
               16)
    nq, nc = nxp[qrows][:, None], nyp[cols]
    est = nq + nc - 2.0 * dot
    bound = 2.5 * (d + 4) * _U64 * (np.sqrt(nq) + np.sqrt(nc)) ** 2
    scored = np.arange(cols.shape[1]) < width[:, None]
    unsure = np.nonzero((finish(np.maximum(est - bound, 0.0)) != finish(est + bound)) & scored)
    if len(unsure[0]):
        est[unsure] = _refine(Xp, Yp, qrows[unsure[0]], cols[unsure][:, None])[:, 0]
    est[~scored] = np.inf
    return est


def _run_tiles(work, tiles: list) -> None:
    """Run work(tile) for every tile, on _n_threads() threads (numpy releases the GIL in the heavy calls)."""
    run_ranges(lambda lo, hi: [work(tile) for tile in tiles[lo:hi]], len(tiles), _n_threads(), min_size=1)


def _n_threads() -> int:
    """Worker threads: OMP_NUM_THREADS if set (the pipeline's thread limit), else the CPU count."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return max(1, os.cpu_count() or 1)


def _select(dist: np.ndarray, cols: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest per row ordered by (distance, column)."""
    if dist.shape[1] > 1024:  # whole rows (the exhaustive L1 search): a sort, not an insertion sort
        order = np.lexsort((cols, dist), axis=-1)[:, :k]
        return np.take_along_axis(cols, order, axis=1), np.take_along_axis(dist, order, axis=1)
    idx = np.empty((len(dist), k), np.int64)
    out = np.empty((len(dist), k), np.float32)
    run_ranges(lambda lo, hi: select_rows(dist, cols, k, lo, hi, idx, out), len(dist), _n_threads(), 256)
    return idx, out


def _smallest(A: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns and values of the m smallest entries per row, values ascending (ties in any order)."""
    if m >= A.shape[1]:
        cols = np.argsort(A, axis=1, kind="stable")
    else:
        cols = np.argpartition(A, m - 1, axis=1)[:, :m]
        vals = np.take_along_axis(A, cols, axis=1)
        cols = np.take_along_axis(cols, np.argsort(vals, axis=1, kind="stable"), axis=1)
    return cols.astype(np.int64), np.take_along_axis(A, cols, axis=1)


def knn(X: np.ndarray, k: int, metric: str = "euclidean", Y: np.ndarray | None = None,
        exclude_self: bool = True,
        block_size: int = 2048, backend: str = "auto", device: str | None = None) -> tuple[np.ndarray,
                                                                                           np.ndarray]:
    """Exact k nearest rows of Y (default X) for each row of X, blockwise with bounded memory.

    Returns (idx int64 (n, k'), dist float32 (n, k')) sorted by (distance, index); k' = min(k, available),
    with a warning when k' < k. `exclude_self` (only when Y is None) drops each row from its own list.
    Memory beyond the inputs: threads x 512 x block_size float32 products (x len(Y) when Y is given) and
    about 3 (k + 16) running candidates per row.

    How it stays exact: a float32 product of centred rows estimates every squared distance a with
    |a - d2| <= err (a rigorous rounding bound); the candidates are the smallest estimates, and a row
    whose candidates might miss a pair with estimate <= a_k + 2 err is re-searched with more candidates.
    All candidates are re-scored with `_pair_sq` and the k smallest by (distance, index) are kept.

    `backend` only changes who computes the estimates, never the result: "numpy" (blocked single-threaded
    BLAS products in the search's own threads, each entry compared once with its row's running threshold
    in compiled code (`knn_kernels`); for Y = X each block pair once, by symmetry), "faiss" (faiss-cpu's
    exact flat search, d <= 512 only), "torch" (blocked matmul + top-k on `device`, default "cuda") or
    "auto": torch on the GPU when CUDA is present, else numpy.
    """
    spec = _metric(metric)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputDataError(f"k must be a positive integer, got {k!r} (config key distances.k).")
    if backend not in BACKENDS:
        raise InputDataError(f"knn: unknown backend '{backend}'; choose one of {list(BACKENDS)}.")
    same = Y is None
    Xp = spec["prepare"](as_matrix(X, "X"))
    Yp = Xp if same else spec["prepare"](as_matrix(Y, "Y"))
    if Xp.shape[1] != Yp.shape[1]:
        raise InputDataError(f"X has {Xp.shape[1]} features but Y has {Yp.shape[1]}.")
    n, m = len(Xp), len(Yp)
    self_ex = same and exclude_self
    available = m - 1 if self_ex else m
    kk = min(int(k), available)
    if kk < int(k):
        warnings.warn(f"knn: asked for k={k} neighbours but only {max(available, 0)} are available; "
                      f"returning {max(kk, 0)} per row.", stacklevel=2)
    if kk <= 0 or n == 0:
        return np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float32)
    if spec.get("kernel") == "l1":
        return _knn_exhaustive(Xp, Yp, kk, spec, self_ex)

    ctx = _Bound(Xp, Yp, same)
    backend, device = _choose_backend(backend, device, Xp.shape[1], same, work=float(n) * m * Xp.shape[1])
    if backend == "torch":
        blocks = _candidates_torch(ctx, kk, available, self_ex, block_size, device or "cuda")
    elif backend == "faiss":
        blocks = _candidates_faiss(ctx, kk, available, self_ex, block_size)
    elif same and n > block_size:
        blocks = _candidates_symmetric(ctx, kk, available, self_ex, block_size)
    else:
        blocks = _candidates_blocked(ctx, kk, available, self_ex, block_size)
    idx_out = np.empty((n, kk), np.int64)
    dist_out = np.empty((n, kk), np.float32)
    # the CPU search runs BLAS in its own threads, one BLAS thread each (small searches, such as a matcher's
    # refills, skip the library scan this costs)
    big = backend == "numpy" and _search_threads(ctx) > 1
    with threadpool_limits(1, user_api="blas") if big else contextlib.nullcontext():
        # a later block for the same rows (a widened search) replaces the earlier one
        for rows, cand, need in blocks:
            fin = _refine_needed(Xp, Yp, rows, cand, need, spec["finish"], ctx)
            idx_out[rows], dist_out[rows] = _select(fin, cand, kk)
    return idx_out, dist_out


# ---------------------------------------------------------------- kNN candidates (estimates + rounding bound)

BACKENDS = ("auto", "numpy", "faiss", "torch")
# auto takes the GPU from this many multiply-adds (n x m x d) on: ~1 s of the 2-core CPU search
_GPU_MIN_WORK = 1e10
# the CPU search splits its work between threads (one BLAS thread each) from this many multiply-adds on
_THREADED_WORK = 1e8


def _search_threads(ctx: _Bound) -> int:
    """Threads of the CPU search (each with one BLAS thread): all of them from _THREADED_WORK multiply-adds
    on."""
    work = float(len(ctx.Xc)) * len(ctx.Yc) * ctx.Xc.shape[1]
    return _n_threads() if work >= _THREADED_WORK else 1


def _import_faiss():
    """faiss, or None when it is not installed (the numpy backend then serves every case)."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _refine_needed(Xp: np.ndarray, Yp: np.ndarray, rows: np.ndarray, cand: np.ndarray, need, finish,
                   ctx: _Bound) -> np.ndarray:
    """float32 distances of the candidates; where `need` (per row) says only the leading ones can be among
    the k, the rest are not scored and stay inf."""
    width = None if need is None else np.minimum(need, cand.shape[1]).astype(np.int64)
    return finish(_refine_certified(Xp, Yp, rows, cand, finish, ctx.nxp, ctx.nyp, width))


def _cuda_available() -> bool:
    """CUDA is usable by torch; without an NVIDIA driver torch (seconds to import) is not even imported."""
    if not os.path.exists("/proc/driver/nvidia") and not os.environ.get("CUDA_VISIBLE_DEVICES"):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _choose_backend(backend: str, device: str | None, d: int, same: bool,
                    work: float = float("inf")) -> tuple[str, str | None]:
    """The backend (and torch device) for `knn`; `work` = n x m x d multiply-adds: small searches (a matcher's
    one-row refills) stay on the CPU rather than copy Y to the GPU each time."""
    if backend == "faiss" and d > _CHUNK:
        raise InputDataError(f"knn backend 'faiss' serves at most {_CHUNK} features (its one float32 product "
                             f"over {d} would need too wide a rounding bound); use 'numpy' or 'auto'.")
    if backend == "faiss" and _import_faiss() is None:
        raise InputDataError("knn backend 'faiss' needs faiss-cpu (pip install faiss-cpu); or use 'auto'.")
    if backend != "auto":
        return backend, device
    if work >= _GPU_MIN_WORK and _cuda_available():
        return "torch", device or "cuda"
    # measured in benchmarks/results/matching.md: the blocked BLAS search with compiled reservoirs (for
    # Y = X each block pair once) beats faiss's exact flat search at every size measured, W+ included
    return "numpy", None


class _Bound:
    """Centred float32 rows, their squared norms and the rigorous bound `err` on every estimate's error.

    Estimates are a = |y|^2 - 2 x.y (offset by -|x|^2 from the squared distance), from a float32 product
    over feature chunks of at most _CHUNK (accumulated in float32): its rounding error is bounded by
    (chunk + n_chunks) roundoffs of |x||y| instead of d; centring in float32 adds a few roundoffs per
    coordinate and the pair kernel's own error a few float32 roundoffs of the squared distance.
    """

    def __init__(self, Xp: np.ndarray, Yp: np.ndarray, same: bool):
        mu = Yp.mean(axis=0, dtype=np.float64).astype(np.float32)
        self.Xc = Xp - mu
        self.Yc = self.Xc if same else Yp - mu
        self.ny = np.einsum("ij,ij->i", self.Yc, self.Yc, dtype=np.float64)
        self.nx = self.ny if same else np.einsum("ij,ij->i", self.Xc, self.Xc, dtype=np.float64)
        self.ny32 = self.ny.astype(np.float32)
        # float64 squared norms of the rows themselves, for `_refine_certified`
        self.nyp = np.einsum("ij,ij->i", Yp, Yp, dtype=np.float64)
        self.nxp = self.nyp if same else np.einsum("ij,ij->i", Xp, Xp, dtype=np.float64)
        d = Xp.shape[1]
        self.chunks = [(c0, min(d, c0 + _CHUNK)) for c0 in range(0, d, _CHUNK)]
        self.err = (4.0 * (min(d, _CHUNK) + len(self.chunks) + 8) * _U32
                    * (np.sqrt(self.nx) + float(np.sqrt(self.ny.max()))) ** 2)

    def threshold(self, a_k: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Estimates above this cannot belong to a row whose k-th smallest estimate is a_k."""
        err = self.err[rows]
        return a_k + 2 * err + (6 * _U32 + 8 * _U32) * (np.abs(a_k + self.nx[rows]) + err)

    def gram(self, xb: np.ndarray, Yb: np.ndarray, out: np.ndarray, part: np.ndarray | None) -> np.ndarray:
        """out = xb @ Yb.T over the feature chunks, accumulated in float32."""
        (c0, c1), rest = self.chunks[0], self.chunks[1:]
        np.matmul(xb[:, c0:c1], Yb[:, c0:c1].T, out=out)
        for c0, c1 in rest:
            out += np.matmul(xb[:, c0:c1], Yb[:, c0:c1].T, out=part[: out.shape[0], : out.shape[1]])
        return out

    def estimates(self, rows: np.ndarray, out: np.ndarray, self_ex: bool) -> np.ndarray:
        """a for `rows` of X against every row of Y into out (len(rows), m); a row's own column inf."""
        part = np.empty_like(out) if len(self.chunks) > 1 else None
        self.gram(self.Xc[rows] * np.float32(-2.0), self.Yc, out, part)
        out += self.ny32
        if self_ex:
            out[np.arange(len(rows)), rows] = np.inf
        return out


def _unsafe(ctx: _Bound, rows: np.ndarray, cvals: np.ndarray, kk: int, available: int):
    """Thresholds of rows with sorted candidate estimates cvals, and the rows whose candidates may miss
    one."""
    thr = ctx.threshold(cvals[:, kk - 1].astype(np.float64), rows)
    need = (cvals <= thr[:, None]).sum(axis=1)  # the leading candidates that can still be among the k
    if cvals.shape[1] >= available:
        return thr, np.zeros(0, np.int64), need
    return thr, np.flatnonzero(cvals[:, -1] <= thr), need


def _widen(ctx: _Bound, A: np.ndarray, rows: np.ndarray, thr: np.ndarray, available: int):
    """(rows, candidates): every column with estimate <= thr (plus one) for rows whose margin was short."""
    count = (A <= thr[:, None]).sum(axis=1)
    cand, _ = _smallest(A, int(min(available, count.max() + 1)))
    return (rows, cand, None), int(count.max())


def _widen_rows(ctx: _Bound, rows: np.ndarray, thr: np.ndarray, available: int, self_ex: bool,
                block_size: int):
    """_widen for rows whose estimates are not at hand: recomputed against all of Y, a block at a time."""
    for s in range(0, len(rows), block_size):
        r = rows[s:s + block_size]
        A = ctx.estimates(r, np.empty((len(r), len(ctx.Yc)), np.float32), self_ex)
        yield _widen(ctx, A, r, thr[s:s + block_size], available)[0]


def _candidates_blocked(ctx: _Bound, kk: int, available: int, self_ex: bool, block_size: int):
    """(rows, candidates) blocks: each row block against all of Y, its rows split between the threads."""
    n, m = len(ctx.Xc), len(ctx.Yc)
    margin = _MARGIN
    threads = _search_threads(ctx)
    for i0 in range(0, n, block_size):
        rows = np.arange(i0, min(n, i0 + block_size))
        res = Reservoirs(len(rows), min(kk + margin, available))
        run_ranges(lambda lo, hi, i0=i0, res=res: _merge_slabs(ctx, res, i0 + lo, i0 + hi, 0, m, self_ex,
                                                               False,
                                                               r0=lo), len(rows), threads)
        cvals, cand = res.final(0, len(rows), threads)
        thr, unsafe, need = _unsafe(ctx, rows, cvals, kk, available)
        yield rows, cand, need
        if len(unsafe):
            r = rows[unsafe]
            block, count = _widen(ctx, ctx.estimates(r, np.empty((len(r), m), np.float32), self_ex), r,
                                  thr[unsafe], available)
            yield block
            margin = max(margin, min(available, int(1.25 * count)) - kk)


def _pilot_margin(ctx: _Bound, kk: int, available: int, self_ex: bool, n_pilot: int = 32) -> int:
    """Candidates beyond k that a few spread-out rows need: the symmetric search fixes its margin up front."""
    n = len(ctx.Xc)
    rows = np.unique(np.linspace(0, n - 1, min(n, n_pilot)).astype(np.int64))
    A = ctx.estimates(rows, np.empty((len(rows), len(ctx.Yc)), np.float32), self_ex)
    a_k = np.partition(A, kk - 1, axis=1)[:, kk - 1].astype(np.float64)
    count = (A <= ctx.threshold(a_k, rows)[:, None]).sum(axis=1)
    return max(_MARGIN, int(1.25 * count.max()) + 1 - kk)


def _candidates_symmetric(ctx: _Bound, kk: int, available: int, self_ex: bool, block_size: int):
    """Y = X: each pair of row blocks is multiplied once and serves both blocks (half the products); every row
    keeps a running list of its smallest estimates (`knn_kernels.Reservoirs`).

    The block pairs run in rounds (`_rounds`): the pairs of a round share no block, so the threads take them
    at once and every list still has one writer. Each block first meets itself, so that every list has a
    threshold before the transposed merges reach it.
    """
    n = len(ctx.Xc)
    keep = min(kk + _pilot_margin(ctx, kk, available, self_ex), available)
    bounds = [(i0, min(n, i0 + block_size)) for i0 in range(0, n, block_size)]
    res = Reservoirs(n, keep)

    def task(pair: tuple[int, int]) -> None:
        (i0, i1), (j0, j1) = bounds[pair[0]], bounds[pair[1]]
        _merge_slabs(ctx, res, i0, i1, j0, j1, self_ex and i0 == j0, i0 != j0)

    threads = _search_threads(ctx)
    for tasks in [[(b, b) for b in range(len(bounds))], *_rounds(len(bounds))]:
        run_ranges(lambda lo, hi, tasks=tasks: [task(t) for t in tasks[lo:hi]], len(tasks), threads, 1)
    for i0, i1 in bounds:
        vals, cols = res.final(i0, i1, _n_threads())
        rows = np.arange(i0, i1)
        thr, unsafe, need = _unsafe(ctx, rows, vals, kk, available)
        yield rows, cols, need
        if len(unsafe):
            yield from _widen_rows(ctx, rows[unsafe], thr[unsafe], available, self_ex, block_size)


def _rounds(n_blocks: int) -> list[list[tuple[int, int]]]:
    """Every pair of distinct blocks once, in rounds of pairs with no block in common (the circle method
    of round-robin tournaments; with an odd count one block sits each round out)."""
    slots = list(range(n_blocks)) + ([-1] if n_blocks % 2 else [])
    m = len(slots)
    rounds = []
    for _ in range(m - 1):
        pairs = [(slots[i], slots[m - 1 - i]) for i in range(m // 2)]
        rounds.append([(a, b) for a, b in pairs if a >= 0 and b >= 0])
        slots = [slots[0], slots[-1], *slots[1:-1]]
    return [r for r in rounds if r]


# rows per product slab (512 x 2048 float32: 4 MB per thread, merged right after it is computed); 128-row
# slabs fit a core's cache but made the single-threaded BLAS calls slower than the cache saved
_SLAB = 512


def _merge_slabs(ctx: _Bound, res: Reservoirs, i0: int, i1: int, j0: int, j1: int, self_ex: bool,
                 transposed: bool, r0: int | None = None) -> None:
    """Estimates of rows i0..i1 of X against rows j0..j1 of Y, slab by slab (`_SLAB` rows), merged into the
    rows' reservoirs (r0.. when given, else i0..; `self_ex`: a row's own column left out, X being Y); with
    `transposed` also into the reservoirs of j0..j1. Runs in the calling thread."""
    r0 = i0 if r0 is None else r0
    w = j1 - j0
    buf = np.empty((min(_SLAB, i1 - i0), w), np.float32)
    part = np.empty_like(buf) if len(ctx.chunks) > 1 else None
    Yb = ctx.Yc[j0:j1]
    for s0 in range(i0, i1, _SLAB):
        s1 = min(i1, s0 + _SLAB)
        g = ctx.gram(ctx.Xc[s0:s1] * np.float32(-2.0), Yb, buf[: s1 - s0], part)
        res.rows(g, ctx.ny32, j0, r0 + s0 - i0, s0 if self_ex else -1)
        if transposed:
            res.cols(g, ctx.ny32, s0, j0)


def _candidates_faiss(ctx: _Bound, kk: int, available: int, self_ex: bool, block_size: int):
    """(rows, candidates) from faiss-cpu's exact flat L2 search on the centred rows (d <= _CHUNK: its float32
    product is one chunk, so `err` bounds its estimates too); rows that need more are re-searched in numpy."""
    faiss = _import_faiss()
    n = len(ctx.Xc)
    take = min(kk + _MARGIN, available)
    index = faiss.IndexFlatL2(ctx.Yc.shape[1])
    index.add(ctx.Yc)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(_n_threads())
    try:
        step = max(block_size, 8192)
        for i0 in range(0, n, step):
            rows = np.arange(i0, min(n, i0 + step))
            D, cand = index.search(ctx.Xc[rows], take + self_ex)
            if self_ex:  # drop the row itself, or the last candidate where rounding ranked it beyond
                own = cand == rows[:, None]
                own[~own.any(axis=1), -1] = True
                D, cand = D[~own].reshape(len(rows), take), cand[~own].reshape(len(rows), take)
            cvals = D.astype(np.float64) - ctx.nx[rows, None]
            thr, unsafe, need = _unsafe(ctx, rows, cvals, kk, available)
            for s in range(0, len(rows), block_size):
                yield rows[s:s + block_size], cand[s:s + block_size].astype(np.int64), need[s:s + block_size]
            if len(unsafe):
                yield from _widen_rows(ctx, rows[unsafe], thr[unsafe], available, self_ex, block_size)
    finally:
        faiss.omp_set_num_threads(threads)


def _candidates_torch(ctx: _Bound, kk: int, available: int, self_ex: bool, block_size: int, device: str):
    """(rows, candidates) from a blocked float32 product and top-k in torch on `device` (the GPU path; the
    same chunked products as numpy, so `err` holds; TF32 is switched off while it runs)."""
    import torch

    dev = torch.device(device)
    Y = torch.from_numpy(ctx.Yc).to(dev)
    X = Y if ctx.Xc is ctx.Yc else torch.from_numpy(ctx.Xc).to(dev)
    ny = torch.from_numpy(ctx.ny32).to(dev)
    n, margin = len(ctx.Xc), _MARGIN
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        for i0 in range(0, n, block_size):
            rows = np.arange(i0, min(n, i0 + block_size))
            xb = X[i0:i0 + len(rows)] * -2.0
            (c0, c1), rest = ctx.chunks[0], ctx.chunks[1:]
            A = xb[:, c0:c1] @ Y[:, c0:c1].T
            for c0, c1 in rest:
                A += xb[:, c0:c1] @ Y[:, c0:c1].T
            A += ny
            if self_ex:
                r = torch.arange(len(rows), device=dev)
                A[r, r + i0] = float("inf")
            v, c = torch.topk(A, min(kk + margin, available), dim=1, largest=False, sorted=True)
            thr, unsafe, need = _unsafe(ctx, rows, v.cpu().numpy(), kk, available)
            yield rows, c.cpu().numpy().astype(np.int64), need
            if len(unsafe):
                u = torch.from_numpy(unsafe).to(dev)
                Au, tu = A[u], torch.from_numpy(thr[unsafe]).to(dev)
                count = int((Au <= tu[:, None]).sum(dim=1).max())
                c2 = torch.topk(Au, min(available, count + 1), dim=1, largest=False, sorted=True)[1]
                yield rows[unsafe], c2.cpu().numpy().astype(np.int64), None
                margin = max(margin, min(available, int(1.25 * count)) - kk)
    finally:
        torch.set_float32_matmul_precision(precision)


def _knn_exhaustive(Xp: np.ndarray, Yp: np.ndarray, kk: int, spec: dict, self_ex: bool,
                    block_size: int = 128):
    """Exact kNN by computing every pair with the metric's kernel (metrics without a matmul form: L1)."""
    n, m = len(Xp), len(Yp)
    idx_out = np.empty((n, kk), np.int64)
    dist_out = np.empty((n, kk), np.float32)
    buf = np.empty((min(block_size, n), m), np.float32)
    for i0 in range(0, n, block_size):
        i1 = min(n, i0 + block_size)
        D = buf[: i1 - i0]
        _fill_pairwise(D, Xp[i0:i1], Yp, spec, 256)
        if self_ex:
            D[np.arange(i1 - i0), np.arange(i0, i1)] = np.inf
        cols = np.broadcast_to(np.arange(m), D.shape)
        idx_out[i0:i1], dist_out[i0:i1] = _select(D, cols, kk)
    return idx_out, dist_out
