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


class _CrossLists:
    """Per-treated streams of controls in exact (distance, control index) order, refilled when they run out.

    Streams start as each treated row's k nearest controls (`distances.knn`). When every listed control is
    dead (used, removed or rejected) and the list was truncated, the row is searched again among the live
    controls with twice the length, so a stream always yields exactly what a dense sorted row would.
    """

    def __init__(self, Xt: np.ndarray, Xc: np.ndarray, metric: str, k: int, block_size: int = 2048):
        self.Xt, self.Xc, self.metric = Xt, Xc, metric
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.idx, self.dist = distances.knn(Xt, k, metric, Y=Xc, exclude_self=False, block_size=block_size)
        self.complete = np.full(len(Xt), self.idx.shape[1] >= len(Xc))
        self.pos = np.zeros(len(Xt), np.int64)
        self.extra: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.n_refills = 0

    def nearest(self) -> np.ndarray:
        """Each treated row's nearest control distance (before any matching)."""
        return self.dist[:, 0].astype(np.float64) if self.dist.shape[1] else np.full(len(self.Xt), np.inf)

    def head(self, t: int, alive: np.ndarray, accept: Callable[[int, int], bool] | None = None):
        """(distance, control) of t's first live control that `accept(t, c)` allows, or None."""
        while True:
            cols, dist = self.extra.get(t, (self.idx[t], self.dist[t]))
            p = int(self.pos[t])
            while p < len(cols) and not (alive[cols[p]] and (accept is None or accept(t, int(cols[p])))):
                p += 1
            self.pos[t] = p
            if p < len(cols):
                return float(dist[p]), int(cols[p])
            if self.complete[t]:
                return None
            live = np.flatnonzero(alive)
            self.n_refills += 1
            self.pos[t] = 0
            kk = min(len(live), 2 * max(len(cols), 1))
            self.complete[t] = kk >= len(live)
            if kk == 0:
                self.extra[t] = (live, np.zeros(0, np.float32))
                return None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                i, d = distances.knn(self.Xt[t:t + 1], kk, self.metric, Y=self.Xc[live], exclude_self=False)
            self.extra[t] = (live[i[0]], d[0])

    def advance(self, t: int) -> None:
        self.pos[t] += 1


def greedy_pairs(Xt: np.ndarray, Xc: np.ndarray, metric: str = "euclidean", caliper: float = np.inf,
                 n_pairs: int | None = None, k: int = 100, lists: _CrossLists | None = None):
    """Greedy 1:1 matching without replacement: repeatedly take the globally closest unused
    (treated, control) pair, ties broken by (treated index, control index); stop at `caliper` or `n_pairs`.

    Equal to the dense algorithm (argmin of the full matrix, mask row and column, repeat) because each
    heap entry is its treated row's nearest live control when pushed and is re-checked when popped.
    Returns treated positions, control positions and distances in matching order.
    """
    lists = lists or _CrossLists(Xt, Xc, metric, k)
    alive = np.ones(len(Xc), bool)
    heap = []
    for t in range(len(Xt)):
        h = lists.head(t, alive)
        if h is not None:
            heap.append((h[0], t, h[1]))
    heapq.heapify(heap)
    out_t, out_c, out_d = [], [], []
    limit = np.inf if n_pairs is None else int(n_pairs)
    while heap and len(out_t) < limit:
        d, t, c = heap[0]
        if d > caliper:
            break
        if not alive[c]:
            h = lists.head(t, alive)
            if h is None:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (h[0], t, h[1]))
            continue
        heapq.heappop(heap)
        alive[c] = False
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
    lists = _CrossLists(X[t_idx], X[c_idx], metric, k)
    cal = _resolve_caliper(lists.nearest(), caliper, caliper_sd, caliper_quantile)
    ti, ci, d = greedy_pairs(X[t_idx], X[c_idx], metric, cal, n_pairs, k, lists=lists)
    info = {"caliper": cal, "metric": metric, "k": k, "n_refills": lists.n_refills}
    return _result(data, "greedy", embedding, t_idx[ti], c_idx[ci], d, info)


# ---------------------------------------------------------------- greedy constrained (reference study)


class _References:
    """Same-identity reference photos per image and the choice of a reference pair for a match.

    refs(i) = other photos of i's identity that pass `exclude`; each carries its reference-embedding
    distance to i. For a pair (t, c) the references are the (r_t, r_c) minimising the gap
    |ref_dist(t, r_t) - ref_dist(c, r_c)| among gaps in [gap_low, gap_high] (ties: lower r_t, then r_c);
    a pair with no such references cannot be matched.
    """

    def __init__(self, identity_codes: np.ndarray, R: np.ndarray | None, metric: str, ref_ok: np.ndarray,
                 gap: tuple[float, float]):
        self.gap = gap
        self.R, self.metric = R, metric
        order = np.argsort(identity_codes, kind="stable")
        bounds = np.flatnonzero(np.diff(identity_codes[order])) + 1
        self.members = {int(identity_codes[g[0]]): g for g in np.split(order, bounds) if len(g)}
        self.codes, self.ref_ok = identity_codes, ref_ok
        self._refs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._pairs: dict[tuple[int, int], tuple[int, int, float] | None] = {}

    def refs(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in self._refs:
            g = self.members[int(self.codes[i])]
            r = g[(g != i) & self.ref_ok[g]]
            if self.R is None or len(r) == 0:
                d = np.zeros(len(r), np.float32)
            else:
                d = distances.pairwise(self.R[i:i + 1], self.R[r], self.metric, force=True)[0]
            self._refs[i] = (r, d)
        return self._refs[i]

    def pair(self, t: int, c: int):
        """(r_t, r_c, gap) for images t and c (global positions), or None when no pair is admissible."""
        key = (t, c)
        if key not in self._pairs:
            rt, dt = self.refs(t)
            rc, dc = self.refs(c)
            out = None
            if len(rt) and len(rc):
                if self.R is None:
                    out = (int(rt[0]), int(rc[0]), 0.0)
                else:
                    gap = np.abs(dt.astype(np.float64)[:, None] - dc.astype(np.float64)[None, :])
                    gap[(gap < self.gap[0]) | (gap > self.gap[1])] = np.inf
                    j = int(np.argmin(gap))
                    if np.isfinite(gap.flat[j]):
                        a, b = divmod(j, gap.shape[1])
                        out = (int(rt[a]), int(rc[b]), float(gap[a, b]))
            self._pairs[key] = out
        return self._pairs[key]


def match_greedy_constrained(data: MatchData, embedding: str = "gan", metric: str = "euclidean",
                             constraint_embedding: str | None = "facial", constraint_metric: str = "euclidean",
                             threshold: float = 0.6, mode: str = "penalty", penalty: float = 1e6,
                             reference_embedding: str | None = "vgg", reference_metric: str = "euclidean",
                             reference_exclude: dict | None = None, reference_gap: tuple = (1e-2, 1e6),
                             min_photos: int = 2, n_pairs: int | None = 1200, caliper: float | None = None,
                             k: int = 100, random_state: int | None = None) -> MatchResult:
    """The reference study's greedy constrained matching, driven by neighbour lists and a heap.

    Exact semantics (the dense version is a loop over the full matrices):
    - cost(t, c) = D(t, c) in `embedding`, plus `penalty` when the `constraint_embedding` distance
      F(t, c) > `threshold` (mode "penalty", as the paper: +1e6), or the pair is forbidden (mode "hard");
      `constraint_embedding=None` means no constraint.
    - an image is selectable when its identity has >= `min_photos` photos and it has a reference: another
      photo of its identity not excluded by `reference_exclude` ({column: value}; default
      {"eyeglasses": 1} when that covariate exists).
    - a pair is admissible when references (r_t, r_c) exist whose `reference_embedding` distances to t and
      c differ by a gap within `reference_gap` (inclusive); the pair's references minimise that gap
      (ties: lower positions). `reference_embedding=None` takes the first reference of each side.
    - repeat: take the admissible pair of live images with the smallest cost (ties: lower treated, then
      control position); record it; remove every image of both identities. Stop after `n_pairs` pairs,
      when the cost exceeds `caliper`, or when no admissible pair is left.
    Pairs whose constraint distance exceeds the threshold are flagged `penalised`; `distance` is D.
    """
    if mode not in ("penalty", "hard"):
        raise ConfigError(f"greedy_constrained: mode must be 'penalty' or 'hard', got '{mode}'.")
    if data.identity is None:
        raise InputDataError("greedy_constrained needs image identities (column identity of the image index).")
    t_idx, c_idx = _groups(data, "greedy_constrained")
    X = data.embedding(embedding)
    F = data.embedding(constraint_embedding) if constraint_embedding else None
    R = data.embedding(reference_embedding) if reference_embedding else None
    codes = pd.factorize(data.identity)[0]
    n_photos = np.bincount(codes)
    warn = []
    if reference_exclude is None:
        cov_cols = set(data.covariates.columns) if data.covariates is not None else set()
        reference_exclude = {"eyeglasses": 1} if "eyeglasses" in cov_cols else {}
    ref_ok = np.ones(len(data.ids), bool)
    for col, value in reference_exclude.items():
        if data.covariates is None or col not in data.covariates:
            warn.append(f"reference_exclude: column '{col}' not in the covariates; ignored.")
            continue
        ref_ok &= data.covariates[col].to_numpy() != value
    refs = _References(codes, R, reference_metric, ref_ok, tuple(reference_gap))
    same_group = np.zeros(len(codes), np.int64)
    for i in range(len(codes)):
        same_group[i] = np.sum(ref_ok[refs.members[int(codes[i])]]) - int(ref_ok[i])
    selectable = (n_photos[codes] >= min_photos) & (same_group > 0)

    id_alive = np.ones(codes.max() + 1, bool)
    c_sel = selectable[c_idx]
    alive_c = c_sel.copy()
    cost_cap = np.inf if caliper is None else float(caliper)

    def admissible(t: int, c: int) -> bool:
        return refs.pair(int(t_idx[t]), int(c_idx[c])) is not None

    Fp = distances.prepare(F, constraint_metric) if F is not None else None

    def fdist(t: int, c: int) -> float:
        return float(distances.pair_distances(Fp, Fp, t_idx[t], c_idx[c], constraint_metric)[0])

    lists = _CrossLists(X[t_idx], X[c_idx], metric, k)
    # S-streams: per treated, the controls within the constraint threshold, sorted by (D, control)
    sat: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if F is not None:
        fl = _CrossLists(F[t_idx], F[c_idx], constraint_metric, k)
        for t in range(len(t_idx)):
            if not selectable[t_idx[t]]:
                continue
            cols, fd = fl.idx[t], fl.dist[t]
            if not fl.complete[t] and len(fd) and fd[-1] <= threshold:
                fd = distances.pairwise(F[t_idx[t]:t_idx[t] + 1], F[c_idx], constraint_metric, force=True)[0]
                cols = np.arange(len(c_idx))
            cols = cols[fd <= threshold]
            if len(cols):
                d = distances.pairwise(X[t_idx[t]:t_idx[t] + 1], X[c_idx[cols]], metric, force=True)[0]
                o = np.lexsort((cols, d))
                sat[t] = (cols[o], d[o])
    sat_pos = dict.fromkeys(sat, 0)

    def sat_head(t: int):
        cols, d = sat[t]
        p = sat_pos[t]
        while p < len(cols) and not (alive_c[cols[p]] and admissible(t, int(cols[p]))):
            p += 1
        sat_pos[t] = p
        return (float(d[p]), int(cols[p])) if p < len(cols) else None

    def viol_accept(t: int, c: int) -> bool:
        return (F is None or fdist(t, c) > threshold) and admissible(t, c)

    use_viol = F is None or mode == "penalty"
    extra_cost = 0.0 if F is None else float(penalty)
    heap = []  # (cost, t, c, stream) with stream 0 = within threshold, 1 = penalised / unconstrained

    def push(t: int, stream: int):
        h = sat_head(t) if stream == 0 else lists.head(t, alive_c, viol_accept)
        if h is not None:
            heapq.heappush(heap, (h[0] + (extra_cost if stream == 1 else 0.0), t, h[1], stream, h[0]))

    for t in range(len(t_idx)):
        if not selectable[t_idx[t]]:
            continue
        if t in sat:
            push(t, 0)
        if use_viol:
            push(t, 1)

    limit = np.inf if n_pairs is None else int(n_pairs)
    out = []
    while heap and len(out) < limit:
        cost, t, c, stream, d = heap[0]
        if cost > cost_cap:
            break
        heapq.heappop(heap)
        if not id_alive[codes[t_idx[t]]]:
            continue
        if not alive_c[c]:
            push(t, stream)
            continue
        rt, rc, gap = refs.pair(int(t_idx[t]), int(c_idx[c]))
        out.append((t_idx[t], c_idx[c], d, rt, rc, stream == 1 and F is not None, gap))
        for g in (codes[t_idx[t]], codes[c_idx[c]]):
            id_alive[g] = False
        alive_c &= id_alive[codes[c_idx]]

    info = {"caliper": cost_cap, "metric": metric, "k": k, "mode": mode, "threshold": threshold,
            "n_selectable_treated": int(selectable[t_idx].sum()), "n_selectable_control": int(c_sel.sum()),
            "n_penalised": int(sum(o[5] for o in out)), "n_refills": lists.n_refills, "warnings": warn}
    if n_pairs is not None and len(out) < n_pairs:
        warn.append(f"greedy_constrained: found {len(out)} admissible pairs of the {n_pairs} asked for.")
        warnings.warn(warn[-1], stacklevel=3)
    cols = list(zip(*out, strict=True)) if out else [[]] * 7
    extra = {"treated_ref": data.ids[np.asarray(cols[3], np.int64)], "control_ref": data.ids[np.asarray(cols[4], np.int64)],
             "penalised": np.asarray(cols[5], bool), "reference_gap": np.asarray(cols[6], np.float64)}
    return _result(data, "greedy_constrained", embedding, cols[0], cols[1], cols[2], info, extra=extra)


# ---------------------------------------------------------------- features


def _features(data: MatchData, method: str, embedding: str | None, covariates: list[str] | None,
              standardize: bool = True) -> np.ndarray:
    """float64 design matrix: the embedding's columns and/or the named covariates, each standardised."""
    parts = []
    if embedding:
        parts.append(data.embedding(embedding).astype(np.float64))
    if covariates:
        if data.covariates is None:
            raise InputDataError(f"{method}: covariates {covariates} asked for but no covariate table was given.")
        missing = [c for c in covariates if c not in data.covariates]
        if missing:
            raise ConfigError(f"{method}: covariates {missing} are not columns of the attributes table.")
        C = data.covariates[list(covariates)].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
        if np.isnan(C).any():
            raise InputDataError(f"{method}: covariates {covariates} have missing or non-numeric values.")
        parts.append(C)
    if not parts:
        raise ConfigError(f"{method}: give an embedding and/or covariates to match on.")
    Z = np.hstack(parts)
    if standardize:
        sd = Z.std(axis=0)
        Z = (Z - Z.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    return Z


# ---------------------------------------------------------------- propensity score


class PropensityModel:
    """Logistic regression of treatment on standardised features; `logit_` is the linear predictor."""

    def __init__(self, C: float = 1.0, max_iter: int = 2000, random_state: int | None = 0):
        self.C, self.max_iter, self.random_state = C, max_iter, random_state

    def fit(self, Z: np.ndarray, treated: np.ndarray) -> PropensityModel:
        from sklearn.linear_model import LogisticRegression

        self.model_ = LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.random_state)
        self.model_.fit(Z, treated)
        self.logit_ = self.model_.decision_function(Z)
        self.propensity_ = 1.0 / (1.0 + np.exp(-self.logit_))
        return self


def _nearest_on_line(score_t: np.ndarray, score_c: np.ndarray, order: np.ndarray, ratio: int, replace: bool,
                     caliper: float):
    """Nearest neighbour matching on a scalar score, treated units taken in `order`.

    Each treated unit takes its `ratio` nearest available controls by |score difference| (equal
    differences on both sides: the lower control index) within `caliper`. Without replacement, used
    controls are skipped through path-compressed left/right pointers over the controls sorted by score.
    """
    srt = np.lexsort((np.arange(len(score_c)), score_c))
    vals = score_c[srt]
    nc = len(vals)
    left = np.arange(nc) - 1
    right = np.arange(nc) + 1
    live = np.ones(nc, bool)

    def find(ptr: np.ndarray, i: int) -> int:
        path = []
        while 0 <= i < nc and not live[i]:
            path.append(i)
            i = int(ptr[i])
        ptr[path] = i
        return i

    out_t, out_c, out_d = [], [], []
    for t in order:
        x = score_t[t]
        pos = int(np.searchsorted(vals, x))
        lo, hi = find(left, pos - 1), find(right, pos)
        taken = []
        while len(taken) < ratio and (lo >= 0 or hi < nc):
            dl = x - vals[lo] if lo >= 0 else np.inf
            dh = vals[hi] - x if hi < nc else np.inf
            if dl < dh or (dl == dh and srt[lo] < srt[hi]):
                j, d, lo = lo, dl, find(left, lo - 1)
            else:
                j, d, hi = hi, dh, find(right, hi + 1)
            if d > caliper:
                break
            taken.append((j, d))
        for j, d in taken:
            if not replace:
                live[j] = False
            out_t.append(t)
            out_c.append(srt[j])
            out_d.append(d)
    return np.array(out_t, np.int64), np.array(out_c, np.int64), np.array(out_d, np.float64)


def match_propensity(data: MatchData, covariates: list[str] | None = None, embedding: str | None = None,
                     C: float = 1.0, ratio: int = 1, replace: bool = False, caliper: float | None = 0.2,
                     std_caliper: bool = True, order: str = "random", random_state: int | None = 0
                     ) -> MatchResult:
    """Propensity-score matching: logistic regression of treatment on standardised covariates and/or an
    embedding, then ratio:1 nearest neighbour on the logit propensity, treated units in `order`
    ("random" with `random_state`, "largest"/"smallest" propensity first, or "data").

    `caliper` is in SDs of the logit propensity when `std_caliper` (Austin's 0.2), else absolute;
    None for no caliper. `distance` is |logit difference|; pair weights are 1/(controls of the treated).
    """
    t_idx, c_idx = _groups(data, "propensity")
    if ratio < 1:
        raise ConfigError(f"propensity: ratio must be >= 1, got {ratio}.")
    Z = _features(data, "propensity", embedding, covariates)
    model = PropensityModel(C=C, random_state=random_state).fit(Z, data.treated)
    logit = model.logit_
    cal = np.inf if caliper is None else float(caliper) * (float(np.std(logit, ddof=1)) if std_caliper else 1.0)
    lt, lc = logit[t_idx], logit[c_idx]
    if order == "random":
        seq = np.random.default_rng(random_state).permutation(len(t_idx))
    elif order in ("largest", "smallest"):
        seq = np.lexsort((np.arange(len(lt)), -lt if order == "largest" else lt))
    elif order == "data":
        seq = np.arange(len(t_idx))
    else:
        raise ConfigError(f"propensity: order must be random, largest, smallest or data; got '{order}'.")
    ti, ci, d = _nearest_on_line(lt, lc, seq, int(ratio), bool(replace), cal)
    n_per = np.bincount(ti, minlength=len(t_idx))
    weight = 1.0 / n_per[ti] if len(ti) else None
    first: dict[int, int] = {}  # subclasses numbered in matching order
    subclass = np.array([first.setdefault(int(t), len(first) + 1) for t in ti], np.int64) if len(ti) else None
    info = {"caliper": cal, "caliper_sd_units": caliper if std_caliper else None, "order": order, "ratio": ratio,
            "replace": replace, "logit_sd": float(np.std(logit, ddof=1))}
    extra = {"treated_logit": lt[ti], "control_logit": lc[ci]}
    return _result(data, "propensity", embedding or "", t_idx[ti], c_idx[ci], d, info, weight=weight,
                   subclass=subclass, extra=extra)


# ---------------------------------------------------------------- optimal


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
    t_idx, c_idx = _groups(data, "optimal")
    X = data.embedding(embedding)
    cal = np.inf
    if any(v is not None for v in (caliper, caliper_sd, caliper_quantile)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, nn = distances.knn(X[t_idx], 1, metric, Y=X[c_idx], exclude_self=False)
        cal = _resolve_caliper(nn[:, 0].astype(np.float64), caliper, caliper_sd, caliper_quantile)
    ti, ci, d, dense = optimal_pairs(X[t_idx], X[c_idx], metric, cal, k)
    o = np.lexsort((ti, d))
    info = {"caliper": cal, "metric": metric, "k": k, "solver": "dense" if dense else "sparse_knn",
            "total_distance": float(np.sum(d))}
    return _result(data, "optimal", embedding, t_idx[ti[o]], c_idx[ci[o]], d[o], info)


# ---------------------------------------------------------------- Mahalanobis / Euclidean


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
    t_all, c_all = _groups(data, "mahalanobis")
    Z = _features(data, "mahalanobis", embedding, covariates)
    Z = (whiten(Z, ridge) if metric == "mahalanobis" else Z).astype(np.float32)
    if exact:
        if data.covariates is None or any(c not in data.covariates for c in exact):
            raise ConfigError(f"mahalanobis: exact columns {exact} are not all in the attributes table.")
        strata = pd.factorize(pd.MultiIndex.from_frame(data.covariates[list(exact)].astype(str)))[0]
    else:
        strata = np.zeros(len(data.ids), np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, nn = distances.knn(Z[t_all], 1, Y=Z[c_all], exclude_self=False)
    cal = _resolve_caliper(nn[:, 0].astype(np.float64), caliper, caliper_sd, caliper_quantile)
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
    return _result(data, "mahalanobis", embedding or "", T, Cc, Dd, info)


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
    "greedy_constrained": match_greedy_constrained,
    "propensity": match_propensity,
    "optimal": match_optimal,
    "mahalanobis": match_mahalanobis,
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
