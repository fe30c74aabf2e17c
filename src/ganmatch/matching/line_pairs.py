"""Optimal pair matching of points on a line (a scalar distance): exact dynamic programmes, compiled.

On a line some optimal matching never crosses (swapping two crossing pairs never costs more, and neither
new pair is longer than the longer old one), so with focal copies and others each sorted, the optimum is an
order-preserving alignment: dp[i][j], the cheapest way to place the first i focal copies among the first j
others, is min(dp[i][j-1], dp[i-1][j-1] + |t_i - c_j|). That is O(n_focal x n_other) simple steps with one
byte per cell kept for the trace-back, against the sparse assignment's repeated k-nearest-neighbour graphs.
With a caliper the programme also lets a focal copy go unmatched, and compares (unmatched count, total
distance) lexicographically: as many matched as possible, then the least distance, as `optimal_sets`.
"""

from __future__ import annotations

import numpy as np

MAX_CELLS = 1_500_000_000          # one byte each for the trace-back; larger problems use the sparse solver


def cells(n_copies: int, n_other: int, caliper: float) -> int:
    """The trace-back's size in bytes: a band of width n_other - n_copies + 1 when every copy is matched, the
    whole grid with a caliper."""
    if np.isfinite(caliper):
        return n_copies * n_other
    return n_copies * max(n_other - n_copies + 1, 0)


def _kernels():
    from numba import njit

    @njit(cache=True, nogil=True)
    def band(t, c):
        """Every copy matched (len(t) <= len(c)): the band j - i in [0, n - m]; returns, per copy, the
        position of its other in `c`."""
        m, n = len(t), len(c)
        w = n - m + 1
        take = np.zeros((m, w), np.uint8)
        prev = np.zeros(w)                # dp[i - 1][i - 1 + jj]
        cur = np.empty(w)
        for i in range(m):
            left = np.inf                 # dp[i][i - 1]: too few others before
            for jj in range(w):
                j = i + jj
                match = prev[jj] + abs(t[i] - c[j])
                if match < left:
                    cur[jj] = match
                    take[i, jj] = 1
                else:
                    cur[jj] = left
                left = cur[jj]
            prev, cur = cur, prev
        out = np.empty(m, np.int64)
        i, jj = m - 1, w - 1
        while i >= 0:
            if take[i, jj]:
                out[i] = i + jj
                i -= 1
            else:
                jj -= 1
        return out

    @njit(cache=True, nogil=True)
    def grid(t, c, caliper):
        """With a caliper: a copy may stay unmatched; (unmatched, distance) compared lexicographically.
        Returns each copy's other in `c`, -1 when unmatched."""
        m, n = len(t), len(c)
        take = np.zeros((m, n), np.uint8)          # 1 matched with j, 2 copy i unmatched, 0 other j unused
        pu = np.zeros(n + 1, np.int64)             # row i - 1, column j + 1 (column 0: no others yet)
        pd = np.zeros(n + 1)
        cu = np.zeros(n + 1, np.int64)
        cd = np.zeros(n + 1)
        for i in range(m):
            cu[0] = pu[0] + 1
            cd[0] = pd[0]
            for j in range(n):
                # copy i unmatched
                bu, bd, how = pu[j + 1] + 1, pd[j + 1], 2
                if cu[j] < bu or (cu[j] == bu and cd[j] <= bd):         # other j unused
                    bu, bd, how = cu[j], cd[j], 0
                d = abs(t[i] - c[j])
                if d <= caliper:
                    mu, md = pu[j], pd[j] + d
                    if mu < bu or (mu == bu and md < bd):
                        bu, bd, how = mu, md, 1
                cu[j + 1] = bu
                cd[j + 1] = bd
                take[i, j] = how
            pu, cu = cu, pu
            pd, cd = cd, pd
        out = np.full(m, -1, np.int64)
        i, j = m - 1, n - 1
        while i >= 0:
            if j < 0:
                i -= 1
                continue
            how = take[i, j]
            if how == 1:
                out[i] = j
                i -= 1
                j -= 1
            elif how == 2:
                i -= 1
            else:
                j -= 1
        return out

    return band, grid


_KERNELS = None


def line_pairs(xf: np.ndarray, xo: np.ndarray, ratio: int = 1, caliper: float = np.inf):
    """Optimal ratio:1 matching without replacement of focal scores `xf` to other scores `xo` by |difference|:
    every focal unit `ratio` others (all of them matched when there are enough others and no caliper; with
    fewer others than copies, as many as possible), least total distance. Returns focal positions, other
    positions and distances."""
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = _kernels()
    band, grid = _KERNELS
    xf, xo = np.asarray(xf, np.float64), np.asarray(xo, np.float64)
    rep = np.repeat(np.arange(len(xf)), ratio)
    sf = rep[np.lexsort((rep, xf[rep]))]                    # focal copies by (score, position)
    so = np.lexsort((np.arange(len(xo)), xo))
    t, c = xf[sf], xo[so]
    if np.isfinite(caliper):
        got = grid(t, c, float(caliper))
        keep = got >= 0
        f, o = sf[keep], so[got[keep]]
    elif len(t) <= len(c):
        f, o = sf, so[band(t, c)]
    else:                                                  # fewer others: every other matched, roles swapped
        got = band(c, t)
        f, o = sf[got], so
    return f.astype(np.int64), o.astype(np.int64), np.abs(xf[f] - xo[o])
