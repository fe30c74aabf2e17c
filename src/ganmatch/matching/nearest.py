"""Nearest-neighbour matching in an order (MatchIt's `method = "nearest"`): focal units, in `m_order`, each
take their closest available unit of the other group; `ratio` controls each, in rounds (every focal unit's
first match, then every second, as MatchIt) without replacement, or all at once with replacement."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ganmatch.errors import ConfigError
from ganmatch.matching.greedy import CrossLists

ORDERS = ("largest", "smallest", "random", "data", "closest", "farthest", "reference")


class DistanceOrder:
    """The order of MatchIt's m.order = "farthest" (or, with `closest`, "closest") for `n` focal units:
    decided while matching (`_distance_order_rounds`)."""

    def __init__(self, n: int, closest: bool = False):
        self.n, self.closest = n, closest


def focal_order(m_order: str, n: int, score_f: np.ndarray | None, random_state: int | None) -> np.ndarray:
    """Positions 0..n_f-1 in the order focal units pick: by score (largest/smallest first, ties in data
    order), a seeded random permutation, data order, or "reference" (numpy's legacy seeded permutation, the
    reference study's propensity matching)."""
    if m_order in ("largest", "smallest"):
        if score_f is None:
            raise ConfigError(f"m_order '{m_order}' needs a scalar distance (propensity or score).")
        return np.lexsort((np.arange(n), -score_f if m_order == "largest" else score_f))
    if m_order == "random":
        return np.random.default_rng(random_state).permutation(n)
    if m_order == "reference":
        return np.random.RandomState(random_state).permutation(n)
    if m_order == "data":
        return np.arange(n)
    if m_order in ("farthest", "closest"):
        return DistanceOrder(n, closest=m_order == "closest")
    raise ConfigError(f"m_order must be one of {list(ORDERS)}, got '{m_order}'.")


def line_sets(score_f: np.ndarray, score_o: np.ndarray, order: np.ndarray, ratio: int, replace: bool,
              caliper: float, accept: Callable[[int, int], bool] | None = None,
              idx_f: np.ndarray | None = None, idx_o: np.ndarray | None = None,
              place: np.ndarray | None = None):
    """Nearest neighbour on a scalar score. Each focal unit (in `order`) takes the closest available
    admissible unit by |score difference| within `caliper`. Ties as MatchIt's outward scan over the units
    sorted by (score, index): equal differences go to the lower score, equal scores to the one met first (on
    the lower side the higher index, on the upper side the lower). Without replacement used units are skipped
    through path-compressed left/right pointers. `idx_f`, `idx_o` (the units' rows in the data) place units of
    equal score as MatchIt's sort does, the focal unit included: an equal-score unit before it in the data
    lies on its lower side; a tie between the two sides goes to the unit fewer places away among all the units
    sorted (`place`: each data row's rank by (score, row) among all units of MatchIt's call, which spans every
    exact stratum; MatchIt's scan meets that unit first), the lower side at equal places. Returns focal
    positions, other positions and distances in matching order."""
    idx_o = np.arange(len(score_o)) if idx_o is None else np.asarray(idx_o)
    increasing = len(idx_o) < 2 or bool(np.all(idx_o[1:] > idx_o[:-1]))
    srt = np.argsort(score_o, kind="stable") if increasing else np.lexsort((idx_o, score_o))
    vals = score_o[srt]
    ids = idx_o[srt]
    nc = len(vals)
    if idx_f is not None:                 # every unit's place among all units sorted by (score, row)
        idx_f = np.asarray(idx_f)
        if place is None:
            allv, alli = np.r_[score_f, score_o], np.r_[idx_f, idx_o]
            place = np.zeros(int(alli.max()) + 1, np.int64)
            place[alli[np.lexsort((alli, allv))]] = np.arange(len(allv))
        place_f, place_o = place[idx_f], place[ids]
    left, right = np.arange(nc) - 1, np.arange(nc) + 1
    live = np.ones(nc, bool)

    def find(ptr: np.ndarray, i: int) -> int:
        path = []
        while 0 <= i < nc and not live[i]:
            path.append(i)
            i = int(ptr[i])
        ptr[path] = i
        return i

    def several(t: int, m: int) -> list[tuple[int, float]]:
        """With replacement, `m` at once as MatchIt's find_control_vec: outwards alternately, each side
        keeping up to m admissible units (a side stops past the caliper or once m kept units are strictly
        closer), then the m closest by C++'s partial_sort (`_heap_select`), whose order among equal distances
        is its own."""
        x, pf = score_f[t], place_f[t]
        pos = int(np.searchsorted(place_o, pf))          # others sorted by place: left of pos lie below
        li, ri = pos - 1, pos
        kept: list[int] = []
        dist: list[float] = []
        stop = [False, False]
        count = [0, 0]
        while not (stop[0] and stop[1]):
            # the next event: the side whose next unit the alternating scan meets first
            if stop[0] or li < 0:
                stop[0] = True
            if stop[1] or ri >= nc:
                stop[1] = True
            if stop[0] and stop[1]:
                break
            if stop[1] or (not stop[0] and 2 * (pf - place_o[li]) - 1 < 2 * (place_o[ri] - pf)):
                side, j = 0, li
                li -= 1
            else:
                side, j = 1, ri
                ri += 1
            d = abs(x - vals[j])
            if d > caliper:
                stop[side] = True
                continue
            if len(kept) >= m and sum(1 for e in dist if e < d) >= m:
                stop[side] = True
                continue
            if accept is not None and not accept(int(t), int(srt[j])):
                continue
            kept.append(j), dist.append(float(d))
            count[side] += 1
            if count[side] == m:
                stop[side] = True
        if len(kept) > m:
            chosen = _heap_select(dist, m)
        else:
            chosen = sorted(range(len(kept)), key=lambda i: dist[i])
        return [(kept[i], dist[i]) for i in chosen]

    def nearest(t: int, m: int, starts=()) -> list[tuple[int, float]]:
        if m > 1 and idx_f is not None:
            return several(t, m)
        x = score_f[t]
        # MatchIt starts its scan outside the focal unit's earlier (or lost) matches
        if idx_f is not None:
            origin_l = min([place_f[t], *(place_o[j] for j in starts)])
            origin_r = max([place_f[t], *(place_o[j] for j in starts)])
        pos = int(np.searchsorted(vals, x))
        if idx_f is not None:
            end = int(np.searchsorted(vals, x, side="right"))
            pos += int(np.searchsorted(ids[pos:end], idx_f[t]))
        lo, hi = find(left, pos - 1), find(right, pos)
        taken = []
        while len(taken) < m and (lo >= 0 or hi < nc):
            dl = x - vals[lo] if lo >= 0 else np.inf
            dh = vals[hi] - x if hi < nc else np.inf
            if dl == dh and idx_f is not None and np.isfinite(dl):
                take_left = origin_l - place_o[lo] <= place_o[hi] - origin_r
            else:
                take_left = dl <= dh
            if take_left:             # equal differences: the unit MatchIt's scan meets first
                j, d, lo = lo, dl, find(left, lo - 1)
            else:
                j, d, hi = hi, dh, find(right, hi + 1)
            if d > caliper:
                break
            if accept is None or accept(int(t), int(srt[j])):
                taken.append((j, float(d)))
        return taken

    if accept is None and idx_f is not None and not replace and not isinstance(order, DistanceOrder):
        # the same scan, compiled: MatchIt's common case (no exact/antiexact rule, without replacement)
        if not _LINE:
            _LINE.append(_line_rounds_kernel())
        f, j, d = _LINE[0](np.asarray(score_f, np.float64), np.asarray(vals, np.float64), ids,
                           idx_f.astype(np.int64), place_f.astype(np.int64), place_o.astype(np.int64),
                           np.asarray(order, np.int64), int(ratio), float(caliper))
        return f, srt[j].astype(np.int64), d
    return _rounds(order, ratio, replace, nearest, lambda j: live.__setitem__(j, False), lambda j: srt[j])


_LINE: list = []


def _line_rounds_kernel():
    """`line_sets`' rounds without replacement and without a per-pair rule, compiled: the same outward scan
    over the others sorted by (score, row), the same ties by place, the same skip pointers."""
    from numba import njit

    @njit(cache=True, nogil=True)
    def find(ptr, live, i, nc):
        root = i
        while 0 <= root < nc and not live[root]:
            root = ptr[root]
        while 0 <= i < nc and not live[i]:           # path compression
            nxt = ptr[i]
            ptr[i] = root
            i = nxt
        return root

    @njit(cache=True, nogil=True)
    def rounds(score_f, vals, ids, idx_f, place_f, place_o, order, ratio, caliper):
        nc = len(vals)
        left = np.arange(nc) - 1
        right = np.arange(nc) + 1
        live = np.ones(nc, np.bool_)
        nmax = 0
        for t in order:
            nmax = max(nmax, t + 1)
        eligible = np.ones(nmax, np.bool_)
        lo_place = place_f.copy()                    # the scan's origin: outside earlier matches
        hi_place = place_f.copy()
        cap = len(order) * ratio
        out_f = np.empty(cap, np.int64)
        out_j = np.empty(cap, np.int64)
        out_d = np.empty(cap)
        n = 0
        for r in range(ratio):
            for t in order:
                if not eligible[t]:
                    continue
                x = score_f[t]
                pos = np.searchsorted(vals, x)
                end = np.searchsorted(vals, x, side="right")
                pos += np.searchsorted(ids[pos:end], idx_f[t])
                lo = find(left, live, pos - 1, nc)
                hi = find(right, live, pos, nc)
                got = -1
                dgot = 0.0
                if lo >= 0 or hi < nc:
                    dl = x - vals[lo] if lo >= 0 else np.inf
                    dh = vals[hi] - x if hi < nc else np.inf
                    if dl == dh and np.isfinite(dl):
                        take_left = lo_place[t] - place_o[lo] <= place_o[hi] - hi_place[t]
                    else:
                        take_left = dl <= dh
                    if take_left:
                        got, dgot = lo, dl
                    else:
                        got, dgot = hi, dh
                    if dgot > caliper:
                        got = -1
                if got < 0:
                    eligible[t] = r > 0
                    continue
                live[got] = False
                lo_place[t] = min(lo_place[t], place_o[got])
                hi_place[t] = max(hi_place[t], place_o[got])
                out_f[n] = t
                out_j[n] = got
                out_d[n] = dgot
                n += 1
        return out_f[:n], out_j[:n], out_d[:n]

    return rounds


def _heap_select(dist: list[float], m: int) -> list[int]:
    """The first m of std::partial_sort(ind, ind + m, ind + n, by dist) as libstdc++ computes it: a max-heap
    of the first m (make_heap), each later one replacing the top when strictly closer (pop_heap), the heap
    sorted last."""
    ind = list(range(len(dist)))

    def less(a: int, b: int) -> bool:
        return dist[a] < dist[b]

    # std::__adjust_heap on ind[first:]
    def adjust(first: int, hole: int, length: int, value: int) -> None:
        top, child = hole, hole
        while child < (length - 1) // 2:
            child = 2 * (child + 1)
            if less(ind[first + child], ind[first + child - 1]):
                child -= 1
            ind[first + hole] = ind[first + child]
            hole = child
        if length % 2 == 0 and child == (length - 2) // 2:
            child = 2 * (child + 1)
            ind[first + hole] = ind[first + child - 1]
            hole = child - 1
        parent = (hole - 1) // 2                                         # std::__push_heap
        while hole > top and less(ind[first + parent], value):
            ind[first + hole] = ind[first + parent]
            hole = parent
            parent = (hole - 1) // 2
        ind[first + hole] = value

    if m >= 2:                                                           # make_heap(ind[:m])
        parent = (m - 2) // 2
        while True:
            adjust(0, parent, m, ind[parent])
            if parent == 0:
                break
            parent -= 1
    for i in range(m, len(ind)):
        if less(ind[i], ind[0]):                                         # __pop_heap(first, middle, i)
            value = ind[i]
            ind[i] = ind[0]
            adjust(0, 0, m, value)
    for last in range(m, 1, -1):                                         # sort_heap(ind[:m])
        value = ind[last - 1]
        ind[last - 1] = ind[0]
        adjust(0, 0, last - 1, value)
    return ind[:m]


def places(score: np.ndarray) -> np.ndarray:
    """Each row's rank by (score, row): its place in MatchIt's sort of all units."""
    out = np.empty(len(score), np.int64)
    out[np.argsort(score, kind="stable")] = np.arange(len(score))           # ties in row order
    return out


def feature_sets(Xf: np.ndarray, Xo: np.ndarray, metric: str, order: np.ndarray, ratio: int, replace: bool,
                 caliper: float, accept: Callable[[int, int], bool] | None = None, k: int = 100,
                 lists: CrossLists | None = None):
    """Nearest neighbour in a feature space: the same rounds as `line_sets`, each focal unit's candidates
    streamed in exact (distance, index) order by `CrossLists`."""
    lists = lists or CrossLists(Xf, Xo, metric, k)
    alive = np.ones(len(Xo), bool)

    def nearest(t: int, m: int, starts=()) -> list[tuple[int, float]]:
        taken = []
        while len(taken) < m:
            h = lists.head(t, alive, accept)
            if h is None or h[0] > caliper:
                break
            taken.append((h[1], h[0]))
            if m > 1:       # with replacement: step past it (nothing is consumed)
                lists.pos[t] += 1
        return taken

    return _rounds(order, ratio, replace, nearest, lambda j: alive.__setitem__(j, False), lambda j: j)


def _distance_order_rounds(n_focal, ratio, nearest, consume, position, closest: bool = False):
    """MatchIt 4.7's m.order = "farthest" (nn_matchC_*_closest with closest = FALSE; `closest`: "closest"), in
    rounds of one match per focal unit: every eligible focal unit's nearest available unit (data order), the
    list ordered by that distance, largest first (smallest for closest; ties in data order); down the list a
    focal unit whose unit is still free takes it; one whose unit was taken finds its next nearest and moves to
    that distance's place in the rest of the list (found by C++'s lower_bound, as MatchIt, even though the
    list's older entries may be out of date); a focal unit without a match is out of later rounds. `nearest`
    may return (unit, distance, key) with the key MatchIt orders by (the squared distance on covariates)."""
    out_f, out_o, out_d = [], [], []
    eligible = np.ones(n_focal, bool)
    used: set[int] = set()
    prev: dict[int, list] = {}
    for _ in range(ratio):
        t_id, c_id, dist, dist_out = [], [], [], []
        for t in range(n_focal):
            if not eligible[t]:
                continue
            got = nearest(t, 1, prev.get(t, ()))
            if not got:
                eligible[t] = False
                continue
            t_id.append(t), c_id.append(got[0][0]), dist.append(got[0][-1]), dist_out.append(got[0][1])
        nf = len(dist)
        heap = sorted(range(nf), key=lambda h: dist[h] if closest else -dist[h])

        def before(a: int, b: int, dist=dist) -> bool:          # MatchIt's comparator
            return dist[a] < dist[b] if closest else dist[a] >= dist[b]

        i = 0
        while i < nf and eligible.any():
            h = heap[i]
            t = t_id[h]
            if not eligible[t]:
                i += 1
                continue
            if c_id[h] in used:
                got = nearest(t, 1, [*prev.get(t, ()), c_id[h]])
                if not got:
                    eligible[t] = False
                    continue
                c_id[h], dist[h], dist_out[h] = got[0][0], got[0][-1], got[0][1]
                first, length = i, nf - i             # std::lower_bound with MatchIt's comparator
                while length > 0:
                    half = length >> 1
                    if before(heap[first + half], h):
                        first, length = first + half + 1, length - half - 1
                    else:
                        length = half
                if first != i:
                    heap.insert(first - 1, heap.pop(i))
                continue
            used.add(c_id[h])
            prev.setdefault(t, []).append(c_id[h])
            consume(c_id[h])
            out_f.append(t), out_o.append(position(c_id[h])), out_d.append(dist_out[h])
            i += 1
    return np.array(out_f, np.int64), np.array(out_o, np.int64), np.array(out_d, np.float64)


def _rounds(order, ratio, replace, nearest, consume, position):
    if isinstance(order, DistanceOrder):
        if not replace:
            return _distance_order_rounds(order.n, ratio, nearest, consume, position, order.closest)
        order = np.arange(order.n)          # with replacement MatchIt matches in data order
    out_f, out_o, out_d = [], [], []
    if replace:
        for t in order:
            for j, d, *_ in nearest(int(t), ratio):
                out_f.append(t), out_o.append(position(j)), out_d.append(d)
    else:
        eligible = np.ones(int(np.max(order)) + 1 if len(order) else 0, bool)
        prev: dict[int, list] = {}
        for r in range(ratio):
            for t in order:
                if not eligible[t]:
                    continue
                got = nearest(int(t), 1, prev.get(int(t), ()))   # later rounds scan from the earlier matches
                if not got:
                    eligible[t] = r > 0      # no first match: out of every later round (MatchIt)
                    continue
                j, d = got[0][:2]
                prev.setdefault(int(t), []).append(j)
                consume(j)
                out_f.append(t), out_o.append(position(j)), out_d.append(d)
    return np.array(out_f, np.int64), np.array(out_o, np.int64), np.array(out_d, np.float64)


# --------------------------------------------------------------- MatchIt's covariate scan (nn_matchC_mahcovs)


def scan_order_column(M: np.ndarray, cal_cols: np.ndarray | None) -> np.ndarray:
    """The column MatchIt's scan sorts units by: the first column of the transformed covariates, unless a
    covariate with a caliper is an affine function of one of them (then the first such column, in column
    order)."""
    if cal_cols is not None and cal_cols.shape[1]:
        for mci in range(M.shape[1]):
            for cci in range(cal_cols.shape[1]):
                if _affine_slope(cal_cols[:, cci], M[:, mci]) != 0.0:
                    return M[:, mci]
    return M[:, 0]


def _affine_slope(x: np.ndarray, y: np.ndarray, tol: float = 1e-9) -> float:
    """MatchIt's get_affine_transformation: a with y = a x + b to within tol, else 0."""
    if len(x) < 2:
        return 0.0
    xd, yd = x - x.mean(), y - y.mean()
    num, den = float(xd @ yd), float(xd @ xd)
    if abs(den) < tol or abs(num) < tol:
        return 0.0
    a = num / den
    b = y.mean() - a * x.mean()
    return a if np.all(np.abs(a * x + b - y) <= tol) else 0.0


def _scan_kernel():
    from numba import njit

    @njit(cache=True, nogil=True)
    def scan(M, mv, srt, pos_of, is_other, eligible, t, ratio, cal2, C, widths, A, sc, sc_cal, out_j, out_d):
        """One focal unit's matches as MatchIt 4.7's find_control_mahcovs: outward from the focal unit's place
        in the units sorted by the scan column, alternately left and right; a side stops once its scan-column
        gap alone exceeds the worst kept distance; a candidate at a distance equal to the kept one replaces it
        (ratio 1) or goes before it (ratio > 1), so the unit met last wins a tie."""
        nu = len(srt)
        ii = pos_of[t]
        iil = ii
        iir = ii
        l_stop = False
        r_stop = False
        left = False
        npm = 0
        d = M.shape[1]
        while not (l_stop and r_stop):
            if l_stop:
                left = False
            elif r_stop:
                left = True
            else:
                left = not left
            if left:
                if iil <= 0:
                    l_stop = True
                    continue
                iil -= 1
                iz = srt[iil]
            else:
                if iir >= nu - 1:
                    r_stop = True
                    continue
                iir += 1
                iz = srt[iir]
            if not eligible[iz] or not is_other[iz]:
                continue
            mvd = abs(mv[t] - mv[iz])
            mvd = mvd * mvd
            if npm == ratio and out_d[npm - 1] < mvd:
                if left:
                    l_stop = True
                else:
                    r_stop = True
                continue
            ok = True
            for c in range(A.shape[1]):
                if A[t, c] == A[iz, c]:
                    ok = False
                    break
            if not ok:
                continue
            if abs(sc[t] - sc[iz]) > sc_cal:
                continue
            for c in range(C.shape[1]):
                if abs(C[t, c] - C[iz, c]) > widths[c]:
                    ok = False
                    break
            if not ok:
                continue
            dist = 0.0
            for j in range(d):
                tmp = M[t, j] - M[iz, j]
                dist += tmp * tmp
            if not np.isfinite(dist) or dist > cal2:
                continue
            if npm == 0:
                out_j[0] = iz
                out_d[0] = dist
                npm = 1
            elif dist > out_d[npm - 1]:
                if npm == ratio:
                    continue
                out_j[npm] = iz
                out_d[npm] = dist
                npm += 1
            elif ratio == 1:
                out_j[0] = iz
                out_d[0] = dist
            else:
                if npm == ratio:
                    npm -= 1
                if dist > out_d[npm - 1]:
                    out_j[npm] = iz
                    out_d[npm] = dist
                    npm += 1
                else:
                    k = 0
                    while out_d[k] < dist:
                        k += 1
                    for q in range(npm, k, -1):
                        out_j[q] = out_j[q - 1]
                        out_d[q] = out_d[q - 1]
                    out_j[k] = iz
                    out_d[k] = dist
                    npm += 1
        return npm

    return scan


_SCAN = []


def covariate_sets(M: np.ndarray, f: np.ndarray, o: np.ndarray, order: np.ndarray, ratio: int, replace: bool,
                   caliper: float, rule=None, mahvars: bool = False):
    """Nearest neighbour on transformed covariates (Mahalanobis, scaled Euclidean, Euclidean rows of
    `distance.matchit_rows`) exactly as MatchIt 4.7's C++ scan, ties included: the units of the call (`f`
    focal and `o` other positions into M, one exact stratum) sorted by the scan column (`scan_order_column`,
    ties in data order); each focal unit in `order` scans outwards from its place (see the kernel). A single
    transformed column is matched as a scalar distance (`line_sets`), as MatchIt does (not with `mahvars`).
    `rule` (`options.PairRule`): per-covariate calipers, antiexact columns, a caliper on the propensity score
    (with `mahvars`). Returns focal positions, other positions and distances in matching order, as
    `line_sets`."""
    units = np.sort(np.r_[f, o])
    local = {int(u): i for i, u in enumerate(units)}
    fl = np.array([local[int(u)] for u in f], np.int64)
    ol = np.array([local[int(u)] for u in o], np.int64)
    Mu = np.ascontiguousarray(M[units], np.float64)
    if rule:
        C, widths, A = np.ascontiguousarray(rule.C[units]), rule.widths, np.ascontiguousarray(rule.A[units])
        sc, sc_cal = np.ascontiguousarray(rule.sc[units]), rule.score_caliper
    else:
        C, widths, A = np.zeros((len(units), 0)), np.zeros(0), np.zeros((len(units), 0), np.int64)
        sc, sc_cal = np.zeros(len(units)), np.inf
    if M.shape[1] == 1 and not mahvars:
        accept = (lambda a, b: bool(rule.ok(f[a], o[b]))) if rule else None
        return line_sets(Mu[fl, 0], Mu[ol, 0], order, ratio, replace, caliper, accept, f, o, places(M[:, 0]))
    mv = scan_order_column(Mu, C if len(widths) else None)    # (calipers on covariates can pick the column)
    srt = np.lexsort((np.arange(len(units)), mv)).astype(np.int64)
    pos_of = np.empty(len(units), np.int64)
    pos_of[srt] = np.arange(len(units))
    is_other = np.zeros(len(units), bool)
    is_other[ol] = True
    other_pos = np.full(len(units), -1, np.int64)
    other_pos[ol] = np.arange(len(ol))
    eligible = np.ones(len(units), bool)
    cal2 = caliper * caliper if np.isfinite(caliper) else np.inf
    if not _SCAN:
        _SCAN.append(_scan_kernel())
    scan = _SCAN[0]
    out_j, out_d = np.empty(ratio + 1, np.int64), np.empty(ratio + 1)

    def nearest(t: int, m: int, starts=()) -> list[tuple[int, float]]:
        n = scan(Mu, mv, srt, pos_of, is_other, eligible, fl[t], m, cal2, C, widths, A, sc, float(sc_cal),
                 out_j, out_d)
        return [(int(other_pos[out_j[i]]), float(np.sqrt(out_d[i])), float(out_d[i])) for i in range(n)]

    def consume(j: int) -> None:
        eligible[ol[j]] = False

    return _rounds(order, ratio, replace, nearest, consume, lambda j: j)
