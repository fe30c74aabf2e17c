"""Matching treated to control images: one entry point, `match(method, data, **params)`, and a registry.

Every matcher reads a `MatchData` (ids, treatment, embeddings, identities, covariates) and returns a
`MatchResult` whose `pairs` table follows the matches contract (treated_id, control_id, distance, weight,
subclass, method, embedding, optional treated_ref/control_ref/penalised). Matchers never write files.
"""

from __future__ import annotations

import heapq
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import distances
from .errors import ConfigError, InputDataError

PAIR_COLUMNS = ["treated_id", "control_id", "distance", "weight", "subclass", "method", "embedding"]


# ---------------------------------------------------------------- data and result


@dataclass
class MatchData:
    """Everything a matcher may use, rows aligned with `ids`."""

    ids: np.ndarray
    treated: np.ndarray
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    identity: np.ndarray | None = None
    covariates: pd.DataFrame | None = None

    def __post_init__(self):
        self.ids = np.asarray(self.ids).astype(str)
        n = len(self.ids)
        if len(np.unique(self.ids)) != n:
            raise InputDataError("MatchData: image ids are not unique.")
        self.treated = distances._treatment(self.treated, n).astype(np.int64)
        for name, X in self.embeddings.items():
            if len(X) != n:
                raise InputDataError(f"MatchData: embedding '{name}' has {len(X)} rows for {n} ids.")
        if self.identity is not None:
            self.identity = np.asarray(self.identity).astype(str)
            if self.identity.shape != (n,):
                raise InputDataError(f"MatchData: identity has shape {self.identity.shape}, expected ({n},).")
        if self.covariates is not None:
            if len(self.covariates) != n:
                raise InputDataError(f"MatchData: covariates have {len(self.covariates)} rows for {n} ids.")
            self.covariates = self.covariates.reset_index(drop=True)

    def embedding(self, name: str) -> np.ndarray:
        """The named embedding as a float32 (n, d) matrix without NaN (W+ is flattened)."""
        if name not in self.embeddings:
            raise ConfigError(f"matching: embedding '{name}' is not available; have {sorted(self.embeddings)} "
                              "(config key matching.methods.<name>.embedding).")
        return distances._as_matrix(self.embeddings[name], f"embedding '{name}'")


@dataclass
class MatchResult:
    """The matches table and a dict describing the run (method, counts, caliper, warnings)."""

    pairs: pd.DataFrame
    info: dict


def _empty_pairs(extra: dict | None = None) -> pd.DataFrame:
    cols = {"treated_id": pd.Series([], dtype=str), "control_id": pd.Series([], dtype=str),
            "distance": pd.Series([], dtype=np.float64), "weight": pd.Series([], dtype=np.float64),
            "subclass": pd.Series([], dtype=np.int64), "method": pd.Series([], dtype=str),
            "embedding": pd.Series([], dtype=str)}
    for k, dtype in (extra or {}).items():
        cols[k] = pd.Series([], dtype=dtype)
    return pd.DataFrame(cols)


def _result(data: MatchData, method: str, embedding: str, t_pos, c_pos, dist, info: dict,
            weight=None, subclass=None, extra: dict | None = None) -> MatchResult:
    """Assemble pairs (positions into data.ids) and info; an empty result carries a warning."""
    t_pos, c_pos = np.asarray(t_pos, np.int64), np.asarray(c_pos, np.int64)
    if len(t_pos) == 0:
        msg = f"{method}: no pair was matched (check the caliper/threshold or the group sizes)."
        warnings.warn(msg, stacklevel=3)
        info.setdefault("warnings", []).append(msg)
        pairs = _empty_pairs({k: (np.asarray(v).dtype if len(np.asarray(v)) else object)
                              for k, v in (extra or {}).items()})
    else:
        pairs = pd.DataFrame({
            "treated_id": data.ids[t_pos], "control_id": data.ids[c_pos],
            "distance": np.asarray(dist, np.float64),
            "weight": np.ones(len(t_pos)) if weight is None else np.asarray(weight, np.float64),
            "subclass": np.arange(1, len(t_pos) + 1) if subclass is None else np.asarray(subclass, np.int64),
            "method": method, "embedding": embedding,
        })
        for k, v in (extra or {}).items():
            pairs[k] = v
    info = {"method": method, "embedding": embedding, "n_treated": int(data.treated.sum()),
            "n_control": int((data.treated == 0).sum()), "n_matched": int(len(pairs)),
            "n_treated_matched": int(pairs["treated_id"].nunique()),
            "n_control_matched": int(pairs["control_id"].nunique()), **info}
    info.setdefault("warnings", [])
    return MatchResult(pairs=pairs, info=info)


def _groups(data: MatchData, method: str) -> tuple[np.ndarray, np.ndarray]:
    t, c = np.flatnonzero(data.treated == 1), np.flatnonzero(data.treated == 0)
    if len(t) == 0 or len(c) == 0:
        empty = "treated" if len(t) == 0 else "control"
        raise InputDataError(f"{method}: the {empty} group has no members; check the treatment column.")
    return t, c


# ---------------------------------------------------------------- calipers


def _resolve_caliper(nearest: np.ndarray, caliper=None, caliper_sd=None, caliper_quantile=None) -> float:
    """Absolute caliper from one of: `caliper` (distance), `caliper_sd` (SDs of the treated units'
    nearest cross-group distances) or `caliper_quantile` (quantile of those distances); inf if none."""
    given = [x is not None for x in (caliper, caliper_sd, caliper_quantile)]
    if sum(given) > 1:
        raise ConfigError("matching: give at most one of caliper, caliper_sd, caliper_quantile.")
    if caliper is not None:
        if caliper < 0:
            raise ConfigError(f"matching: caliper must be >= 0, got {caliper}.")
        return float(caliper)
    if caliper_sd is not None:
        if caliper_sd < 0:
            raise ConfigError(f"matching: caliper_sd must be >= 0, got {caliper_sd}.")
        return float(caliper_sd) * float(np.std(nearest, ddof=1)) if len(nearest) > 1 else np.inf
    if caliper_quantile is not None:
        if not 0 <= caliper_quantile <= 1:
            raise ConfigError(f"matching: caliper_quantile must be in [0, 1], got {caliper_quantile}.")
        return float(np.quantile(nearest, caliper_quantile)) if len(nearest) else np.inf
    return np.inf


# ---------------------------------------------------------------- greedy engine


class _SortedLists:
    """Per-treated candidate lists sorted by (distance, control), refilled exactly when they run out.

    Lists start as the k nearest controls; when every listed control is used and more controls exist,
    the row is recomputed against all remaining controls (so the answer equals the dense algorithm's).
    """

    def __init__(self, Xt, Xc, metric: str, k: int, block_size: int = 2048):
        self.Xt, self.Xc, self.metric = Xt, Xc, metric
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idx, dist = distances.knn(Xt, k, metric, Y=Xc, exclude_self=False, block_size=block_size)
        self.idx, self.dist = idx, dist
        self.complete = np.full(len(Xt), idx.shape[1] >= len(Xc))
        self.pos = np.zeros(len(Xt), np.int64)
        self.extra: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.n_refills = 0

    def nearest(self) -> np.ndarray:
        return self.dist[:, 0].astype(np.float64) if self.dist.shape[1] else np.full(len(self.Xt), np.inf)

    def _row(self, t: int):
        return self.extra.get(t, (self.idx[t], self.dist[t]))

    def next_available(self, t: int, used: np.ndarray):
        """(distance, control) of t's nearest unused control, or None if no control is left."""
        while True:
            cols, dist = self._row(t)
            p = self.pos[t]
            while p < len(cols) and used[cols[p]]:
                p += 1
            self.pos[t] = p
            if p < len(cols):
                return float(dist[p]), int(cols[p])
            if self.complete[t]:
                return None
            # the list ran out: rescore t against every unused control, exactly as pairwise would
            avail = np.flatnonzero(~used)
            self.n_refills += 1
            self.complete[t] = True
            self.pos[t] = 0
            if len(avail) == 0:
                self.extra[t] = (avail, np.zeros(0, np.float32))
                return None
            d = distances.pairwise(self.Xt[t:t + 1], self.Xc[avail], self.metric, force=True)[0]
            order = np.lexsort((avail, d))
            self.extra[t] = (avail[order], d[order])


def greedy_pairs(Xt: np.ndarray, Xc: np.ndarray, metric: str = "euclidean", caliper: float = np.inf,
                 n_pairs: int | None = None, k: int = 100, lists: _SortedLists | None = None):
    """Greedy 1:1 matching without replacement: repeatedly take the globally closest unused
    (treated, control) pair, ties broken by (treated index, control index); stop at `caliper` or `n_pairs`.

    Returns treated positions, control positions and distances in matching order.
    """
    lists = lists or _SortedLists(Xt, Xc, metric, k)
    used = np.zeros(len(Xc), bool)
    heap = [(float(d), t, int(c)) for t, (c, d) in enumerate(zip(lists.idx[:, 0], lists.dist[:, 0], strict=True))] \
        if lists.idx.shape[1] else []
    heapq.heapify(heap)
    out_t, out_c, out_d = [], [], []
    limit = np.inf if n_pairs is None else int(n_pairs)
    while heap and len(out_t) < limit:
        d, t, c = heap[0]
        if d > caliper:
            break
        if used[c]:
            nxt = lists.next_available(t, used)
            if nxt is None:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (nxt[0], t, nxt[1]))
            continue
        heapq.heappop(heap)
        used[c] = True
        out_t.append(t)
        out_c.append(c)
        out_d.append(d)
    return np.array(out_t, np.int64), np.array(out_c, np.int64), np.array(out_d, np.float64)


def match_greedy(data: MatchData, embedding: str, metric: str = "euclidean", caliper: float | None = None,
                 caliper_sd: float | None = None, caliper_quantile: float | None = None,
                 n_pairs: int | None = None, k: int = 100, random_state: int | None = None) -> MatchResult:
    """Greedy nearest neighbour across treatment in one embedding, 1:1 without replacement, within a caliper.

    The caliper is absolute (`caliper`), or `caliper_sd` SDs / the `caliper_quantile` quantile of the
    treated units' nearest cross-group distances. Same pairs as the dense algorithm (see `greedy_pairs`).
    """
    t_idx, c_idx = _groups(data, "greedy")
    X = data.embedding(embedding)
    lists = _SortedLists(X[t_idx], X[c_idx], metric, k)
    cal = _resolve_caliper(lists.nearest(), caliper, caliper_sd, caliper_quantile)
    ti, ci, d = greedy_pairs(X[t_idx], X[c_idx], metric, cal, n_pairs, k, lists=lists)
    info = {"caliper": cal, "metric": metric, "k": k, "n_refills": lists.n_refills}
    return _result(data, "greedy", embedding, t_idx[ti], c_idx[ci], d, info)


# ---------------------------------------------------------------- weights


def matched_weights(ids, pairs: pd.DataFrame) -> np.ndarray:
    """ATT matching weights per id (0 for unmatched), MatchIt style.

    Matched treated units get 1. A control gets the sum of its pairs' weights (1/k for k:1 matching), and
    control weights are scaled to sum to the number of distinct matched controls.
    """
    ids = np.asarray(ids).astype(str)
    w = np.zeros(len(ids))
    if pairs is None or len(pairs) == 0:
        return w
    pos = pd.Series(np.arange(len(ids)), index=ids)
    missing = ~pairs["treated_id"].astype(str).isin(pos.index) | ~pairs["control_id"].astype(str).isin(pos.index)
    if missing.any():
        raise InputDataError(f"matched_weights: {int(missing.sum())} pair(s) name ids that are not in the sample.")
    tpos = pos.loc[pairs["treated_id"].astype(str)].to_numpy()
    cpos = pos.loc[pairs["control_id"].astype(str)].to_numpy()
    pw = pairs["weight"].to_numpy(float) if "weight" in pairs else np.ones(len(pairs))
    w[np.unique(tpos)] = 1.0
    wc = np.bincount(cpos, weights=pw, minlength=len(ids))
    ctrl = np.unique(cpos)
    if wc[ctrl].sum() > 0:
        w[ctrl] += wc[ctrl] * len(ctrl) / wc[ctrl].sum()
    return w


# ---------------------------------------------------------------- registry

MATCHERS: dict[str, Callable[..., MatchResult]] = {
    "greedy": match_greedy,
}


def match(method: str, data: MatchData, **params) -> MatchResult:
    """Run the matcher registered as `method` with its parameters (a config block minus `method`)."""
    if method not in MATCHERS:
        raise ConfigError(f"unknown matching method '{method}'; choose one of {sorted(MATCHERS)} "
                          "(config key matching.methods.<name>.method).")
    fn = MATCHERS[method]
    accepted = inspect.signature(fn).parameters
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(f"matching method '{method}' does not take {unknown}; it takes "
                          f"{[p for p in accepted if p != 'data']}.")
    return fn(data, **params)
