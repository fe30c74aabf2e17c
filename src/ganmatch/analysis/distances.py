"""Exact k nearest neighbours and small dense distance matrices, blockwise in float32.

The paper held six dense 30k x 30k float64 matrices; here neighbours are found block by block: a float32
matmul ranks candidates cheaply, a rigorous bound on its rounding error says which candidates could still
be among the k nearest, and those are re-scored with the exact pair kernel (`_pair_sq`). The distances
returned are therefore the same float32 numbers `pairwise` gives for the same pair, and the neighbours are
exactly the k smallest of them (ties broken by the lower index), whatever the block size.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

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
    a pair's value depends only on its two rows, so `knn`, `pairwise` and `pair_distances` agree to the bit."""
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


def _as_matrix(X, name: str) -> np.ndarray:
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
        raise InputDataError(f"{name}: {len(rows)} row(s) contain NaN or inf (first rows: {rows[:5].tolist()}); "
                             "drop those images or fix the embedding stage.")
    return X


def _metric(metric: str) -> dict:
    if metric not in METRICS:
        raise InputDataError(f"unknown metric '{metric}'; choose one of {sorted(METRICS)} (config key distances.metric).")
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
    X = spec["prepare"](_as_matrix(X, "X"))
    Y = X if Y is None else spec["prepare"](_as_matrix(Y, "Y"))
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
    return _metric(metric)["prepare"](_as_matrix(X, name))


def pair_distances(Xp: np.ndarray, Yp: np.ndarray, rows, cols, metric: str = "euclidean") -> np.ndarray:
    """Distances of the pairs (Xp[rows[i]], Yp[cols[i]]) for rows already passed through `prepare`.

    Bit-identical to the same pairs in `pairwise` and `knn`.
    """
    rows = np.atleast_1d(np.asarray(rows, np.int64))
    cols = np.atleast_1d(np.asarray(cols, np.int64))
    spec = _metric(metric)
    return spec["finish"](_refine(Xp, Yp, rows, cols[:, None], kernel=_kernel(spec)))[:, 0]


# ---------------------------------------------------------------- kNN


def _refine(Xp: np.ndarray, Yp: np.ndarray, qrows: np.ndarray, cols: np.ndarray, budget: int = 1_000_000,
            kernel=_pair_sq) -> np.ndarray:
    """Exact squared distances (or L1 sums) of the pairs (qrows[i], cols[i, j]) with the shared pair kernel."""
    out = np.empty(cols.shape, np.float64)
    if cols.size == 0:
        return out
    step = max(1, budget // max(1, cols.shape[1] * Xp.shape[1]))

    local = threading.local()

    def work(s: int) -> None:
        g = Yp[cols[s:s + step]]
        if not hasattr(local, "buf"):  # one float64 scratch per thread: no page faults per step
            local.buf = np.empty(step * cols.shape[1] * Xp.shape[1], np.float64)
        scratch = local.buf[: g.size].reshape(g.shape)
        out[s:s + step] = kernel(Xp[qrows[s:s + step]][:, None, :], g, out=scratch)

    starts = range(0, len(qrows), step)
    if len(starts) > 1 and _n_threads() > 1:  # numpy releases the GIL in gather, subtract and einsum
        with ThreadPoolExecutor(_n_threads()) as pool:
            list(pool.map(work, starts))
    else:
        for s in starts:
            work(s)
    return out


def _n_threads() -> int:
    """Worker threads: OMP_NUM_THREADS if set (the pipeline's thread limit), else the CPU count."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return max(1, os.cpu_count() or 1)


def _select(dist: np.ndarray, cols: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest per row ordered by (distance, column)."""
    order = np.lexsort((cols, dist), axis=-1)[:, :k]
    return np.take_along_axis(cols, order, axis=1), np.take_along_axis(dist, order, axis=1)


def _smallest(A: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns and values of the m smallest entries per row, values ascending (ties in any order)."""
    if m >= A.shape[1]:
        cols = np.argsort(A, axis=1, kind="stable")
    else:
        try:  # torch's multi-threaded top-k is several times faster than numpy's argpartition
            import torch

            v, i = torch.topk(torch.from_numpy(A), m, dim=1, largest=False, sorted=True)
            return i.numpy().astype(np.int64), v.numpy()
        except ImportError:
            cols = np.argpartition(A, m - 1, axis=1)[:, :m]
            vals = np.take_along_axis(A, cols, axis=1)
            cols = np.take_along_axis(cols, np.argsort(vals, axis=1, kind="stable"), axis=1)
    return cols.astype(np.int64), np.take_along_axis(A, cols, axis=1)


def knn(X: np.ndarray, k: int, metric: str = "euclidean", Y: np.ndarray | None = None, exclude_self: bool = True,
        block_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest rows of Y (default X) for each row of X, blockwise with bounded memory.

    Returns (idx int64 (n, k'), dist float32 (n, k')) sorted by (distance, index); k' = min(k, available),
    with a warning when k' < k. `exclude_self` (only when Y is None) drops each row from its own list.
    Memory is about block_size x len(Y) float32 beyond the inputs.

    How it stays exact: a float32 matmul of centred rows estimates every squared distance a with
    |a - d2| <= err (a rigorous rounding bound); the candidates are the smallest estimates, and a row
    whose candidates might miss a pair with estimate <= a_k + 2 err is re-searched with more candidates.
    All candidates are re-scored with `_pair_sq` and the k smallest by (distance, index) are kept.
    """
    spec = _metric(metric)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputDataError(f"k must be a positive integer, got {k!r} (config key distances.k).")
    same = Y is None
    Xp = spec["prepare"](_as_matrix(X, "X"))
    Yp = Xp if same else spec["prepare"](_as_matrix(Y, "Y"))
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

    # centred copies keep the matmul's rounding error (relative to the norms) small; float32 centring
    # adds at most a few roundoffs per coordinate, which `err` covers
    mu = Yp.mean(axis=0, dtype=np.float64).astype(np.float32)
    Xc = Xp - mu
    Yc = Xc if same else Yp - mu
    ny = np.einsum("ij,ij->i", Yc, Yc, dtype=np.float64)
    nx = ny if same else np.einsum("ij,ij->i", Xc, Xc, dtype=np.float64)
    ny32 = ny.astype(np.float32)
    # estimates a = |y|^2 - 2 x.y are offset by -|x|^2. The matmul runs over feature chunks of at most
    # _CHUNK (accumulated in float32), so its rounding error is bounded by (chunk + n_chunks) roundoffs of
    # |x||y| instead of d; the pair kernel's own error is a few float32 roundoffs of the squared distance.
    d = Xp.shape[1]
    chunks = [(c0, min(d, c0 + _CHUNK)) for c0 in range(0, d, _CHUNK)]
    err = 4.0 * (min(d, _CHUNK) + len(chunks) + 8) * _U32 * (np.sqrt(nx) + float(np.sqrt(ny.max()))) ** 2
    gamma = 2 * _U32

    margin = _MARGIN
    buf = np.empty((min(block_size, n), m), np.float32)
    part = np.empty_like(buf) if len(chunks) > 1 else None
    idx_out = np.empty((n, kk), np.int64)
    dist_out = np.empty((n, kk), np.float32)
    for i0 in range(0, n, block_size):
        i1 = min(n, i0 + block_size)
        rows = np.arange(i0, i1)
        A = buf[: i1 - i0]
        xb = Xc[i0:i1] * np.float32(-2.0)
        np.matmul(xb[:, :chunks[0][1]], Yc[:, :chunks[0][1]].T, out=A)
        for c0, c1 in chunks[1:]:
            A += np.matmul(xb[:, c0:c1], Yc[:, c0:c1].T, out=part[: i1 - i0])
        A += ny32
        if self_ex:
            A[rows - i0, rows] = np.inf
        m_take = min(kk + margin, available)
        cand, cvals = _smallest(A, m_take)
        a_k = cvals[:, kk - 1].astype(np.float64)
        thr = a_k + 2 * err[rows] + (3 * gamma + 8 * _U32) * (np.abs(a_k + nx[rows]) + err[rows])
        unsafe = np.flatnonzero(cvals[:, -1] <= thr) if m_take < available else np.zeros(0, np.int64)
        fin = spec["finish"](_refine(Xp, Yp, rows, cand))
        idx_out[i0:i1], dist_out[i0:i1] = _select(fin, cand, kk)
        if len(unsafe):
            # some rows may have contenders beyond the margin: take all of them, and widen the margin
            count = (A[unsafe] <= thr[unsafe, None]).sum(axis=1)
            m2 = int(min(available, count.max() + 1))
            cand2, _ = _smallest(A[unsafe], m2)
            fin2 = spec["finish"](_refine(Xp, Yp, rows[unsafe], cand2))
            idx_out[i0 + unsafe], dist_out[i0 + unsafe] = _select(fin2, cand2, kk)
            margin = max(margin, min(available, int(1.25 * count.max())) - kk)
    return idx_out, dist_out


def _knn_exhaustive(Xp: np.ndarray, Yp: np.ndarray, kk: int, spec: dict, self_ex: bool, block_size: int = 128):
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


# ---------------------------------------------------------------- tables


def _table(ids: np.ndarray, qpos: np.ndarray, npos: np.ndarray, idx: np.ndarray, dist: np.ndarray,
           scope: str) -> pd.DataFrame:
    kk = idx.shape[1]
    return pd.DataFrame({
        "query": np.repeat(ids[qpos], kk),
        "neighbour": ids[npos[idx.ravel()]] if idx.size else np.array([], dtype=ids.dtype),
        "distance": dist.ravel().astype(np.float32),
        "rank": np.tile(np.arange(1, kk + 1, dtype=np.int32), len(qpos)),
        "scope": scope,
    })


def neighbour_table(ids: Sequence[str], X: np.ndarray, k: int, metric: str = "euclidean",
                    treated: np.ndarray | None = None, block_size: int = 2048) -> pd.DataFrame:
    """Long neighbours table: query, neighbour, distance (float32), rank (1-based), scope.

    scope "all": the k nearest among the whole set (self excluded); with `treated` (0/1 per row) also
    scope "cross": the k nearest among the other treatment group.
    """
    ids = np.asarray(ids).astype(str)
    X = _as_matrix(X, "embedding")
    if len(ids) != len(X):
        raise InputDataError(f"neighbour_table: {len(ids)} ids but {len(X)} embedding rows.")
    if len(np.unique(ids)) != len(ids):
        raise InputDataError("neighbour_table: image ids are not unique.")
    allpos = np.arange(len(ids))
    idx, dist = knn(X, k, metric, exclude_self=True, block_size=block_size)
    parts = [_table(ids, allpos, allpos, idx, dist, "all")]
    if treated is not None:
        t = _treatment(treated, len(ids))
        for g in (1, 0):
            q, c = np.flatnonzero(t == g), np.flatnonzero(t != g)
            if len(c) == 0 or len(q) == 0:
                warnings.warn(f"neighbour_table: treatment group {1 - g} is empty; no cross neighbours.", stacklevel=2)
                continue
            idx, dist = knn(X[q], k, metric, Y=X[c], exclude_self=False, block_size=block_size)
            parts.append(_table(ids, q, c, idx, dist, "cross"))
    out = pd.concat(parts, ignore_index=True)
    out["distance"] = out["distance"].astype(np.float32)
    return out


def _treatment(treated, n: int) -> np.ndarray:
    t = np.asarray(treated)
    if t.shape != (n,):
        raise InputDataError(f"treatment has shape {t.shape}, expected ({n},).")
    if pd.isna(t).any() or not np.isin(t, [0, 1]).all():
        raise InputDataError("treatment must be 0/1 for every row (config key treatment).")
    return t.astype(np.int8)


# ---------------------------------------------------------------- nearest-neighbour quality (the paper's table)


def retrieval_quality(neighbours: pd.DataFrame, identity: pd.Series, attributes: pd.DataFrame,
                      ks=(1, 5, 10)) -> pd.DataFrame:
    """The paper's nearest-neighbour table for one embedding, one row per scope of `neighbours`.

    - err_top<k>: among queries whose identity has another photo, the fraction with no photo of their
      identity among their k nearest neighbours (retrieval top-k error; falls as k grows, as reported);
    - other_top<k>: the fraction of all top-k neighbour rows that show another identity;
    - diff_<attribute>: mean |attribute(query) - attribute(nearest neighbour)|.
    `identity` is indexed by image id; `attributes` is indexed by image id or has an image_id column.
    """
    need = {"query", "neighbour", "rank"}
    if not need <= set(neighbours.columns):
        raise InputDataError(f"retrieval_quality: neighbours table lacks {sorted(need - set(neighbours.columns))}.")
    identity = identity.astype(str)
    if "image_id" in attributes.columns:
        attributes = attributes.set_index("image_id")
    attributes = attributes.apply(pd.to_numeric, errors="coerce")
    attributes = attributes.loc[:, attributes.notna().any()]
    missing = set(neighbours["query"]) - set(identity.index)
    if missing:
        raise InputDataError(f"retrieval_quality: {len(missing)} query ids have no identity (e.g. {sorted(missing)[:3]}).")
    counts = identity.value_counts()
    scopes = neighbours["scope"].unique() if "scope" in neighbours else [None]
    rows = []
    for scope in scopes:
        nb = neighbours if scope is None else neighbours[neighbours["scope"] == scope]
        q_id = identity.reindex(nb["query"].to_numpy()).to_numpy()
        n_id = identity.reindex(nb["neighbour"].to_numpy()).to_numpy()
        same = pd.Series(q_id == n_id, index=nb.index)
        rank = nb["rank"].to_numpy()
        row = {"scope": scope if scope is not None else "all", "n_queries": int(nb["query"].nunique())}
        has_other = counts.reindex(q_id).to_numpy() >= 2
        for k in ks:
            top = rank <= k
            row[f"other_top{k}"] = float(1.0 - same[top].mean()) if top.any() else np.nan
            hit = pd.Series(same.to_numpy() & top).groupby(nb["query"].to_numpy()).any()
            eligible = pd.Series(has_other & top).groupby(nb["query"].to_numpy()).any()
            hit = hit[eligible[eligible].index]
            row[f"err_top{k}"] = float(1.0 - hit.mean()) if len(hit) else np.nan
        first = nb[rank == 1]
        a_q = attributes.reindex(first["query"].to_numpy()).to_numpy(np.float64)
        a_n = attributes.reindex(first["neighbour"].to_numpy()).to_numpy(np.float64)
        for j, col in enumerate(attributes.columns):
            diff = np.abs(a_q[:, j] - a_n[:, j])
            row[f"diff_{col}"] = float(np.nanmean(diff)) if np.isfinite(diff).any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def retrieval_quality_table(neighbours: dict[str, pd.DataFrame], identity: pd.Series, attributes: pd.DataFrame,
                            ks=(1, 5, 10)) -> pd.DataFrame:
    """`retrieval_quality` for every embedding ({name: neighbour table}), stacked with an `embedding` column first."""
    frames = [retrieval_quality(nb, identity, attributes, ks=ks).assign(embedding=name) for name, nb in neighbours.items()]
    out = pd.concat(frames, ignore_index=True)
    return out[["embedding", *[c for c in out.columns if c != "embedding"]]]
