"""Greedy 1:1 nearest-neighbour matching without replacement, driven by per-treated neighbour streams and a
heap so it scales past a dense distance matrix while returning exactly the dense algorithm's pairs."""

from __future__ import annotations

import heapq
import warnings
from collections.abc import Callable

import numpy as np

from ganmatch.analysis import distances


class CrossLists:
    """Per-treated streams of controls in exact (distance, control index) order, refilled when they run out.

    Streams start as each treated row's k nearest controls (`distances.knn`). When every listed control is
    dead (used, removed or rejected) and the list was truncated, the row is searched again among the live
    controls with twice the length, so a stream always yields exactly what a dense sorted row would.
    """

    def __init__(self, Xt: np.ndarray, Xc: np.ndarray, metric: str, k: int, block_size: int = 2048):
        self.Xt, self.Xc, self.metric = Xt, Xc, metric
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.idx, self.dist = distances.knn(Xt, k, metric, Y=Xc, exclude_self=False,
                                                block_size=block_size)
        self.complete = np.full(len(Xt), self.idx.shape[1] >= len(Xc))
        self.pos = np.zeros(len(Xt), np.int64)
        self.extra: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.n_refills = 0
        self.search: distances.RowSearch | None = None

    def nearest(self) -> np.ndarray:
        """Each treated row's nearest control distance (before any matching)."""
        return self.dist[:, 0].astype(np.float64) if self.dist.shape[1] else np.full(len(self.Xt), np.inf)

    def head(self, t: int, alive: np.ndarray, accept: Callable[[int, int], bool] | None = None,
             bound: float = np.inf):
        """(distance, control) of t's first live control that `accept(t, c)` allows, or None; None also when
        t's list is used up and already reached past `bound` (a caliper): every control beyond it is farther,
        so searching again could only find pairs the caliper refuses."""
        while True:
            cols, dist = self.stream(t)
            p = int(self.pos[t])
            while p < len(cols) and not (alive[cols[p]] and (accept is None or accept(t, int(cols[p])))):
                p += 1
            self.pos[t] = p
            if p < len(cols):
                return float(dist[p]), int(cols[p])
            if self.complete[t] or (len(dist) and float(dist[-1]) > bound):
                return None
            if not self.refill(t, alive):
                return None

    def stream(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """t's current list (controls, distances) in (distance, control) order; `pos[t]` is its cursor."""
        return self.extra.get(t, (self.idx[t], self.dist[t]))

    def refill(self, t: int, alive: np.ndarray) -> bool:
        """Search t's row again among the live controls with twice its list's length; False if none is
        live. One pass over the live controls' rows, prepared once (`distances.RowSearch`)."""
        live = np.flatnonzero(alive)
        self.n_refills += 1
        self.pos[t] = 0
        kk = min(len(live), 2 * max(len(self.stream(t)[0]), 1))
        self.complete[t] = kk >= len(live)
        if kk == 0:
            self.extra[t] = (live, np.zeros(0, np.float32))
            return False
        self.extra[t] = self.search_live(t, live, kk)
        return True

    def search_live(self, t: int, live: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        """t's kk nearest among the `live` controls, as (controls, distances) in (distance, control) order."""
        if self.search is None:
            self.search = distances.RowSearch(self.Xt, self.Xc, self.metric)
        return self.search.nearest(t, live, kk)


def greedy_pairs(Xt: np.ndarray, Xc: np.ndarray, metric: str = "euclidean", caliper: float = np.inf,
                 n_pairs: int | None = None, k: int = 100, lists: CrossLists | None = None,
                 accept: Callable[[int, int], bool] | None = None):
    """Greedy 1:1 matching without replacement: repeatedly take the globally closest unused
    (treated, control) pair, ties broken by (treated index, control index); stop at `caliper` or `n_pairs`.

    Equal to the dense algorithm (argmin of the full matrix, mask row and column, repeat) because each
    heap entry is its treated row's nearest live control when pushed and is re-checked when popped.
    `accept(t, c)` excludes pairs (e.g. per-covariate calipers). Returns treated positions, control positions
    and distances in matching order.
    """
    lists = lists or CrossLists(Xt, Xc, metric, k)
    alive = np.ones(len(Xc), bool)
    heap = []
    for t in range(len(Xt)):
        h = lists.head(t, alive, accept, caliper)
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
            h = lists.head(t, alive, accept, caliper)
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
