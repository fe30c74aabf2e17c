"""The reference LAPACK/BLAS routines R runs for MatchIt's Mahalanobis transform (Debian's R links the
reference libraries), written out loop for loop for small matrices: `solve` (dgesv: dgetrf2's recursive LU,
dgetrs) and `chol(pivot = TRUE)` (dpstf2, the unblocked pivoted Cholesky dpstrf uses below its block size).
Optimised libraries (OpenBLAS) round differently in the last bits, and those bits decide MatchIt's ties
between candidates at mathematically equal distances (ages 23 and 27 around 25)."""

from __future__ import annotations

import numpy as np


def _getrf2(A: np.ndarray, r0: int, c0: int, m: int, n: int, ipiv: np.ndarray) -> None:
    """dgetrf2 on the block A[r0:r0+m, c0:c0+n] in place; ipiv (0-based, relative to r0) for its columns."""
    if m == 1:
        ipiv[0] = 0
        return
    if n == 1:
        col = A[r0:r0 + m, c0]
        i = int(np.argmax(np.abs(col)))            # idamax: the first largest
        ipiv[0] = i
        if A[r0 + i, c0] != 0:
            if i != 0:
                A[r0, c0], A[r0 + i, c0] = A[r0 + i, c0], A[r0, c0]
            sfmin = np.finfo(float).tiny
            if abs(A[r0, c0]) >= sfmin:
                s = 1.0 / A[r0, c0]
                for k in range(1, m):
                    A[r0 + k, c0] = A[r0 + k, c0] * s
            else:
                for k in range(1, m):
                    A[r0 + k, c0] = A[r0 + k, c0] / A[r0, c0]
        return
    n1 = min(m, n) // 2
    n2 = n - n1
    piv1 = np.zeros(n1, np.int64)
    _getrf2(A, r0, c0, m, n1, piv1)
    for i in range(n1):                              # dlaswp on A12/A22
        p = piv1[i]
        if p != i:
            A[[r0 + i, r0 + p], c0 + n1:c0 + n] = A[[r0 + p, r0 + i], c0 + n1:c0 + n]
    for j in range(c0 + n1, c0 + n):                 # dtrsm L, L, N, U: A12 = L11^-1 A12
        for k in range(n1):
            if A[r0 + k, j] != 0:
                for i in range(k + 1, n1):
                    A[r0 + i, j] -= A[r0 + k, j] * A[r0 + i, c0 + k]
    for j in range(c0 + n1, c0 + n):                 # dgemm N, N: A22 -= A21 A12
        for q in range(n1):
            temp = -A[r0 + q, j]
            for i in range(n1, m):
                A[r0 + i, j] += temp * A[r0 + i, c0 + q]
    piv2 = np.zeros(min(m - n1, n2), np.int64)
    _getrf2(A, r0 + n1, c0 + n1, m - n1, n2, piv2)
    for i in range(len(piv2)):
        ipiv[n1 + i] = piv2[i] + n1
    for i in range(n1, min(m, n)):                   # dlaswp on A21
        p = ipiv[i]
        if p != i:
            A[[r0 + i, r0 + p], c0:c0 + n1] = A[[r0 + p, r0 + i], c0:c0 + n1]
    ipiv[:n1] = piv1


def solve_identity(V: np.ndarray) -> np.ndarray:
    """R's solve(V): dgesv with the identity on the right, as the reference LAPACK computes it."""
    n = len(V)
    A = np.array(V, np.float64)
    ipiv = np.zeros(n, np.int64)
    _getrf2(A, 0, 0, n, n, ipiv)
    B = np.eye(n)
    for i in range(n):                               # dlaswp
        p = ipiv[i]
        if p != i:
            B[[i, p]] = B[[p, i]]
    for j in range(n):                               # dtrsm L, L, N, U
        for k in range(n):
            if B[k, j] != 0:
                for i in range(k + 1, n):
                    B[i, j] -= B[k, j] * A[i, k]
    for j in range(n):                               # dtrsm L, U, N, N
        for k in range(n - 1, -1, -1):
            if B[k, j] != 0:
                B[k, j] = B[k, j] / A[k, k]
                for i in range(k):
                    B[i, j] -= B[k, j] * A[i, k]
    return B


def pivoted_cholesky(S: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """R's chol(S, pivot = TRUE) through dpstf2 (upper, tol -1): the factor R (upper triangular, lower part
    zero), the pivot (0-based) and the rank."""
    n = len(S)
    A = np.array(S, np.float64)
    piv = np.arange(n)
    work = np.zeros(2 * n)
    for i in range(n):
        work[i] = A[i, i]
    pvt = int(np.argmax(work[:n]))
    ajj = A[pvt, pvt]
    if ajj <= 0 or np.isnan(ajj):
        return np.zeros((n, n)), piv, 0
    dstop = n * (np.finfo(float).eps / 2) * ajj       # tol < 0: N DLAMCH('Epsilon') max(diag)
    work[:n] = 0.0
    rank = n
    for j in range(n):
        for i in range(j, n):
            if j > 0:
                work[i] = work[i] + A[j - 1, i] ** 2
            work[n + i] = A[i, i] - work[i]
        if j > 0:
            pvt = j + int(np.argmax(work[n + j:2 * n]))
            ajj = work[n + pvt]
            if ajj <= dstop or np.isnan(ajj):
                A[j, j] = ajj
                rank = j
                break
        if j != pvt:
            A[pvt, pvt] = A[j, j]
            A[:j, [j, pvt]] = A[:j, [pvt, j]]
            if pvt < n - 1:
                A[[j, pvt], pvt + 1:] = A[[pvt, j], pvt + 1:]
            for k in range(pvt - j - 1):               # dswap of A(j, j+1:pvt-1) with A(j+1:pvt-1, pvt)
                a, b = A[j, j + 1 + k], A[j + 1 + k, pvt]
                A[j, j + 1 + k], A[j + 1 + k, pvt] = b, a
            work[j], work[pvt] = work[pvt], work[j]
            piv[j], piv[pvt] = piv[pvt], piv[j]
        ajj = np.sqrt(ajj)
        A[j, j] = ajj
        if j < n - 1:
            for c in range(j + 1, n):                  # dgemv T: A(j, c) -= sum_i A(i, j) A(i, c)
                temp = 0.0
                for i in range(j):
                    temp += A[i, c] * A[i, j]
                A[j, c] = A[j, c] + (-temp)
            s = 1.0 / ajj
            for c in range(j + 1, n):
                A[j, c] = A[j, c] * s
    return np.triu(A), piv, rank
