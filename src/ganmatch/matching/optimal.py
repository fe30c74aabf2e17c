"""Optimal 1:1 matching: the assignment minimising the total distance (dense, or sparse on a kNN graph)."""

from __future__ import annotations

import warnings

import numpy as np

from ganmatch.analysis import distances
from ganmatch.matching.data import MatchData, MatchResult, caliper_between, make_result, split_groups


def optimal_pairs(Xt: np.ndarray, Xc: np.ndarray, metric: str = "euclidean", caliper: float = np.inf,
                  k: int = 100, dense_limit: int = 4_000_000):
    """1:1 matching minimising the total distance, as many treated as possible (within `caliper`).

    Small problems solve the dense assignment (scipy linear_sum_assignment). Larger ones solve the sparse
    problem on the k-nearest-neighbour graph (min_weight_full_bipartite_matching) with one expensive
    "unmatched" column per treated unit; k doubles while a treated unit with a neighbour inside the
    caliper stays unmatched. Returns treated positions, control positions, distances and whether dense.
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    nt, nc = len(Xt), len(Xc)
    if nt * nc <= dense_limit:
        Dm = distances.pairwise(Xt, Xc, metric, force=True).astype(np.float64)
        big = (np.nanmax(Dm[np.isfinite(Dm)]) + 1.0) * (min(nt, nc) + 1) if Dm.size else 1.0
        cost = np.where(Dm <= caliper, Dm, big)
        r, c = linear_sum_assignment(cost)
        ok = Dm[r, c] <= caliper
        return r[ok], c[ok], Dm[r, c][ok], True
    kk = min(k, nc)
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idx, dist = distances.knn(Xt, kk, metric, Y=Xc, exclude_self=False)
        d = dist.astype(np.float64)
        keep = d <= caliper
        big = (d[keep].max() + 1.0) * (nt + 1) if keep.any() else 1.0
        rows = np.repeat(np.arange(nt), kk)[keep.ravel()]
        cols = idx.ravel()[keep.ravel()]
        vals = d.ravel()[keep.ravel()] + 1.0  # shift: explicit zeros would not be edges
        rows = np.concatenate([rows, np.arange(nt)])
        cols = np.concatenate([cols, nc + np.arange(nt)])
        vals = np.concatenate([vals, np.full(nt, big)])
        G = csr_matrix((vals, (rows, cols)), shape=(nt, nc + nt))
        r, c = min_weight_full_bipartite_matching(G)
        real = c < nc
        stuck = (~real) & keep[:, 0]
        if not stuck.any() or kk >= nc or real.sum() >= min(nt, nc):
            r, c = r[real], c[real]
            return r, c, d[r, np.argmax(idx[r] == c[:, None], axis=1)], False
        kk = min(nc, 2 * kk)


def match_optimal(data: MatchData, embedding: str, metric: str = "euclidean", caliper: float | None = None,
                  caliper_sd: float | None = None, caliper_quantile: float | None = None, k: int = 100,
                  random_state: int | None = None) -> MatchResult:
    """Optimal 1:1 matching minimising the total distance in one embedding (see `optimal_pairs`)."""
    t_idx, c_idx = split_groups(data, "optimal")
    X = data.embedding(embedding)
    cal = caliper_between(X[t_idx], X[c_idx], metric, caliper, caliper_sd, caliper_quantile)
    ti, ci, d, dense = optimal_pairs(X[t_idx], X[c_idx], metric, cal, k)
    o = np.lexsort((ti, d))
    info = {"caliper": cal, "metric": metric, "k": k, "solver": "dense" if dense else "sparse_knn",
            "total_distance": float(np.sum(d))}
    return make_result(data, "optimal", embedding, t_idx[ti[o]], c_idx[ci[o]], d[o], info)
