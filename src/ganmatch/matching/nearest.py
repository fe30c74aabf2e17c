"""Nearest-neighbour matching in an order (MatchIt's `method = "nearest"`): focal units, in `m_order`, each take
their closest available unit of the other group; `ratio` controls each, in rounds (every focal unit's first
match, then every second, as MatchIt) without replacement, or all at once with replacement."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ganmatch.errors import ConfigError
from ganmatch.matching.greedy import CrossLists

ORDERS = ("largest", "smallest", "random", "data", "closest", "reference")


def focal_order(m_order: str, n: int, score_f: np.ndarray | None, random_state: int | None) -> np.ndarray:
    """Positions 0..n_f-1 in the order focal units pick: by score (largest/smallest first, ties in data order),
    a seeded random permutation, data order, or "reference" (numpy's legacy seeded permutation, the reference
    study's propensity matching)."""
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
    raise ConfigError(f"m_order must be one of {list(ORDERS)}, got '{m_order}'.")


def line_sets(score_f: np.ndarray, score_o: np.ndarray, order: np.ndarray, ratio: int, replace: bool,
              caliper: float, accept: Callable[[int, int], bool] | None = None):
    """Nearest neighbour on a scalar score. Each focal unit (in `order`) takes the closest available admissible
    unit by |score difference| within `caliper`. Ties as MatchIt's outward scan over the units sorted by
    (score, index): equal differences go to the lower score, equal scores to the one met first (on the lower
    side the higher index, on the upper side the lower). Without replacement used units are skipped through
    path-compressed left/right pointers. Returns focal positions, other positions and distances in matching order."""
    srt = np.lexsort((np.arange(len(score_o)), score_o))
    vals = score_o[srt]
    nc = len(vals)
    left, right = np.arange(nc) - 1, np.arange(nc) + 1
    live = np.ones(nc, bool)

    def find(ptr: np.ndarray, i: int) -> int:
        path = []
        while 0 <= i < nc and not live[i]:
            path.append(i)
            i = int(ptr[i])
        ptr[path] = i
        return i

    def nearest(t: int, m: int) -> list[tuple[int, float]]:
        x = score_f[t]
        pos = int(np.searchsorted(vals, x))
        lo, hi = find(left, pos - 1), find(right, pos)
        taken = []
        while len(taken) < m and (lo >= 0 or hi < nc):
            dl = x - vals[lo] if lo >= 0 else np.inf
            dh = vals[hi] - x if hi < nc else np.inf
            if dl <= dh:              # equal differences: the lower score first, as MatchIt
                j, d, lo = lo, dl, find(left, lo - 1)
            else:
                j, d, hi = hi, dh, find(right, hi + 1)
            if d > caliper:
                break
            if accept is None or accept(int(t), int(srt[j])):
                taken.append((j, float(d)))
        return taken

    return _rounds(order, ratio, replace, nearest, lambda j: live.__setitem__(j, False), lambda j: srt[j])


def feature_sets(Xf: np.ndarray, Xo: np.ndarray, metric: str, order: np.ndarray, ratio: int, replace: bool,
                 caliper: float, accept: Callable[[int, int], bool] | None = None, k: int = 100,
                 lists: CrossLists | None = None):
    """Nearest neighbour in a feature space: the same rounds as `line_sets`, each focal unit's candidates
    streamed in exact (distance, index) order by `CrossLists`."""
    lists = lists or CrossLists(Xf, Xo, metric, k)
    alive = np.ones(len(Xo), bool)

    def nearest(t: int, m: int) -> list[tuple[int, float]]:
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


def _rounds(order, ratio, replace, nearest, consume, position):
    out_f, out_o, out_d = [], [], []
    if replace:
        for t in order:
            for j, d in nearest(int(t), ratio):
                out_f.append(t), out_o.append(position(j)), out_d.append(d)
    else:
        eligible = np.ones(int(np.max(order)) + 1 if len(order) else 0, bool)
        for r in range(ratio):
            for t in order:
                if not eligible[t]:
                    continue
                got = nearest(int(t), 1)
                if not got:
                    eligible[t] = r > 0      # no first match: out of every later round (MatchIt)
                    continue
                j, d = got[0]
                consume(j)
                out_f.append(t), out_o.append(position(j)), out_d.append(d)
    return np.array(out_f, np.int64), np.array(out_o, np.int64), np.array(out_d, np.float64)
