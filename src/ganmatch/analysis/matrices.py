"""Precomputed n x n distance matrices (the reference study's released dists_pairwise_*.npy), read by memory
map in row blocks: never whole into RAM (a 30k x 30k float64 matrix is 7.2 GB), one block of rows at a time.

`DistanceMatrix` is a matrix restricted to the analysed images (their matrix rows `pos`, in the order of the
images), so that a matcher can hold it where it would hold an embedding; `matrix_knn` and
`matrix_neighbour_table` are the kNN stage's exact neighbours read from such a matrix.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator

import numpy as np
import pandas as pd

from ganmatch.errors import InputDataError

BLOCK_BYTES = 64 << 20
"""Bytes of matrix rows read per block (64 MB): 550 rows of a 30k float32 matrix."""


def open_matrix(path: str | os.PathLike, n: int | None = None) -> np.ndarray:
    """The `.npy` distance matrix at `path`, memory-mapped read-only (np.load(mmap_mode='r'); no pickles),
    checked to be a square float matrix (of side `n` when given). Errors name the file and the fix."""
    try:
        M = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputDataError(
            f"{path}: not a readable .npy distance matrix ({err}); put the released file there "
            "again (docs/downloads.md, 'The reference study's cached outputs')."
        ) from None
    if M.ndim != 2 or M.shape[0] != M.shape[1] or M.dtype.kind != "f":
        raise InputDataError(
            f"{path}: a distance matrix must be a square float array, got shape {M.shape} and "
            f"dtype {M.dtype}."
        )
    if n is not None and M.shape[0] != n:
        raise InputDataError(
            f"{path}: {M.shape[0]} x {M.shape[1]} distances for {n} images of the annotations "
            "table; the matrix and the annotations must come from the same release (one row per "
            "CelebA-HQ image, in idx order)."
        )
    return M


def block_rows(n_cols: int, itemsize: int, block_bytes: int = BLOCK_BYTES) -> int:
    """Rows per block so that one block of `n_cols` columns takes about `block_bytes`."""
    return max(1, int(block_bytes // max(1, n_cols * itemsize)))


class DistanceMatrix:
    """A memory-mapped distance matrix seen through the analysed images: row/column i is matrix row pos[i].

    Rows are read on demand (`rows`, `block`, `pairs`), so only the requested rows ever enter RAM."""

    def __init__(self, M: np.ndarray, pos: np.ndarray, name: str = "matrix", path: str = ""):
        self.M, self.name, self.path = M, name, str(path)
        self.pos = np.asarray(pos, np.int64)
        if len(self.pos) and (self.pos.min() < 0 or self.pos.max() >= M.shape[0]):
            raise InputDataError(
                f"{self.path or name}: image rows {self.pos.min()}-{self.pos.max()} outside the "
                f"matrix's {M.shape[0]} rows."
            )
        self.ascending = bool(np.all(np.diff(self.pos) > 0))

    def __len__(self) -> int:
        return len(self.pos)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.pos), len(self.pos))

    def rows(self, i, cols=None) -> np.ndarray:
        """Distances of rows `i` (positions) to columns `cols` (positions; all when None), float64."""
        i = np.atleast_1d(np.asarray(i, np.int64))
        raw = self.M[self.pos[i]]  # reads only these rows of the file
        out = raw[:, self.pos] if cols is None else raw[:, self.pos[np.asarray(cols, np.int64)]]
        out = np.asarray(out, np.float64)
        if np.isnan(out).any():
            r = int(i[np.flatnonzero(np.isnan(out).any(axis=1))[0]])
            raise InputDataError(
                f"{self.path or self.name}: row {int(self.pos[r])} holds NaN distances; the "
                "released matrices code a missing distance as a constant row, not NaN. Check the "
                "file (its checksum) or put it there again."
            )
        return out

    def release(self) -> None:
        """Drop the file pages this process has mapped (they stay in the OS page cache): the rows read so far
        then no longer count in its resident memory, so a pass over a 7 GB matrix keeps RSS at one block."""
        mm = getattr(self.M, "_mmap", None)
        if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            try:
                mm.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError):
                pass

    def pairs(self, i, j) -> np.ndarray:
        """Distances of the pairs (i[k], j[k]) (positions), float64."""
        i, j = np.asarray(i, np.int64), np.asarray(j, np.int64)
        if i.size == 0:
            return np.zeros(np.broadcast(i, j).shape)
        return np.asarray(self.M[self.pos[i], self.pos[j]], np.float64)

    def blocks(
        self, rows: np.ndarray | None = None, block_bytes: int = BLOCK_BYTES
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(row positions, their distances to every position) in blocks of about `block_bytes` of the file."""
        rows = np.arange(len(self.pos)) if rows is None else np.asarray(rows, np.int64)
        step = block_rows(self.M.shape[1], self.M.dtype.itemsize, block_bytes)
        for s in range(0, len(rows), step):
            r = rows[s : s + step]
            block = self.rows(r)
            self.release()
            yield r, block


def smallest_k(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the columns of the k smallest values and the values, ordered by (value, column): exact, ties
    to the lower column, whatever k (inf entries sort last)."""
    n_rows, n_cols = values.shape
    k = min(k, n_cols)
    if k == 0:
        return np.zeros((n_rows, 0), np.int64), np.zeros((n_rows, 0))
    ap = np.argpartition(values, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(values, ap, axis=1)
    kth = vals.max(axis=1)
    # rows where another column ties the k-th value may have had it swapped for a lower column: redo them
    tied = np.flatnonzero((values <= kth[:, None]).sum(axis=1) > k)
    o = np.lexsort((ap, vals), axis=1)
    idx, out = np.take_along_axis(ap, o, axis=1), np.take_along_axis(vals, o, axis=1)
    for r in tied:
        cand = np.flatnonzero(values[r] <= kth[r])
        o = np.lexsort((cand, values[r, cand]))[:k]
        idx[r], out[r] = cand[o], values[r, cand[o]]
    return idx.astype(np.int64), out


def matrix_knn(
    D: DistanceMatrix,
    k: int,
    rows: np.ndarray | None = None,
    cols: np.ndarray | None = None,
    exclude_self: bool = True,
    block_bytes: int = BLOCK_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest `cols` (positions; all when None) of each of `rows`, read block by block from the map:
    (neighbour positions, distances), ties to the lower position; a row's own column is left out."""
    rows = np.arange(len(D)) if rows is None else np.asarray(rows, np.int64)
    cols = np.arange(len(D)) if cols is None else np.asarray(cols, np.int64)
    kk = min(k, len(cols) - (1 if exclude_self and np.isin(rows, cols).any() else 0))
    idx = np.zeros((len(rows), max(kk, 0)), np.int64)
    dist = np.zeros((len(rows), max(kk, 0)))
    if kk <= 0:
        return idx, dist
    where = pd.Series(np.arange(len(cols)), index=cols)
    done = 0
    for r, block in D.blocks(rows, block_bytes):
        sub = block[:, cols]
        if exclude_self:
            own = where.reindex(r).to_numpy()
            hit = ~np.isnan(own)
            sub[np.flatnonzero(hit), own[hit].astype(np.int64)] = np.inf
        j, d = smallest_k(sub, kk)
        idx[done : done + len(r)], dist[done : done + len(r)] = cols[j], d
        done += len(r)
    return idx, dist


def matrix_neighbour_table(
    ids, D: DistanceMatrix, k: int, treated: np.ndarray | None = None, block_bytes: int = BLOCK_BYTES
) -> pd.DataFrame:
    """The neighbours table (`ganmatch.analysis.neighbours.neighbour_table`'s columns: query, neighbour,
    distance float32, rank, scope all/cross) of a precomputed matrix instead of an embedding, in one pass
    over its rows."""
    ids = np.asarray(ids).astype(str)
    n = len(ids)
    if n != len(D):
        raise InputDataError(f"matrix_neighbour_table: {n} ids for {len(D)} matrix rows.")
    t = None if treated is None else np.asarray(treated).astype(np.int8)
    k_all = min(k, n - 1)
    parts: dict[str, list] = {"all": [], "cross": []}
    for r, block in D.blocks(block_bytes=block_bytes):
        block[np.arange(len(r)), r] = np.inf  # self
        if k_all > 0:
            j, d = smallest_k(block, k_all)
            parts["all"].append((r, j, d))
        if t is None:
            continue
        for g in (1, 0):
            q = np.flatnonzero(t[r] == g)
            c = np.flatnonzero(t != g)
            if len(q) and len(c):
                j, d = smallest_k(block[np.ix_(q, c)], k)
                parts["cross"].append((r[q], c[j], d))

    def table(chunks, scope):
        if not chunks:
            return pd.DataFrame(
                {
                    "query": [],
                    "neighbour": [],
                    "distance": np.zeros(0, np.float32),
                    "rank": np.zeros(0, np.int32),
                    "scope": scope,
                }
            )
        q = np.concatenate([c[0] for c in chunks])
        o = np.argsort(q, kind="stable")
        idx = np.concatenate([c[1] for c in chunks])[o]
        dist = np.concatenate([c[2] for c in chunks])[o]
        kk = idx.shape[1]
        return pd.DataFrame(
            {
                "query": np.repeat(ids[q[o]], kk),
                "neighbour": ids[idx.ravel()],
                "distance": dist.ravel().astype(np.float32),
                "rank": np.tile(np.arange(1, kk + 1, dtype=np.int32), len(q)),
                "scope": scope,
            }
        )

    out = [table(parts["all"], "all")]
    if t is not None:
        cross = table(parts["cross"], "cross")
        # the embedding table lists the treated queries' cross rows first, then the controls'
        order = np.argsort(-t[pd.Index(ids).get_indexer(cross["query"])], kind="stable")
        out.append(cross.iloc[order])
    return pd.concat(out, ignore_index=True)


def matrix_constrained_neighbours(
    ids,
    G: DistanceMatrix,
    F: DistanceMatrix,
    threshold: float,
    k: int,
    penalty: float = 1e6,
    block_bytes: int = BLOCK_BYTES,
) -> pd.DataFrame:
    """Each image's k nearest under the paper's matching cost G + penalty [F > threshold] (self excluded;
    ties to the lower position), distances in G: `report.paper_comparison.constrained_neighbours` on released
    matrices."""
    ids = np.asarray(ids).astype(str)
    n = len(ids)
    kk = min(int(k), n - 1)
    parts = []
    for r, block in G.blocks(block_bytes=block_bytes):
        cost = block + penalty * (F.rows(r) > threshold)
        F.release()
        cost[np.arange(len(r)), r] = np.inf
        j, _ = smallest_k(cost, kk)
        parts.append((r, j, np.take_along_axis(block, j, axis=1)))
    q = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    j = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, 0), np.int64)
    d = np.concatenate([p[2] for p in parts]) if parts else np.zeros((0, 0))
    return pd.DataFrame(
        {
            "query": np.repeat(ids[q], kk),
            "neighbour": ids[j.ravel()],
            "distance": d.ravel().astype(np.float32),
            "rank": np.tile(np.arange(1, kk + 1, dtype=np.int32), len(q)),
            "scope": "all",
        }
    )
