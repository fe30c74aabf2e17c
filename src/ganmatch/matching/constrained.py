"""The reference study's greedy constrained matching: greedy on one embedding with an identity-verification
constraint, same-identity reference photos per pair, and whole identities removed once matched."""

from __future__ import annotations

import heapq
import warnings

import numpy as np
import pandas as pd

from .. import distances
from ..errors import ConfigError, InputDataError
from .data import MatchData, MatchResult, make_result, split_groups
from .greedy import CrossLists


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
    t_idx, c_idx = split_groups(data, "greedy_constrained")
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
    # other photos of the same person that may serve as its reference
    same_group = np.bincount(codes, weights=ref_ok)[codes].astype(np.int64) - ref_ok
    selectable = (n_photos[codes] >= min_photos) & (same_group > 0)

    id_alive = np.ones(codes.max() + 1, bool)
    c_codes = codes[c_idx]
    c_sel = selectable[c_idx]
    alive_c = c_sel.copy()
    cost_cap = np.inf if caliper is None else float(caliper)

    def admissible(t: int, c: int) -> bool:
        return refs.pair(int(t_idx[t]), int(c_idx[c])) is not None

    Fp = distances.prepare(F, constraint_metric) if F is not None else None

    def fdist(t: int, c: int) -> float:
        return float(distances.pair_distances(Fp, Fp, t_idx[t], c_idx[c], constraint_metric)[0])

    lists = CrossLists(X[t_idx], X[c_idx], metric, k)
    # S-streams: per treated, the controls within the constraint threshold, sorted by (D, control)
    sat: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if F is not None:
        fl = CrossLists(F[t_idx], F[c_idx], constraint_metric, k)
        for t in range(len(t_idx)):
            if not selectable[t_idx[t]]:
                continue
            cols, fd = fl.idx[t], fl.dist[t]
            if not fl.complete[t] and len(fd) and fd[-1] <= threshold:
                fd = distances.pairwise(fl.Xt[t:t + 1], fl.Xc, constraint_metric, force=True)[0]
                cols = np.arange(len(c_idx))
            cols = cols[fd <= threshold]
            if len(cols):
                d = distances.pairwise(lists.Xt[t:t + 1], lists.Xc[cols], metric, force=True)[0]
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
        alive_c &= id_alive[c_codes]

    info = {"caliper": cost_cap, "metric": metric, "k": k, "mode": mode, "threshold": threshold,
            "n_selectable_treated": int(selectable[t_idx].sum()), "n_selectable_control": int(c_sel.sum()),
            "n_penalised": int(sum(o[5] for o in out)), "n_refills": lists.n_refills, "warnings": warn}
    if n_pairs is not None and len(out) < n_pairs:
        warn.append(f"greedy_constrained: found {len(out)} admissible pairs of the {n_pairs} asked for.")
        warnings.warn(warn[-1], stacklevel=3)
    cols = list(zip(*out, strict=True)) if out else [[]] * 7
    extra = {"treated_ref": data.ids[np.asarray(cols[3], np.int64)], "control_ref": data.ids[np.asarray(cols[4], np.int64)],
             "penalised": np.asarray(cols[5], bool), "reference_gap": np.asarray(cols[6], np.float64)}
    return make_result(data, "greedy_constrained", embedding, cols[0], cols[1], cols[2], info, extra=extra)
