"""Greedy 1:1 matching on the Mahalanobis (or standardised Euclidean) distance of covariates and/or an
embedding, optionally exact within categorical strata."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ganmatch.errors import ConfigError
from ganmatch.matching.data import (
    MatchData,
    MatchResult,
    caliper_between,
    features,
    make_result,
    split_groups,
)
from ganmatch.matching.greedy import greedy_pairs


def whiten(Z: np.ndarray, ridge: float = 1e-6) -> np.ndarray:
    """Rows transformed so that Euclidean distance equals Mahalanobis distance under Z's covariance
    (plus `ridge` x mean variance on the diagonal, so singular covariances still work)."""
    S = np.cov(Z, rowvar=False).reshape(Z.shape[1], Z.shape[1])
    S = S + ridge * max(float(np.trace(S)) / len(S), 1e-12) * np.eye(len(S))
    L = np.linalg.cholesky(np.linalg.inv(S))
    return (Z - Z.mean(axis=0)) @ L


def match_mahalanobis(data: MatchData, embedding: str | None = None, covariates: list[str] | None = None,
                      metric: str = "mahalanobis", exact: list[str] | None = None, caliper: float | None = None,
                      caliper_sd: float | None = None, caliper_quantile: float | None = None,
                      n_pairs: int | None = None, k: int = 100, ridge: float = 1e-6,
                      random_state: int | None = None) -> MatchResult:
    """Greedy 1:1 matching on the Mahalanobis (or standardised Euclidean, `metric="euclidean"`) distance of
    an embedding and/or covariates, optionally exact on categorical `exact` columns (pairs only within a
    stratum; the global greedy order is kept by merging the strata by (distance, treated, control))."""
    if metric not in ("mahalanobis", "euclidean"):
        raise ConfigError(f"mahalanobis: metric must be 'mahalanobis' or 'euclidean', got '{metric}'.")
    t_all, c_all = split_groups(data, "mahalanobis")
    Z = features(data, "mahalanobis", embedding, covariates)
    Z = (whiten(Z, ridge) if metric == "mahalanobis" else Z).astype(np.float32)
    if exact:
        if data.covariates is None or any(c not in data.covariates for c in exact):
            raise ConfigError(f"mahalanobis: exact columns {exact} are not all in the attributes table.")
        strata = pd.factorize(pd.MultiIndex.from_frame(data.covariates[list(exact)].astype(str)))[0]
    else:
        strata = np.zeros(len(data.ids), np.int64)
    cal = caliper_between(Z[t_all], Z[c_all], "euclidean", caliper, caliper_sd, caliper_quantile)
    found = []
    for s in np.unique(strata):
        t_idx, c_idx = t_all[strata[t_all] == s], c_all[strata[c_all] == s]
        if len(t_idx) == 0 or len(c_idx) == 0:
            continue
        ti, ci, d = greedy_pairs(Z[t_idx], Z[c_idx], "euclidean", cal, n_pairs, k)
        found.append((t_idx[ti], c_idx[ci], d))
    if found:
        T, Cc, Dd = (np.concatenate(x) for x in zip(*found, strict=True))
        o = np.lexsort((Cc, T, Dd))[: (len(T) if n_pairs is None else int(n_pairs))]
        T, Cc, Dd = T[o], Cc[o], Dd[o]
    else:
        T = Cc = np.zeros(0, np.int64)
        Dd = np.zeros(0)
    info = {"caliper": cal, "metric": metric, "exact": list(exact or []), "k": k}
    return make_result(data, "mahalanobis", embedding or "", T, Cc, Dd, info)
