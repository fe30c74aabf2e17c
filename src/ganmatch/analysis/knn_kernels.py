"""Compiled inner loops of the exact kNN search: running candidate lists, re-scoring and selection.

`knn` multiplies blocks of rows with BLAS; what is left per entry of a block is a comparison with the
row's running threshold, and in numpy that loop cost more than the product (several passes and a top-k
per block). Here each row keeps a reservoir (faiss's choice for k >= 100): entries below its threshold
are appended, and a full reservoir is cut back to its `keep` smallest by one in-place selection, whose
largest value becomes the new threshold; an empty one takes the entries below a threshold read off a
sample of its first block. The comparison is one vectorised pass per block row that flags chunks of 8
entries; only flagged chunks are visited. Kernels release the GIL and run in the caller's threads on
disjoint rows; numba compiles them once per install (about 11 s) and loads them from its on-disk cache.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

_JIT = {"nogil": True, "cache": True}


@njit(**_JIT)
def _nth(v, c, n, k):
    """Reorder v[:n] (and c[:n] with it) so that v[:k] holds the k smallest; returns v[k - 1], their
    largest."""
    lo, hi, kk = 0, n - 1, k - 1
    while lo < hi:
        a, b, m = v[lo], v[hi], v[(lo + hi) >> 1]
        pivot = max(min(a, b), min(max(a, b), m))  # median of three
        i, j = lo, hi
        while i <= j:
            while v[i] < pivot:
                i += 1
            while v[j] > pivot:
                j -= 1
            if i <= j:
                v[i], v[j] = v[j], v[i]
                c[i], c[j] = c[j], c[i]
                i += 1
                j -= 1
        if kk <= j:
            hi = j
        elif kk >= i:
            lo = i
        else:
            break
    return v[kk]


@njit(**_JIT)
def _flag_chunks(x, off, t, flags):
    """flags[w] = 1 where a chunk of 8 entries has x + off < t (per entry); 1 for a short tail chunk.
    Returns whether any flag is set. One vectorised pass: hits are rare once thresholds settle."""
    m = x.shape[0]
    full = m // 8
    any_ = 0
    for w in range(full):
        f = 0
        for j in range(w * 8, w * 8 + 8):
            f |= x[j] + off[j] < t[j]
        flags[w] = f
        any_ |= f
    if full * 8 < m:
        flags[full] = 1
        any_ = 1
    return any_


@njit(**_JIT)
def _seed(x, off, c0, me, keep, sv, sc, flags, tv):
    """Entries x + off of a row for an empty reservoir (column c0 + j; j == me left out) into sv/sc; returns
    (how many, threshold). When a threshold t read off a strided sample of 128 leaves at least `keep` entries
    below it, only those are taken and t is returned: every entry left out is >= t, so t is a valid
    reservoir threshold without a selection. Otherwise every entry is taken and t is inf. `tv`: scratch
    (m,)."""
    m = x.shape[0]
    h = 0
    if m >= 8 * keep and m >= 1024:
        step = m // 128
        for q in range(128):
            j = q * step
            sv[q] = x[j] + off[j] if j != me else np.inf
            sc[q] = j
        ts = np.float32(np.nextafter(_nth(sv, sc, 128, min(127, (2 * keep * 128) // m + 1)), np.inf))
        tv[:] = ts
        if _flag_chunks(x, off, tv, flags):
            for w in range(flags.shape[0]):
                if flags[w]:
                    for j in range(w * 8, min(m, w * 8 + 8)):  # branch-free: store, then count if below
                        a = x[j] + off[j]
                        sv[h] = a
                        sc[h] = c0 + j
                        h += (a < ts) & (j != me)
        if h >= keep:
            return h, ts
    h = 0
    for j in range(m):
        sv[h] = x[j] + off[j]
        sc[h] = c0 + j
        h += j != me
    return h, np.float32(np.inf)


@njit(**_JIT)
def merge_rows(g, off, c0, r0, bv, bc, cnt, thr, keep, self0):
    """Fold entries g[i, j] + off[c0 + j] (column c0 + j) into the reservoirs r0 + i.

    An empty reservoir is seeded by `_seed`; a row whose hits would overflow its reservoir is cut back once,
    over its old entries and all its hits. With self0 >= 0 block row i is data row
    self0 + i and its own column is left out.
    """
    m, cap = g.shape[1], bv.shape[1]
    flags = np.zeros((m + 7) // 8, np.uint8)
    sv = np.empty(cap + m, np.float32)  # hits go to sv[cap:], old entries in front of them on a cut
    sc = np.empty(cap + m, np.int32)
    tv = np.empty(m, np.float32)  # the row's threshold for every column: one vectorised comparison
    o = off[c0:c0 + m]
    for i in range(g.shape[0]):
        row = r0 + i
        t = thr[row]
        gi = g[i]
        me = self0 + i - c0 if self0 >= 0 else -1  # the row's own column in this block, if any
        c = cnt[row]
        h = 0
        if c == 0:  # empty: the entries below a threshold taken from a sample of the row, or all of them
            h, ts = _seed(gi, o, c0, me, keep, sv[cap:], sc[cap:], flags, tv)
            if ts < np.inf and h <= cap:
                for q in range(h):
                    bv[row, q] = sv[cap + q]
                    bc[row, q] = sc[cap + q]
                cnt[row] = h
                thr[row] = ts
                continue
        else:
            tv[:] = t
            if _flag_chunks(gi, o, tv, flags):
                for w in range(flags.shape[0]):
                    if flags[w]:
                        for j in range(w * 8, min(m, w * 8 + 8)):
                            a = gi[j] + o[j]
                            if a < t and j != me:
                                sv[cap + h] = a
                                sc[cap + h] = c0 + j
                                h += 1
        if h == 0:
            continue
        if c + h <= cap and c > 0:
            for q in range(h):
                bv[row, c + q] = sv[cap + q]
                bc[row, c + q] = sc[cap + q]
            cnt[row] = c + h
            continue
        s0 = cap - c
        for q in range(c):
            sv[s0 + q] = bv[row, q]
            sc[s0 + q] = bc[row, q]
        n = c + h
        if n > keep:
            thr[row] = _nth(sv[s0:], sc[s0:], n, keep)
            n = keep
        for q in range(n):
            bv[row, q] = sv[s0 + q]
            bc[row, q] = sc[s0 + q]
        cnt[row] = n


@njit(**_JIT)
def merge_cols(g, off, r0, c0, bv, bc, cnt, thr, keep):
    """Fold entries g[i, j] + off[r0 + i] into the reservoirs of the columns' rows c0 + j (the transposed
    block of a symmetric search: row r0 + i is a candidate for row c0 + j)."""
    cap = bv.shape[1]
    w_ = g.shape[1]
    t = thr[c0:c0 + w_].copy()
    flags = np.zeros((w_ + 7) // 8, np.uint8)
    b = np.empty(w_, np.float32)
    for i in range(g.shape[0]):
        b[:] = off[r0 + i]  # the row's offset for every column: one vectorised comparison below
        gi = g[i]
        if not _flag_chunks(gi, b, t, flags):
            continue
        for w in range(flags.shape[0]):
            if flags[w]:
                for j in range(w * 8, min(w_, w * 8 + 8)):
                    a = gi[j] + b[j]
                    if a < t[j]:
                        row = c0 + j
                        k = cnt[row]
                        if k == cap:  # full: cut back to the keep smallest first
                            t[j] = _nth(bv[row], bc[row], k, keep)
                            thr[row] = t[j]
                            k = keep
                            if not a < t[j]:
                                cnt[row] = k
                                continue
                        bv[row, k] = a
                        bc[row, k] = r0 + i
                        cnt[row] = k + 1


@njit(**_JIT)
def finish_rows(r0, r1, bv, bc, cnt, keep, outv, outc):
    """The `keep` smallest entries of rows r0..r1, ascending (inf past a row's count), into outv/outc."""
    for row in range(r0, r1):
        c = cnt[row]
        if c > keep:
            _nth(bv[row], bc[row], c, keep)
            c = keep
        order = np.argsort(bv[row, :c])
        for t in range(c):
            outv[row - r0, t] = bv[row, order[t]]
            outc[row - r0, t] = bc[row, order[t]]
        for t in range(c, keep):
            outv[row - r0, t] = np.inf
            outc[row - r0, t] = 0


@njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def pair_dots(X, Y, rows, cols, width, lo, hi, out):
    """out[r, t] = X[rows[r]] . Y[cols[r, t]] in float64 for r in lo..hi, t < width[r]: float32 products are
    exact in float64 and the sum's rounding is bounded for any order, so the reassociated (vectorised) sum is
    safe.

    The pairs are visited grouped by blocks of about 2 MB of Y (a counting sort), so that the gathered
    rows come from the cache rather than from memory: twice as fast at 30,000 x 512.
    """
    d = X.shape[1]
    bs = max(1, (1 << 19) // d)
    nb = (Y.shape[0] + bs - 1) // bs
    C = cols.shape[1]
    start = np.zeros(nb + 1, np.int64)
    for r in range(lo, hi):
        for t in range(min(C, width[r])):
            start[cols[r, t] // bs + 1] += 1
    for b in range(nb):
        start[b + 1] += start[b]
    pr = np.empty(start[nb], np.int32)
    pt = np.empty(start[nb], np.int32)
    for r in range(lo, hi):
        for t in range(min(C, width[r])):
            b = cols[r, t] // bs
            pr[start[b]] = r
            pt[start[b]] = t
            start[b] += 1
    for p in range(pr.shape[0]):
        r, t = pr[p], pt[p]
        x = X[rows[r]]
        y = Y[cols[r, t]]
        s = 0.0
        for q in range(d):
            s += np.float64(x[q]) * y[q]
        out[r, t] = s


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def run_ranges(fn, n: int, threads: int, min_size: int = 64) -> None:
    """fn(lo, hi) over `threads` contiguous ranges of 0..n on a shared pool (the kernels release the GIL);
    in the calling thread when one range is enough. Pools persist: the search calls this per block."""
    threads = max(1, min(threads, n // max(1, min_size)))
    if threads == 1:
        fn(0, n)
        return
    with _POOLS_LOCK:
        pool = _POOLS.get(threads) or _POOLS.setdefault(threads, ThreadPoolExecutor(threads, "ganmatch-knn"))
    cuts = np.linspace(0, n, threads + 1).astype(np.int64)
    jobs = [pool.submit(fn, int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    for job in jobs:
        job.result()


class Reservoirs:
    """Running candidate lists (the `keep` smallest estimates seen) for `n` rows, filled block by block.

    `rows` and `cols` run in the calling thread on a whole block: callers split the work so that a list has
    one writer.
    """

    def __init__(self, n: int, keep: int):
        cap = max(3 * keep, keep + 64)
        self.keep = keep
        self.bv = np.empty((n, cap), np.float32)
        self.bc = np.empty((n, cap), np.int32)
        self.cnt = np.zeros(n, np.int64)
        self.thr = np.full(n, np.inf, np.float32)

    def rows(self, g: np.ndarray, off: np.ndarray, c0: int, r0: int, self0: int = -1) -> None:
        """Entries g[i, j] + off[c0 + j] for reservoirs r0 + i (see `merge_rows`)."""
        merge_rows(g, off, c0, r0, self.bv, self.bc, self.cnt, self.thr, self.keep, self0)

    def cols(self, g: np.ndarray, off: np.ndarray, r0: int, c0: int) -> None:
        """Entries g[i, j] + off[r0 + i] for reservoirs c0 + j (see `merge_cols`)."""
        merge_cols(g, off, r0, c0, self.bv, self.bc, self.cnt, self.thr, self.keep)

    def final(self, r0: int, r1: int, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(values float32, columns int64) of reservoirs r0..r1, `keep` per row, ascending."""
        vals = np.empty((r1 - r0, self.keep), np.float32)
        cols = np.empty((r1 - r0, self.keep), np.int32)
        run_ranges(lambda lo, hi: finish_rows(r0 + lo, r0 + hi, self.bv, self.bc, self.cnt, self.keep,
                                              vals[lo:hi], cols[lo:hi]), r1 - r0, threads)
        return vals, cols.astype(np.int64)


@njit(**_JIT)
def select_rows(dist, cols, k, lo, hi, out_idx, out_dist):
    """The k smallest of each row of dist (with cols) ordered by (distance, column), for rows lo..hi.

    Insertion sort: candidate lists are short and arrive ordered by their estimates, nearly the exact order.
    """
    w = dist.shape[1]
    v = np.empty(w, np.float32)
    c = np.empty(w, np.int64)
    for r in range(lo, hi):
        for q in range(w):
            a, b = dist[r, q], cols[r, q]
            p = q
            while p > 0 and (v[p - 1] > a or (v[p - 1] == a and c[p - 1] > b)):
                v[p] = v[p - 1]
                c[p] = c[p - 1]
                p -= 1
            v[p] = a
            c[p] = b
        out_idx[r, :] = c[:k]
        out_dist[r, :] = v[:k]
