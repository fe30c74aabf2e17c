"""The neighbour tables of the neighbours stage: each image's k nearest images (exact kNN of
`ganmatch.analysis.distances`) within the whole set and across the treatment groups."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ganmatch.analysis import distances
from ganmatch.data.dataset import treatment_vector
from ganmatch.errors import InputDataError


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
    X = distances.as_matrix(X, "embedding")
    if len(ids) != len(X):
        raise InputDataError(f"neighbour_table: {len(ids)} ids but {len(X)} embedding rows.")
    if len(np.unique(ids)) != len(ids):
        raise InputDataError("neighbour_table: image ids are not unique.")
    allpos = np.arange(len(ids))
    idx, dist = distances.knn(X, k, metric, exclude_self=True, block_size=block_size)
    parts = [_table(ids, allpos, allpos, idx, dist, "all")]
    if treated is not None:
        t = treatment_vector(treated, len(ids))
        for g in (1, 0):
            q, c = np.flatnonzero(t == g), np.flatnonzero(t != g)
            if len(c) == 0 or len(q) == 0:
                warnings.warn(f"neighbour_table: treatment group {1 - g} is empty; no cross neighbours.",
                              stacklevel=2)
                continue
            idx, dist = distances.knn(X[q], k, metric, Y=X[c], exclude_self=False, block_size=block_size)
            parts.append(_table(ids, q, c, idx, dist, "cross"))
    out = pd.concat(parts, ignore_index=True)
    out["distance"] = out["distance"].astype(np.float32)
    return out
