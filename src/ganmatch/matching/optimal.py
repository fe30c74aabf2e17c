"""Optimal matching: pair matching (each focal unit `ratio` controls, minimising the total distance; MatchIt's
`method = "optimal"`) and full matching (every unit in a subclass of one focal and several others or the
reverse, minimising the total within-subclass distance; MatchIt's `method = "full"`). Both solve dense
assignment problems when small and sparse ones on exact k-nearest-neighbour graphs (k doubled until provably
enough) when large.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from ganmatch.analysis import distances
from ganmatch.matching.line_pairs import MAX_CELLS, line_pairs
from ganmatch.matching.line_pairs import cells as line_cells

Admissible = Callable[[np.ndarray, np.ndarray], np.ndarray] | None


def _dense(Xf, Xo, metric, caliper, admissible: Admissible):
    D = distances.pairwise(Xf, Xo, metric, force=True).astype(np.float64)
    ok = D <= caliper
    if admissible is not None and D.size:
        r, c = np.meshgrid(np.arange(len(Xf)), np.arange(len(Xo)), indexing="ij")
        ok &= admissible(r, c)
    return D, ok


def _knn_edges(Xf, Xo, metric, k, caliper, admissible: Admissible):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idx, dist = distances.knn(Xf, k, metric, Y=Xo, exclude_self=False)
    rows = np.repeat(np.arange(len(Xf)), idx.shape[1])
    cols, d = idx.ravel(), dist.ravel().astype(np.float64)
    # a scalar: the exact |difference|, not float32's
    if Xf.shape[1] == 1 and metric in ("euclidean", "l1"):
        d = np.abs(np.asarray(Xf, np.float64)[rows, 0] - np.asarray(Xo, np.float64)[cols, 0])
    ok = d <= caliper
    if admissible is not None and len(rows):
        ok &= admissible(rows, cols)
    return rows, cols, d, ok, dist[:, -1].astype(np.float64) if dist.shape[1] else np.zeros(len(Xf))


def optimal_sets(Xf: np.ndarray, Xo: np.ndarray, metric: str = "euclidean", caliper: float = np.inf,
                 ratio: int = 1, k: int = 100, admissible: Admissible = None, dense_limit: int = 4_000_000,
                 line: bool | None = None):
    """Optimal ratio:1 matching without replacement: each focal unit gets up to `ratio` others (each focal
    unit repeated `ratio` times in an assignment problem) so that as many as possible are matched within the
    caliper and admissible, at the least total distance. With too few others for `ratio` each, as MatchIt 4.7
    (which then asks optmatch for `mean.controls` = n_other / n_focal): between 1 and n_other / n_focal others
    are too few for one each, so 1:1; otherwise every focal unit gets at least floor(n_other / n_focal) and at
    most `ratio`, and every other unit is used. On a scalar distance without per-pair admissibility and with a
    fixed ratio, large problems (or `line=True`) go to the exact one-dimensional programme `line_pairs` (the
    same optimum). Returns focal positions, other positions, distances and the solver that ran (`dense`,
    `line` or `sparse_knn`)."""
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    nf, no = len(Xf), len(Xo)
    if ratio > 1 and no < nf:
        ratio = 1
    at_least = min(ratio, no // nf) if nf and ratio > 1 else ratio
    rep = np.repeat(np.arange(nf), ratio)
    forced = np.tile(np.arange(ratio), nf) < at_least        # copies every focal unit must fill
    if nf and no and optimal_line_applies(Xf, Xo, metric, caliper, admissible, ratio, dense_limit, line):
        return (*line_pairs(Xf[:, 0], Xo[:, 0], ratio, caliper), "line")
    if nf * no * ratio <= dense_limit:
        D, ok = _dense(Xf, Xo, metric, caliper, admissible)
        big = (np.nanmax(D[ok]) + 1.0) * (min(nf * ratio, no) + 1) if ok.any() else 1.0
        cost = np.where(ok, D, big)[rep]
        # variable ratio: the floor first, whatever it costs
        if at_least < ratio:
            cost -= big * (nf * ratio + 1) * forced[:, None]
        r, c = linear_sum_assignment(cost)
        keep = ok[rep[r], c]
        return rep[r][keep], c[keep], D[rep[r], c][keep], "dense"
    kk = min(k * ratio, no)
    rows, cols, d, ok, kth = _knn_edges(Xf, Xo, metric, kk, caliper, admissible)
    k_of = np.full(nf, kk)
    while True:
        big = (d[ok].max() + 1.0) * (nf * ratio + 1) if ok.any() else 1.0
        # each copy of focal f gets f's edges; one expensive "unmatched" column per copy
        copies = np.arange(nf * ratio)
        per = np.searchsorted(rows[ok], np.arange(nf + 1))
        R = np.concatenate([np.repeat(copies, np.diff(per)[rep]), copies])
        src = np.concatenate([np.arange(per[f], per[f + 1]) for f in rep]) if len(rep) else np.zeros(0,
                                                                                                     np.int64)
        C = np.concatenate([cols[ok][src], no + copies])
        unmatched = np.where(forced & (at_least < ratio), big * (nf * ratio + 2), big)
        V = np.concatenate([d[ok][src] + 1.0, unmatched])  # +1: explicit zeros are not edges
        G = csr_matrix((V, (R, C)), shape=(len(copies), no + len(copies)))
        r, c = min_weight_full_bipartite_matching(G)
        real = c < no
        # a list whose k-th distance is past the caliper holds every admissible other: the rows whose lists
        # may miss some are the only ones to widen, and with none left the graph is the whole admissible one
        incomplete = (kth <= caliper) & (k_of < no)
        could = (~real) & ((np.diff(per)[rep] > 0) | incomplete[rep])    # unmatched, maybe matchable
        if not could.any() or not incomplete.any() or real.sum() >= min(nf * ratio, no):
            f, o = rep[r[real]], c[real]
            Xp, Yp = distances.prepare(Xf, metric), distances.prepare(Xo, metric)
            return f, o, distances.pair_distances(Xp, Yp, f, o, metric).astype(np.float64), "sparse_knn"
        grow = np.flatnonzero(incomplete)
        wider = min(no, 2 * int(k_of[grow].max()))
        sub_ok = None if admissible is None else (lambda a, b, g=grow: admissible(g[a], b))
        r2, c2, d2, ok2, kth2 = _knn_edges(Xf[grow], Xo, metric, wider, caliper, sub_ok)
        keep = ~incomplete[rows]
        rows = np.concatenate([rows[keep], grow[r2]])
        order = np.argsort(rows, kind="stable")
        rows, cols = rows[order], np.concatenate([cols[keep], c2])[order]
        d, ok = np.concatenate([d[keep], d2])[order], np.concatenate([ok[keep], ok2])[order]
        kth[grow], k_of[grow] = kth2, wider


def _on_a_line(Xf: np.ndarray, metric: str, admissible: Admissible) -> bool:
    """A scalar distance (one column, so every metric is |x - y|) without per-pair admissibility."""
    return Xf.shape[1] == 1 and metric in ("euclidean", "l1") and admissible is None


def optimal_line_applies(Xf: np.ndarray, Xo: np.ndarray, metric: str, caliper: float, admissible: Admissible,
                         ratio: int, dense_limit: int = 4_000_000, line: bool | None = None) -> bool:
    """Whether pair matching goes to `line_pairs`: a scalar distance, no per-pair admissibility, a fixed ratio
    (enough others for every copy, or 1:1) and a trace-back that fits, and either asked for or too large for
    the dense solver."""
    nf, no = len(Xf), len(Xo)
    ratio = 1 if ratio > 1 and no < nf else ratio           # as optimal_sets
    scalar = _on_a_line(Xf, metric, admissible)
    fixed = ratio == 1 or no >= nf * ratio
    fits = line_cells(nf * ratio, no, caliper) <= MAX_CELLS if nf * ratio <= no else \
        line_cells(no, nf, caliper) <= MAX_CELLS
    return scalar and fixed and fits and (line if line is not None else nf * no * ratio > dense_limit)


def line_applies(Xf: np.ndarray, Xo: np.ndarray, metric: str, caliper: float, admissible: Admissible,
                 dense_limit: int = 4_000_000, line: bool | None = None) -> bool:
    """Whether full matching goes to the exact one-dimensional solver (`line_full`): a scalar distance (one
    column, so every metric is |x - y|), no caliper and no per-pair admissibility (calipers on covariates,
    which break the line's structure), and either asked for (`line=True`) or too large for the dense solver.
    """
    scalar = _on_a_line(Xf, metric, admissible) and not np.isfinite(caliper)
    return scalar and (line if line is not None else len(Xf) * len(Xo) > dense_limit)


def line_full(xf: np.ndarray, xo: np.ndarray):
    """Optimal full matching of points on a line, exactly, in O(n log n): the minimum edge cover of the
    complete (focal, other) graph with costs |x_f - x_o|.

    An edge cover gives every unit a degree d >= 1, and its cost is at least the cost of moving d units of
    "flow" from each focal unit to the others on the line, which is sum_k gap_k |F_k| with F_k the net flow
    across the k-th gap between consecutive units in sorted order (one-dimensional transport). Conversely
    every flow with F_0 = 0, F rising by at least 1 at each focal unit, falling by at least 1 at each other
    unit and ending at 0 is met exactly by the monotone coupling (the i-th unit of focal supply with the i-th
    of demand, in sorted order), whose distinct edges cover every unit. So the minimum edge cover is min sum_k
    gap_k |F_k| over such integer sequences: a convex piecewise-linear dynamic programme, solved by slope
    trick (two heaps of weighted breakpoints; a focal unit takes the prefix minimum and shifts by one, an
    other unit the suffix minimum and shifts back, each gap adds gap |F|), then traced back from F = 0.
    Returns focal positions, other positions and distances of the cover's edges (before `_stars` prunes
    zero-length redundancies) and the objective."""
    import heapq
    import math

    nf, no = len(xf), len(xo)
    x = np.r_[np.asarray(xf, np.float64), np.asarray(xo, np.float64)]
    focal = np.r_[np.ones(nf, bool), np.zeros(no, bool)]
    srt = np.lexsort((np.arange(nf + no), x))
    xs, fs = x[srt], focal[srt]
    n = len(xs)
    gaps = np.diff(xs).tolist()
    INF = math.inf
    left, right = [[0, INF]], [[0, INF]]     # max-heap (negated) / min-heap of [stored position, weight]
    shift, minv = 0, 0.0
    lo, hi = np.empty(n, np.int64), np.empty(n, np.int64)
    big = n + 2

    def add_left(p: int, g: float) -> None:             # + g max(0, p - F)
        nonlocal minv
        while g > 0 and right and right[0][0] + shift < p:
            r, w = right[0][0] + shift, right[0][1]
            t = min(w, g)
            minv += t * (p - r)
            if t >= w:
                heapq.heappop(right)
            else:
                right[0][1] = w - t
            heapq.heappush(left, [-(r - shift), t])
            heapq.heappush(right, [p - shift, t])
            g -= t
        if g > 0:
            heapq.heappush(left, [-(p - shift), g])

    def add_right(p: int, g: float) -> None:            # + g max(0, F - p)
        nonlocal minv
        while g > 0 and left and -left[0][0] + shift > p:
            q, w = -left[0][0] + shift, left[0][1]
            t = min(w, g)
            minv += t * (q - p)
            if t >= w:
                heapq.heappop(left)
            else:
                left[0][1] = w - t
            heapq.heappush(right, [q - shift, t])
            heapq.heappush(left, [-(p - shift), t])
            g -= t
        if g > 0:
            heapq.heappush(right, [p - shift, g])

    for k in range(n):
        if fs[k]:
            right.clear()                               # min over F' <= F - 1
            shift += 1
        else:
            left.clear()                                # min over F' >= F + 1
            shift -= 1
        if k < n - 1 and gaps[k] > 0:
            add_left(0, gaps[k])
            add_right(0, gaps[k])
        lo[k] = -left[0][0] + shift if left else -big
        hi[k] = right[0][0] + shift if right else big
    F = np.zeros(n, np.int64)                           # F[k]: the net flow after unit k; it ends at 0
    for k in range(n - 1, 0, -1):
        F[k - 1] = min(hi[k - 1], F[k] - 1) if fs[k] else max(lo[k - 1], F[k] + 1)
    prev = np.r_[0, F[:-1]]
    degree = np.where(fs, F - prev, prev - F)
    units = srt
    sup = np.repeat(units[fs], degree[fs])              # each focal unit's copies, in sorted order
    dem = np.repeat(units[~fs], degree[~fs]) - nf
    ef, eo = sup, dem
    d = np.abs(xf[ef] - xo[eo]) if len(ef) else np.zeros(0)
    return ef.astype(np.int64), eo.astype(np.int64), d.astype(np.float64), float(np.dot(np.abs(F[:-1]), gaps))


def full_sets(Xf: np.ndarray, Xo: np.ndarray, metric: str = "euclidean", caliper: float = np.inf,
              k: int = 100, admissible: Admissible = None, dense_limit: int = 4_000_000,
              line: bool | None = None):
    """Optimal full matching: the minimum-weight edge cover of the admissible (focal, other) graph, every unit
    with an admissible edge covered. A minimum edge cover is a set of stars, i.e. subclasses of one unit and
    one or more of the other group, of least total distance (Rosenbaum 1991; Hansen 2004's network problem
    without ratio limits). Solved exactly through the classic reduction: with mu(v) each unit's smallest edge,
    a maximum-weight matching on gains mu(u) + mu(v) - d(u, v), completed by every unmatched unit's smallest
    edge. On a scalar distance without calipers, large problems (or `line=True`) go to the exact
    one-dimensional solver `line_full` instead (the same optimum, in O(n log n)). Returns focal positions,
    other positions, distances and a subclass number per edge, and the solver that ran (`dense`, `line`
    or `sparse_knn`)."""
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    nf, no = len(Xf), len(Xo)
    if nf and no and line_applies(Xf, Xo, metric, caliper, admissible, dense_limit, line):
        ef, eo, d, _ = line_full(Xf[:, 0], Xo[:, 0])
        return _stars(ef, eo, lambda f, o: np.abs(Xf[f, 0] - Xo[o, 0]).astype(np.float64), nf, no) + ("line",)
    if nf * no <= dense_limit:
        D, ok = _dense(Xf, Xo, metric, caliper, admissible)
        Dm = np.where(ok, D, np.inf)
        mu_f, mu_o = Dm.min(axis=1, initial=np.inf), Dm.min(axis=0, initial=np.inf)
        gain = np.where(ok, mu_f[:, None] + mu_o[None, :] - D, 0.0)
        # a forced assignment must not displace a gainful one
        gain[~np.isfinite(gain) | (gain < 0)] = 0.0
        r, c = linear_sum_assignment(gain, maximize=True)
        m = gain[r, c] > 0
        arg_f = np.argmin(Dm, axis=1) if no else np.zeros(nf, np.int64)
        arg_o = np.argmin(Dm, axis=0) if nf else np.zeros(no, np.int64)
        return _cover(r[m], c[m], mu_f, mu_o, arg_f, arg_o, lambda f, o: D[f, o]) + ("dense",)
    kk = min(k, no)
    while True:
        rows, cols, d, ok, kth = _knn_edges(Xf, Xo, metric, kk, caliper, admissible)
        rows, cols, d = rows[ok], cols[ok], d[ok]
        mu_f = np.full(nf, np.inf)
        np.minimum.at(mu_f, rows, d)
        # the others' smallest edges come from their own nearest focal units
        o_rows, o_cols, o_d, o_ok, _ = _knn_edges(Xo, Xf, metric, min(kk, nf), caliper,
                                                  None if admissible is None else (lambda a, b: admissible(b,
                                                                                                           a)))
        mu_o = np.full(no, np.inf)
        np.minimum.at(mu_o, o_rows[o_ok], o_d[o_ok])
        bound = mu_f + np.max(mu_o[np.isfinite(mu_o)], initial=0.0)
        complete = (kk >= no) | (kth >= bound) | ~np.isfinite(mu_f)
        if complete.all():
            break
        kk = min(no, 2 * kk)
    gain = mu_f[rows] + mu_o[cols] - d
    pos = gain > 0
    B = float(gain[pos].max()) + 1.0 if pos.any() else 1.0
    R = np.concatenate([rows[pos], np.arange(nf)])
    C = np.concatenate([cols[pos], no + np.arange(nf)])
    V = np.concatenate([B - gain[pos], np.full(nf, B)])
    r, c = min_weight_full_bipartite_matching(csr_matrix((V, (R, C)), shape=(nf, no + nf)))
    real = c < no
    best_f = _argmin_edges(rows, cols, d, nf)
    best_o = _argmin_edges(o_rows[o_ok], o_cols[o_ok], o_d[o_ok], no)
    Xp, Yp = distances.prepare(Xf, metric), distances.prepare(Xo, metric)

    def pair_d(f, o):
        return distances.pair_distances(Xp, Yp, f, o, metric).astype(np.float64)

    return _cover(r[real], c[real], mu_f, mu_o, best_f, best_o, pair_d) + ("sparse_knn",)


def _argmin_edges(rows, cols, d, n):
    """Each row's smallest edge's column (ties: the lower column), -1 without edges."""
    out = np.full(n, -1, np.int64)
    o = np.lexsort((cols, d, rows))
    first = np.r_[True, rows[o][1:] != rows[o][:-1]] if len(o) else np.zeros(0, bool)
    out[rows[o][first]] = cols[o][first]
    return out


def _cover(mf, mo, mu_f, mu_o, arg_f, arg_o, dist):
    """The matching's edges plus each unmatched unit's smallest edge, made a forest of stars, one subclass
    each.

    Without ties a minimum edge cover is a set of stars; with ties (equal scores, distance 0) it may chain
    units. Dropping, longest first, every edge whose two ends are both covered by other edges keeps a cover of
    the same cost (only zero-length edges can be dropped from a minimum cover) and leaves stars, as optmatch's
    subclasses."""
    nf, no = len(mu_f), len(mu_o)
    free_f = np.setdiff1d(np.flatnonzero(np.isfinite(mu_f)), mf)
    free_o = np.setdiff1d(np.flatnonzero(np.isfinite(mu_o)), mo)
    F = np.concatenate([mf, free_f, arg_o[free_o]]).astype(np.int64)
    OT = np.concatenate([mo, arg_f[free_f], free_o]).astype(np.int64)
    return _stars(F, OT, dist, nf, no)


def _stars(F, OT, dist, nf, no):
    """An edge cover (focal F, other OT) made a forest of stars, one subclass each (see `_cover`)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = np.unique(np.stack([F, OT], axis=1), axis=0) if len(F) else np.zeros((0, 2), np.int64)
    F, OT = edges[:, 0], edges[:, 1]
    D = dist(F, OT)
    deg_f, deg_o = np.bincount(F, minlength=nf), np.bincount(OT, minlength=no)
    keep = np.ones(len(F), bool)
    for e in np.lexsort((OT, F, -D)):
        if deg_f[F[e]] > 1 and deg_o[OT[e]] > 1:
            keep[e] = False
            deg_f[F[e]] -= 1
            deg_o[OT[e]] -= 1
    F, OT, D = F[keep], OT[keep], D[keep]
    g = coo_matrix((np.ones(len(F)), (F, nf + OT)), shape=(nf + no, nf + no))
    _, comp = connected_components(g, directed=False)
    _, sub = np.unique(comp[F], return_inverse=True)
    return F, OT, D, sub.astype(np.int64)
