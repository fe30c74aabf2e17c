"""Methods that form subclasses instead of pairs: subclassification on a scalar distance (MatchIt's
`method = "subclass"`), exact matching on covariates (`"exact"`) and coarsened exact matching (`"cem"`).
Each returns a subclass code per unit (-1: unmatched); weights follow from the subclasses
(options.subclass_weights)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ganmatch.errors import ConfigError, InputDataError


def quantile_subclasses(score: np.ndarray, treated: np.ndarray, discarded: np.ndarray, subclass=6,
                        min_n: int = 1, estimand: str = "ATT") -> tuple[np.ndarray, np.ndarray]:
    """Subclasses between quantiles of the score of the estimand's group (treated for the ATT, controls for
    the ATC, everyone for the ATE); `subclass` is a number of subclasses or a list of inner quantiles.
    Subclasses lacking a group get units "scooted" from their neighbours until each has `min_n` of each group
    (MatchIt's subclass_scoot); with min_n 0 such subclasses are dropped instead. Returns (codes 0.., -1 for
    discarded or dropped units; the cut points)."""
    if isinstance(subclass, (list, tuple)):
        probs = sorted(float(p) for p in subclass)
        if any(p < 0 or p > 1 for p in probs):
            raise ConfigError("subclass: a list of quantiles must lie between 0 and 1.")
        probs = ([0.0] if probs[0] != 0 else []) + probs + ([1.0] if probs[-1] != 1 else [])
    else:
        if int(subclass) < 2:
            raise ConfigError(f"subclass must be at least 2 subclasses, got {subclass}.")
        probs = list(np.linspace(0, 1, int(subclass) + 1))
    n_sub = len(probs) - 1
    ref = {"ATT": score[treated == 1], "ATC": score[treated == 0]}.get(estimand, score)
    cuts = np.quantile(ref, probs)                      # R's type 7, numpy's default
    code = np.full(len(score), -1, np.int64)
    keep = ~discarded
    # findInterval, all.inside
    code[keep] = np.clip(np.searchsorted(cuts, score[keep], side="right"), 1, n_sub) - 1
    if min_n == 0:
        both = np.intersect1d(code[keep & (treated == 1)], code[keep & (treated == 0)])
        code[keep & ~np.isin(code, both)] = -1
    else:
        k = np.flatnonzero(keep)
        code[k] = scoot(code[k], treated[k], score[k], n_sub, min_n)
    used = np.unique(code[code >= 0])
    code[code >= 0] = np.searchsorted(used, code[code >= 0])
    return code, cuts


def scoot(code: np.ndarray, treated: np.ndarray, x: np.ndarray, n_sub: int, min_n: int) -> np.ndarray:
    """Give every subclass `min_n` units of each group by moving the nearest units from neighbouring
    subclasses:
    an empty subclass takes, from the closest non-empty subclass on the side with more units to spare
    (weighted by closeness), its unit whose score is nearest the gap (MatchIt 4.5's subclass_scoot)."""
    code = code.copy()
    present = np.unique(code)
    code = np.searchsorted(present, code)           # renumber the occupied subclasses 0..n-1
    n_sub = len(present)
    for g in (1, 0):
        if (treated == g).sum() < n_sub * min_n:
            raise InputDataError(f"subclass: not enough {'treated' if g else 'control'} units to put {min_n} "
                                 f"in each of {n_sub} subclasses; use fewer subclasses.")
    for g in (1, 0):
        members = treated == g
        if members.sum() == n_sub:
            code[members] = np.arange(n_sub)
    counts = {g: np.bincount(code[treated == g], minlength=n_sub) for g in (1, 0)}
    if all((c >= min_n).all() for c in counts.values()):
        return code
    for g in (1, 0):
        tab = counts[g]
        for _ in range(min_n):
            while (tab == 0).any():
                z = int(np.flatnonzero(tab == 0)[0])
                left = np.arange(z)
                right = np.arange(z + 1, n_sub)
                spare_l = np.sum(np.clip(tab[left] - 1, 0, None) / np.abs(z - left)) if len(left) else 0.0
                spare_r = np.sum(np.clip(tab[right] - 1, 0, None) / np.abs(z - right)) if len(right) else 0.0
                if z == n_sub - 1 or (z != 0 and spare_l >= spare_r):
                    src = int(left[tab[left] > 0].max())
                    cand = np.flatnonzero((treated == g) & (code == src))
                    move = cand[np.flatnonzero(x[cand] == x[cand].max())[0]]
                else:
                    src = int(right[tab[right] > 0].min())
                    cand = np.flatnonzero((treated == g) & (code == src))
                    move = cand[np.flatnonzero(x[cand] == x[cand].min())[0]]
                code[move] = z
                tab[z] = 1
                tab[src] -= 1
            tab -= 1
    return code


def exact_subclasses(covariates: pd.DataFrame, treated: np.ndarray) -> np.ndarray:
    """One subclass per combination of the covariates' values that occurs in both groups (-1: the rest),
    numbered in order of first appearance. Numeric columns compare by value, others by their text."""
    key = np.zeros(len(covariates), np.int64)
    radix = 1
    for col in covariates.columns:
        x = covariates[col]
        numeric = pd.api.types.is_numeric_dtype(x) or pd.api.types.is_bool_dtype(x)
        codes, uniques = pd.factorize(x if numeric else x.astype(str), use_na_sentinel=False)
        if radix * max(len(uniques), 1) >= 2**62:                       # too many cells: renumber first
            key = pd.factorize(key)[0].astype(np.int64)
            radix = int(key.max()) + 1 if len(key) else 1
        key = key * max(len(uniques), 1) + codes
        radix *= max(len(uniques), 1)
    key = pd.factorize(key)[0]                          # 0.. in order of first appearance
    n_keys = int(key.max()) + 1 if len(key) else 0
    both = (np.bincount(key[treated == 1], minlength=n_keys) > 0) & \
        (np.bincount(key[treated == 0], minlength=n_keys) > 0)
    if not both.any():
        raise InputDataError("exact: no combination of the covariates' values occurs in both groups.")
    renumber = np.full(n_keys, -1, np.int64)
    renumber[both] = np.arange(int(both.sum()))
    return renumber[key]


def coarsen(x: np.ndarray, cut) -> np.ndarray:
    """Bin a numeric column as MatchIt's cem: a rule ("sturges", "fd", "scott"), "q<n>" (n quantile bins), a
    number of equal-width bins between the extremes (outer edges open), or explicit cut points; 0 leaves the
    column as it is (exact) and 1 drops it."""
    n = len(x)
    if isinstance(cut, str):
        if cut.startswith("q") and cut[1:].isdigit():
            q = int(cut[1:])
            edges = np.quantile(x, np.arange(1, q) / q)
            return np.searchsorted(np.r_[-np.inf, np.unique(edges), np.inf], x, side="right")
        iqr = np.subtract(*np.percentile(x, [75, 25]))
        span = np.ptp(x)
        rules = {"sturges": lambda: int(np.ceil(np.log2(n) + 1)),
                 "fd": lambda: int(np.ceil(span / (2 * iqr * n ** (-1 / 3)))) if iqr > 0 and span > 0 else 1,
                 "scott": lambda: int(np.ceil(span / (3.5 * np.std(x, ddof=1) * n ** (-1 / 3))))
                 if span > 0 else 1}
        if cut not in rules:
            raise ConfigError(f"cem: cutpoints '{cut}' is not sturges, fd, scott or q<n>.")
        cut = rules[cut]()
    if isinstance(cut, (int, float)) and not isinstance(cut, bool):
        if cut == 0:
            return pd.factorize(x)[0]
        bins = int(cut)
        edges = np.linspace(x.min(), x.max(), bins + 1)
        edges[0], edges[-1] = -np.inf, np.inf
        return np.searchsorted(edges, x, side="right")
    return np.searchsorted(np.r_[-np.inf, np.unique(np.asarray(cut, float)), np.inf], x, side="right")


def cem_subclasses(covariates: pd.DataFrame, treated: np.ndarray,
                   cutpoints: dict | None = None) -> np.ndarray:
    """Coarsened exact matching: numeric columns binned (`coarsen`, default Sturges), then exact matching on
    the bins (MatchIt's cem without k2k)."""
    cutpoints = cutpoints or {}
    unknown = sorted(set(cutpoints) - set(covariates.columns))
    if unknown:
        raise ConfigError(f"cem: cutpoints name {unknown}, which are not among the method's covariates.")
    binned = {}
    for col in covariates.columns:
        x = pd.to_numeric(covariates[col], errors="coerce").to_numpy(np.float64)
        cut = cutpoints.get(col, "sturges")
        if np.isnan(x).any():
            raise InputDataError(f"cem: covariate '{col}' has missing or non-numeric values.")
        if cut == 1:
            continue
        binned[col] = coarsen(x, cut)
    if not binned:
        raise ConfigError("cem: every covariate was dropped (cutpoints 1); keep at least one.")
    return exact_subclasses(pd.DataFrame(binned), treated)
