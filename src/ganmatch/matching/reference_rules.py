"""The reference study's greedy constrained matching rules (`semantics: reference`), pair for pair.

What csinva/matching-with-gans (`matching_benchmarking/matching.py`:
`get_idxs_satisfying_reference_constraints`, `get_matches`; run by `scripts/02_calc_matches.py`) does, quirks
included, re-expressed twice: `reference_pairs` (heap + neighbour lists, scales to 30k) and
`dense_reference_pairs` (full matrices, the rules read literally; the tests hold the heap version to it). Rows
of the cost matrix are the control group (the reference's `gender_0`), columns the treated group, so ties go
to the lower control, then treated.

1. Selectable images: drop an image whose match-cost row or reference-distance row (to every other image)
   is constant (the reference's code for a missing distance); then per identity, among the remaining photos:
   one photo -> not selectable; no reference-eligible photo -> none selectable; exactly one eligible photo ->
   that photo is not selectable (it is the identity's reference), the others are.
2. Each iteration: cost = match distance + `penalty` where the constraint distance exceeds `threshold`
   (float64); a pair skipped earlier costs `skip_cost` instead (demoted, not forbidden); argmin over the
   selectable live (controls x treated), row-major.
3. References: among *all* other photos of each identity (no eligibility rule here), the pair minimising
   |d_ref(c, r_c) - d_ref(t, r_t)| (row-major over the control's, then the treated's photos). If that minimum
   gap is above `gap[1]` or below `gap[0]`, the pair is skipped (marked) and the iteration is used up.
4. At most `n_pairs` iterations; stop when a group has no selectable live image; after a match every
   photo of both identities leaves both groups. A skipped pair that comes back to the top changes nothing,
   so it would be picked again at every remaining iteration: the heap version stops there.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from ganmatch.analysis import distances
from ganmatch.matching.data import PairRecord
from ganmatch.matching.greedy import CrossLists


@dataclass
class ReferenceRun:
    """Matches in order (`PairRecord`s), the skipped (treated, control, gap) in order, and the iterations
    used (matches + skips + re-picks)."""

    pairs: list[PairRecord] = field(default_factory=list)
    skipped: list = field(default_factory=list)
    iterations: int = 0
    n_selectable: tuple[int, int] = (0, 0)
    n_constant: int = 0
    n_refills: int = 0


# ---------------------------------------------------------------- selection


def selectable(codes: np.ndarray, ref_ok: np.ndarray, constant: np.ndarray) -> np.ndarray:
    """Rule 1 after the constant-row drop: identity-level selectability from photo counts."""
    live = ~constant
    n_live = np.bincount(codes, weights=live.astype(float))[codes]
    eligible = live & ref_ok
    n_elig = np.bincount(codes, weights=eligible.astype(float))[codes]
    return live & (n_live >= 2) & (n_elig >= 1) & ~(eligible & (n_elig == 1))


def constant_rows(value, n: int) -> np.ndarray:
    """Rows whose off-diagonal values (value(i, j), float64, j != i) are all equal.

    Two probe columns per row rule nearly every row out at O(n) cost; only rows equal on both probes get
    their full row computed."""
    if n <= 2:
        return np.ones(n, bool)
    i = np.arange(n)
    j1 = np.where(i == 0, 1, 0)
    j2 = np.where(i <= 1, 2, 1)
    out = np.zeros(n, bool)
    for a in np.flatnonzero(value(i, j1) == value(i, j2)):
        others = np.delete(i, a)
        v = value(np.full(n - 1, a), others)
        out[a] = bool(np.all(v == v[0]))
    return out


class _Costs:
    """Match cost D + penalty * [F > threshold] and reference distances for index pairs, in float64."""

    def __init__(self, X, metric, F, constraint_metric, threshold, penalty, R, reference_metric):
        self.Xp, self.metric = distances.prepare(X, metric, "embedding"), metric
        self.Fp = None if F is None else distances.prepare(F, constraint_metric, "constraint_embedding")
        self.cmetric, self.threshold, self.penalty = constraint_metric, threshold, float(penalty)
        self.Rp, self.rmetric = distances.prepare(R, reference_metric,
                                                  "reference_embedding"), reference_metric

    def violates(self, i, j) -> np.ndarray:
        if self.Fp is None:
            return np.zeros(np.broadcast(np.asarray(i), np.asarray(j)).shape, bool)
        return distances.pair_distances(self.Fp, self.Fp, i, j, self.cmetric) > self.threshold

    def match(self, i, j) -> np.ndarray:
        d = distances.pair_distances(self.Xp, self.Xp, i, j, self.metric).astype(np.float64)
        return d + self.penalty * self.violates(i, j)

    def reference(self, i, j) -> np.ndarray:
        return distances.pair_distances(self.Rp, self.Rp, i, j, self.rmetric).astype(np.float64)

    def constant(self, n: int) -> np.ndarray:
        return constant_rows(self.match, n) | constant_rows(self.reference, n)


def _members(codes: np.ndarray) -> list[np.ndarray]:
    """Positions of each identity's photos, ascending, indexed by identity code."""
    order = np.argsort(codes, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(codes[order])) + 1)


def closest_references(costs: _Costs, members: list[np.ndarray], codes: np.ndarray, c: int, t: int):
    """(control_ref, treated_ref, gap): rule 3's argmin over all other photos of each identity."""
    rc = members[codes[c]][members[codes[c]] != c]
    rt = members[codes[t]][members[codes[t]] != t]
    dc = costs.reference(np.full(len(rc), c), rc)
    dt = costs.reference(np.full(len(rt), t), rt)
    gap = np.abs(dc[:, None] - dt[None, :])
    j = int(np.argmin(gap))
    a, b = divmod(j, len(rt))
    return int(rc[a]), int(rt[b]), float(gap[a, b])


# ---------------------------------------------------------------- heap version


def _threshold_streams(lists: CrossLists, Fr, Fc, metric: str, threshold: float, k: int) -> dict:
    """Per row, every column within the constraint threshold, sorted by (match distance, column): the
    threshold kNN lists, a full row search where a list is all within the threshold, and one vectorised
    distance call for all the pairs."""
    fl = CrossLists(Fr, Fc, metric, k)
    r_parts, c_parts = [], []
    for r in np.flatnonzero(~fl.complete & (fl.dist[:, -1] <= threshold) if fl.dist.shape[1] else []):
        fd = distances.pairwise(fl.Xt[r:r + 1], fl.Xc, metric, force=True)[0]
        c_parts.append(np.flatnonzero(fd <= threshold))
        r_parts.append(np.full(len(c_parts[-1]), r))
    listed = fl.complete | (fl.dist[:, -1] > threshold) if fl.dist.shape[1] else np.ones(len(Fr), bool)
    within = (fl.dist <= threshold) & listed[:, None]
    rr, jj = np.nonzero(within)
    r_all = np.concatenate([rr, *r_parts]).astype(np.int64)
    c_all = np.concatenate([fl.idx[rr, jj], *c_parts]).astype(np.int64)
    Xr, Xc = distances.prepare(lists.Xt, lists.metric), distances.prepare(lists.Xc, lists.metric)
    d = distances.pair_distances(Xr, Xc, r_all, c_all, lists.metric) if len(r_all) else np.zeros(0,
                                                                                                 np.float32)
    o = np.lexsort((c_all, d, r_all))
    r_all, c_all, d = r_all[o], c_all[o], d[o]
    bounds = np.flatnonzero(np.diff(r_all)) + 1
    return {int(rs[0]): [cs, ds, 0] for rs, cs, ds in zip(np.split(r_all, bounds), np.split(c_all, bounds),
                                                         np.split(d, bounds), strict=True) if len(rs)}


def reference_pairs(X, F, R, treated, codes, ref_ok, metric="euclidean", constraint_metric="euclidean",
                    reference_metric="euclidean", threshold=0.6, penalty=1e6, skip_cost=1e5,
                    gap=(1e-2, 1e6), n_pairs=1200, k=100) -> ReferenceRun:
    """The reference rules with per-row neighbour streams and a heap (module docstring); same output as
    `dense_reference_pairs`. Positions index the rows of X."""
    n = len(X)
    costs = _Costs(X, metric, F, constraint_metric, threshold, penalty, R, reference_metric)
    constant = costs.constant(n)
    sel = selectable(codes, ref_ok, constant)
    rows = np.flatnonzero((treated == 0) & sel)     # controls
    cols = np.flatnonzero((treated == 1) & sel)     # treated
    run = ReferenceRun(n_selectable=(len(cols), len(rows)), n_constant=int(constant.sum()))
    limit = np.inf if n_pairs is None else int(n_pairs)
    if len(rows) == 0 or len(cols) == 0 or limit <= 0:
        return run
    members = _members(codes)
    X = np.asarray(X, np.float32)   # raw rows: knn prepares them itself, as `costs` did
    lists = CrossLists(X[rows], X[cols], metric, k)
    P = float(penalty) if F is not None else 0.0
    if F is not None:
        F = np.asarray(F, np.float32)
        sat = _threshold_streams(lists, F[rows], F[cols], constraint_metric, threshold, min(k, 16))
    else:
        sat = {}
    row_codes, col_codes = codes[rows], codes[cols]
    id_alive = np.ones(codes.max() + 1, bool)
    row_alive = np.ones(len(rows), bool)
    col_alive = np.ones(len(cols), bool)
    skipped: set[tuple[int, int]] = set()

    within = {r * len(cols) + int(c) for r, (cc, _, _) in sat.items() for c in cc}   # F <= threshold

    def violates(r: int, c: int) -> bool:
        return F is None or r * len(cols) + c not in within

    def sat_head(r: int):
        cc, d, p = sat[r]
        while p < len(cc) and not (col_alive[cc[p]] and (r, int(cc[p])) not in skipped):
            p += 1
        sat[r][2] = p
        return (float(d[p]), int(cc[p])) if p < len(cc) else None

    def over_head(r: int):
        """First (distance, column) of r's penalised stream in (cost, column) order: D + P in float64 can
        merge distinct distances into one cost, so a run of equal costs yields its lowest column."""
        def accept(rr, c):
            return (rr, c) not in skipped and violates(rr, c)
        while True:
            h = lists.head(r, col_alive, accept)
            if h is None or P == 0.0:
                return h
            cost = h[0] + P
            cc, dd = lists.stream(r)
            p = int(lists.pos[r]) + 1
            best = h
            while p < len(cc) and float(dd[p]) + P == cost:
                if cc[p] < best[1] and col_alive[cc[p]] and accept(r, int(cc[p])):
                    best = (float(dd[p]), int(cc[p]))
                p += 1
            if p == len(cc) and not lists.complete[r]:
                lists.refill(r, col_alive)   # the run may continue past the list: search longer
                continue
            return best

    heap: list = []

    def push(r: int, stream: int) -> None:
        h = sat_head(r) if stream == 0 else over_head(r)
        if h is not None:
            heapq.heappush(heap, (h[0] + (P if stream == 1 else 0.0), r, h[1], stream, h[0]))

    for r in range(len(rows)):
        if r in sat:
            push(r, 0)
        push(r, 1)
    n_rows, n_cols = len(rows), len(cols)
    while run.iterations < limit and n_rows and n_cols and heap:
        cost, r, c, stream, d = heap[0]
        if not row_alive[r]:
            heapq.heappop(heap)
            continue
        if stream == 2:
            if not col_alive[c]:
                heapq.heappop(heap)
                continue
            # re-picked: nothing changes, so every remaining iteration picks it again (without a limit the
            # reference would never stop; here it stops)
            run.iterations = int(limit) if np.isfinite(limit) else run.iterations + 1
            break
        if not col_alive[c] or (r, c) in skipped:
            heapq.heappop(heap)
            push(r, stream)
            continue
        run.iterations += 1
        heapq.heappop(heap)
        rc, rt, g = closest_references(costs, members, codes, int(rows[r]), int(cols[c]))
        if g > gap[1] or g < gap[0]:
            skipped.add((r, c))
            run.skipped.append((int(cols[c]), int(rows[r]), g))
            heapq.heappush(heap, (float(skip_cost), r, c, 2, d))
            push(r, stream)
            continue
        run.pairs.append(PairRecord(treated=int(cols[c]), control=int(rows[r]), distance=d, treated_ref=rt,
                                    control_ref=rc, penalised=stream == 1 and F is not None, reference_gap=g))
        id_alive[codes[rows[r]]] = id_alive[codes[cols[c]]] = False
        row_alive &= id_alive[row_codes]
        col_alive &= id_alive[col_codes]
        n_rows, n_cols = int(row_alive.sum()), int(col_alive.sum())
    run.n_refills = lists.n_refills
    return run


# ---------------------------------------------------------------- dense re-expression


def dense_reference_pairs(X, F, R, treated, codes, ref_ok, metric="euclidean", constraint_metric="euclidean",
                          reference_metric="euclidean", threshold=0.6, penalty=1e6, skip_cost=1e5,
                          gap=(1e-2, 1e6), n_pairs=1200) -> ReferenceRun:
    """The same rules on full n x n matrices, read literally (for tests and benchmarks at small n)."""
    n = len(X)
    D = distances.pairwise(X, X, metric, force=True).astype(np.float64)
    viol = (distances.pairwise(F, F, constraint_metric, force=True) > threshold) if F is not None \
        else np.zeros((n, n), bool)
    M = D + float(penalty) * viol
    Rm = distances.pairwise(R, R, reference_metric, force=True).astype(np.float64)
    off = ~np.eye(n, dtype=bool)
    constant = np.array([np.all(A[i, off[i]] == A[i, off[i]][0]) if n > 1 else True
                         for i in range(n) for A in (M, Rm)]).reshape(n, 2).any(axis=1) if n else np.zeros(0,
                                                                                                           bool)
    sel = ~constant
    for ident in np.unique(codes):
        d = (codes == ident) & ~constant
        if d.sum() == 1:
            sel[d] = False
        elif d.sum() > 1:
            e = d & ref_ok
            if e.sum() == 0:
                sel[d] = False
            elif e.sum() == 1:
                sel[e] = False
    g0, g1 = (treated == 0) & sel, (treated == 1) & sel
    run = ReferenceRun(n_selectable=(int(g1.sum()), int(g0.sum())), n_constant=int(constant.sum()))
    marked = np.zeros((n, n), bool)
    for _ in range(n_pairs):
        if g0.sum() == 0 or g1.sum() == 0:
            break
        i0s, i1s = np.flatnonzero(g0), np.flatnonzero(g1)
        sub = M[np.ix_(i0s, i1s)]
        sub[marked[np.ix_(i0s, i1s)]] = skip_cost
        a, b = divmod(int(np.argmin(sub)), len(i1s))
        i0, i1 = int(i0s[a]), int(i1s[b])
        run.iterations += 1
        r0 = np.flatnonzero((codes == codes[i0]) & (np.arange(n) != i0))
        r1 = np.flatnonzero((codes == codes[i1]) & (np.arange(n) != i1))
        gaps = np.abs(Rm[i0, r0][:, None] - Rm[i1, r1][None, :])
        j = int(np.argmin(gaps))
        g = float(gaps.flat[j])
        if g > gap[1] or g < gap[0]:
            if not marked[i0, i1]:   # a re-pick of a marked pair changes nothing
                run.skipped.append((i1, i0, g))
            marked[i0, i1] = True
            continue
        ra, rb = divmod(j, len(r1))
        run.pairs.append(PairRecord(treated=i1, control=i0, distance=float(D[i0, i1]),
                                    treated_ref=int(r1[rb]), control_ref=int(r0[ra]),
                                    penalised=bool(viol[i0, i1]), reference_gap=g))
        dead = np.isin(codes, [codes[i0], codes[i1]])
        g0 &= ~dead
        g1 &= ~dead
    return run
