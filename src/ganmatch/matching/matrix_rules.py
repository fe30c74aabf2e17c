"""The reference study's greedy constrained matching (`reference_rules`, semantics 'reference') on its own
released distance matrices, read by memory map: the rules of `reference_rules`' module docstring, pair for
pair, with the costs the paper's `scripts/02_calc_matches.py` used, taken from the files instead of
recomputed:

- cost(control c, treated t) = G[c, t] + penalty * (F[c, t] > threshold) in float64 (G: `dists_pairwise_gan`,
  F: `dists_pairwise_facial`, dlib's same-person threshold 0.6, penalty 1e6); a pair skipped earlier costs
  `skip_cost` instead (the reference's 1e5);
- constant rows (the reference's code for a missing distance): a row of the cost or of the reference matrix R
  (`dists_pairwise_vgg`) whose every value, the diagonal included, equals its first
  (`np.all(d[i] == d[i, 0])`);
- references: among all other photos of each identity, the pair minimising |R[c, r_c] - R[t, r_t]|; a pair
  whose minimum gap is outside `gap` is skipped for that iteration.

One pass over the control rows (in blocks of the memory map) keeps each row's k cheapest treated columns; a
heap over the rows' heads gives the row-major argmin of the reference's loop; a row whose list runs out of
live columns is read again (one row of G and F). RAM: O(rows x k), never a whole matrix.
"""

from __future__ import annotations

import heapq

import numpy as np

from ganmatch.analysis.matrices import BLOCK_BYTES, DistanceMatrix, block_rows, smallest_k
from ganmatch.matching.data import PairRecord
from ganmatch.matching.reference_rules import ReferenceRun, _members, selectable


class _MatrixCosts:
    """Match costs, violations and reference distances read from the three matrices (positions of the analysed
    images), in float64 as the reference computed them."""

    def __init__(
        self, G: DistanceMatrix, F: DistanceMatrix | None, R: DistanceMatrix, threshold: float, penalty: float
    ):
        self.G, self.F, self.R = G, F, R
        self.threshold, self.penalty = float(threshold), float(penalty)

    def cost_rows(self, rows, cols=None) -> np.ndarray:
        c = self.G.rows(rows, cols)
        if self.F is not None:
            c = c + self.penalty * (self.F.rows(rows, cols) > self.threshold)
        return c

    def violates(self, i, j) -> np.ndarray:
        if self.F is None:
            return np.zeros(np.broadcast(np.asarray(i), np.asarray(j)).shape, bool)
        return self.F.pairs(i, j) > self.threshold

    def references(self, members: list[np.ndarray], codes: np.ndarray, c: int, t: int):
        """(control_ref, treated_ref, gap): the reference's argmin over all other photos of each identity."""
        rc = members[codes[c]][members[codes[c]] != c]
        rt = members[codes[t]][members[codes[t]] != t]
        dc = self.R.pairs(np.full(len(rc), c), rc)
        dt = self.R.pairs(np.full(len(rt), t), rt)
        gap = np.abs(dc[:, None] - dt[None, :])
        j = int(np.argmin(gap))
        a, b = divmod(j, len(rt))
        return int(rc[a]), int(rt[b]), float(gap[a, b])


def matrix_reference_pairs(
    G: DistanceMatrix,
    F: DistanceMatrix | None,
    R: DistanceMatrix,
    treated: np.ndarray,
    codes: np.ndarray,
    ref_ok: np.ndarray,
    threshold: float = 0.6,
    penalty: float = 1e6,
    skip_cost: float = 1e5,
    gap: tuple = (1e-2, 1e6),
    n_pairs: int | None = 1200,
    k: int = 100,
    block_bytes: int = BLOCK_BYTES,
) -> ReferenceRun:
    """The reference rules on memory-mapped matrices (module docstring); the same `ReferenceRun` as
    `reference_rules.reference_pairs` (positions index the analysed images)."""
    costs = _MatrixCosts(G, F, R, threshold, penalty)
    n = len(G)
    controls, cols = np.flatnonzero(treated == 0), np.flatnonzero(treated == 1)  # ascending: row-major order
    k = max(1, min(int(k), len(cols)))
    constant = np.zeros(n, bool)
    found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    # one pass over the rows: constant rows (cost and reference), and each control's k cheapest treated
    # columns
    step = block_rows(G.M.shape[1], 8, block_bytes)
    for s in range(0, n, step):
        r = np.arange(s, min(n, s + step))
        C = costs.cost_rows(r)
        constant[r] = np.all(C == C[:, :1], axis=1)
        Rr = R.rows(r)
        constant[r] |= np.all(Rr == Rr[:, :1], axis=1)
        del Rr
        for A in (G, F, R):  # the pages just read leave this process (they stay in the OS page cache)
            if A is not None:
                A.release()
        ctl = np.flatnonzero(treated[r] == 0)
        if len(ctl) and len(cols):
            j, d = smallest_k(C[np.ix_(ctl, cols)], k)
            for a, rr in enumerate(r[ctl]):
                found[int(rr)] = (j[a], d[a])
    sel = selectable(codes, ref_ok, constant)
    rows = controls[sel[controls]]
    run = ReferenceRun(n_selectable=(int(sel[cols].sum()), len(rows)), n_constant=int(constant.sum()))
    limit = np.inf if n_pairs is None else int(n_pairs)
    if len(rows) == 0 or not sel[cols].any() or limit <= 0:
        return run
    members = _members(codes)
    lists = {
        i: [*found[int(p)], 0, k >= len(cols)] for i, p in enumerate(rows)
    }  # columns, costs, pointer, complete
    del found
    row_codes, col_codes = codes[rows], codes[cols]
    id_alive = np.ones(codes.max() + 1, bool)
    row_alive = np.ones(len(rows), bool)
    col_alive = sel[cols].copy()
    skipped: set[tuple[int, int]] = set()

    def head(r: int):
        while True:
            cc, dd, p, complete = lists[r]
            while p < len(cc) and not (col_alive[cc[p]] and (r, int(cc[p])) not in skipped):
                p += 1
            lists[r][2] = p
            if p < len(cc):
                return float(dd[p]), int(cc[p])
            if complete:
                return None
            live = np.flatnonzero(col_alive)  # refill: read the row again, its live unskipped columns
            live = live[[(r, int(c)) not in skipped for c in live]]
            if len(live) == 0:
                return None
            j, d = smallest_k(costs.cost_rows([rows[r]], cols[live]), k)
            lists[r] = [live[j[0]], d[0], 0, k >= len(live)]
            run.n_refills += 1

    heap: list = []

    def push(r: int) -> None:
        h = head(r)
        if h is not None:
            heapq.heappush(heap, (h[0], r, h[1], False))

    for r in range(len(rows)):
        push(r)
    n_rows, n_cols = len(rows), int(col_alive.sum())
    while run.iterations < limit and n_rows and n_cols and heap:
        cost, r, c, repick = heap[0]
        if not row_alive[r] or not col_alive[c]:
            heapq.heappop(heap)
            if row_alive[r] and not repick:
                push(r)
            continue
        if repick:  # a skipped pair back on top: every remaining iteration picks and skips it again
            run.iterations = int(limit) if np.isfinite(limit) else run.iterations + 1
            break
        heapq.heappop(heap)
        run.iterations += 1
        if run.iterations % 4 == 0:   # scattered reads map whole page-cache folios around them: let them go
            for A in (G, F, R):
                if A is not None:
                    A.release()
        ci, ti = int(rows[r]), int(cols[c])
        rc, rt, g = costs.references(members, codes, ci, ti)
        if g > gap[1] or g < gap[0]:
            skipped.add((r, c))
            run.skipped.append((ti, ci, g))
            heapq.heappush(heap, (float(skip_cost), r, c, True))
            push(r)
            continue
        d = float(G.pairs(ci, ti))
        run.pairs.append(PairRecord(treated=ti, control=ci, distance=d, treated_ref=rt, control_ref=rc,
                                    penalised=bool(costs.violates(ci, ti)), reference_gap=g))
        id_alive[codes[ci]] = id_alive[codes[ti]] = False
        row_alive &= id_alive[row_codes]
        col_alive &= id_alive[col_codes]
        n_rows, n_cols = int(row_alive.sum()), int(col_alive.sum())
    return run
