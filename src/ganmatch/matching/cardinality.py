"""Cardinality matching (MatchIt's `method = "cardinality"`): the largest sample whose covariate means are
balanced within tolerances, found exactly as a mixed-integer programme (scipy's HiGHS `milp`).

The programme is MatchIt 4.7.2's (`cardinality_matchit`), term for term: one 0/1 variable per unit and a
continuous size variable; the objective is the (sampling-weighted) number of units kept. For the ATT/ATC with
a finite `ratio` the focal group keeps K units and the other ratio x K, and each covariate's mean difference
between the two kept groups lies within +-tol; with `ratio=None` (MatchIt's `ratio = NA`) every focal unit is
kept and the largest set of others whose means lie within +-tol of the focal means is chosen; for the ATE each
kept group's means lie within +-tol/2 of the whole sample's (with a finite ratio, n_other = ratio x n_focal).
Covariates are in units of the focal group's SD (the ATE: sqrt of the mean of the two groups' variances) when
`std_tols`, as MatchIt.
"""

from __future__ import annotations

import warnings

import numpy as np

from ganmatch.errors import ConfigError, InputDataError

SOLVERS = ("highs",)
# units at 0 and at 1 left free beside the relaxation's fractional ones (`_rounded_relaxation`)
FREED = 300


def _wmean(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (w[:, None] * X).sum(axis=0) / w.sum()


def _wvar(x: np.ndarray, w: np.ndarray) -> float:
    """MatchIt's `wvar`: the weighted variance with the reliability-weights correction (var with n - 1
    unweighted)."""
    w = w / w.sum()
    m = float(np.sum(w * x))
    return float(np.sum(w * (x - m) ** 2) / (1.0 - np.sum(w ** 2)))


def tolerance_scale(X: np.ndarray, treated: np.ndarray, estimand: str, s_weights: np.ndarray | None = None
                    ) -> np.ndarray:
    """The SD each covariate is divided by under `std_tols` (MatchIt): the focal group's weighted SD for the
    ATT/ATC, sqrt((var_treated + var_control) / 2) for the ATE; 1 where that SD is below 1e-10."""
    w = np.ones(len(X)) if s_weights is None else np.asarray(s_weights, np.float64)
    focal = 0 if estimand == "ATC" else 1
    out = np.ones(X.shape[1])
    for j in range(X.shape[1]):
        if estimand == "ATE":
            sd = np.sqrt((_wvar(X[treated == 1, j], w[treated == 1]) + _wvar(X[treated == 0, j],
                                                                             w[treated == 0])) / 2)
        else:
            sd = np.sqrt(_wvar(X[treated == focal, j], w[treated == focal]))
        if np.isfinite(sd) and sd >= 1e-10:
            out[j] = sd
    return out


def _sum_to_n(w: np.ndarray, treated: np.ndarray) -> np.ndarray:
    """MatchIt's `.make_sum_to_n(s.weights, treat)`: each group's weights rescaled to sum to its size."""
    w = np.asarray(w, np.float64).copy()
    for g in (0, 1):
        m = treated == g
        if m.any() and w[m].sum() > 0:
            w[m] = m.sum() * w[m] / w[m].sum()
    return w


def _rounded_relaxation(c, A, lo, hi, bounds, n_int: int, time: float):
    """The LP relaxation (HiGHS), then the integer programme with the 0/1 variables the relaxation set to 0 or
    1 fixed there, except its fractional ones (at most as many as rows) and a spread of FREED at each value:
    if that small programme reaches the relaxation's bound (rounded down where the objective is integral), it
    is an optimum of the whole programme; None otherwise (the caller then branches on everything). Far faster
    than branch and bound's heuristics at 30,000 units."""
    from scipy.optimize import Bounds, milp

    lp = milp(-c, constraints=(A, lo, hi), bounds=bounds, options={"time_limit": time, "disp": False,
                                                                    "presolve": False})
    if lp.x is None or lp.status != 0:
        return None
    z = lp.x[:n_int]
    fixed = np.abs(z - np.round(z)) <= 1e-9
    for value in (0.0, 1.0):        # free a spread of units at each value too, so the few can be traded
        at = np.flatnonzero(fixed & (np.round(z) == value))
        fixed[at[:: max(1, len(at) // FREED)]] = False
    # the sub-problem: free columns, the rest moved right
    free = np.r_[~fixed, np.ones(len(c) - n_int, bool)]
    x = lp.x.copy()
    x[:n_int][fixed] = np.round(z[fixed])
    A = A.tocsc()
    offset = A[:, ~free] @ x[~free]
    sub = milp(-c[free], constraints=(A[:, free], lo - offset, hi - offset),
               integrality=np.r_[np.ones(int((~fixed).sum())), np.zeros(len(c) - n_int)],
               bounds=Bounds(bounds.lb[free], bounds.ub[free]), options={"time_limit": time, "disp": False})
    if sub.x is None or sub.status != 0:
        return None
    x[free] = sub.x
    small = type("Result", (), {})()
    small.x, small.fun, small.status, small.mip_gap = x, -float(c @ x), 0, 0.0
    bound = -lp.fun
    if np.all(c == np.round(c)):
        bound = np.floor(bound + 1e-7)
    if -small.fun < bound - 1e-7 * (1.0 + abs(bound)):
        return None
    small.message = "optimal (the relaxation with its integral variables fixed meets its bound)"
    return small


def cardinality_weights(treated: np.ndarray, X: np.ndarray, estimand: str = "ATT", tols=0.05,
                        ratio: float | None = 1.0, s_weights: np.ndarray | None = None, time: float = 120.0
                        ) -> tuple[np.ndarray, dict]:
    """One stratum's cardinality matching: (matching weights, solver info). `X` is already scaled (see
    `tolerance_scale`); `tols` a number or one per column. Weights are MatchIt's: the kept units 1, then every
    group other than the smallest rescaled so that its weights sum to the smallest group's (with `ratio=None`:
    the non-focal group to the focal group's)."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_matrix, hstack

    treated = np.asarray(treated, np.int64)
    X = np.asarray(X, np.float64)
    n, p = X.shape
    tol = np.broadcast_to(np.asarray(tols, np.float64), (p,)).astype(np.float64)
    if time <= 0:
        raise ConfigError(f"cardinality: time must be > 0 seconds, got {time}.")
    sw = np.ones(n) if s_weights is None else _sum_to_n(s_weights, treated)
    focal = 0 if estimand == "ATC" else 1
    groups = [0, 1]

    def block(rows: list[np.ndarray], extra: np.ndarray):
        """The constraint rows over the unit variables (dense per row, n long) next to the size variables."""
        A = csr_matrix(np.vstack(rows)) if rows else csr_matrix((0, n))
        return hstack([A, csr_matrix(extra)], format="csr")

    if estimand == "ATE":
        kind = "profile_ate"
        target = _wmean(X, sw)
        rows, ext, lo, hi = [], [], [], []
        for i, g in enumerate(groups):           # n_g = the group's kept weight
            e = np.zeros(2)
            e[i] = -1
            rows.append(sw * (treated == g))
            ext.append(e)
            lo.append(0.0)
            hi.append(0.0)
        for i, g in enumerate(groups):
            gx = ((treated == g) * sw)[:, None] * X
            for j in range(p):
                for sign in (1, -1):             # sum w x - n_g (target +- tol/2) <= 0 / >= 0
                    e = np.zeros(2)
                    e[i] = -(target[j] + sign * tol[j] / 2)
                    rows.append(gx[:, j])
                    ext.append(e)
                    lo.append(-np.inf if sign == 1 else 0.0)
                    hi.append(0.0 if sign == 1 else np.inf)
        if ratio is not None:                    # ratio x n_focal = n_other
            e = np.full(2, -1.0)
            e[groups.index(focal)] = float(ratio)
            rows.append(np.zeros(n))
            ext.append(e)
            lo.append(0.0)
            hi.append(0.0)
        A = block(rows, np.array(ext))
        c = np.r_[sw, 0.0, 0.0]
        integrality = np.r_[np.ones(n), 0, 0]
        bounds = Bounds(np.r_[np.zeros(n), 1.0, 1.0], np.r_[np.ones(n), np.inf, np.inf])
        units = np.arange(n)
    elif ratio is None:
        kind = "profile_att"
        units = np.flatnonzero(treated != focal)
        m = len(units)
        target = _wmean(X[treated == focal], sw[treated == focal])
        Xo, wo = X[units], sw[units]
        rows = [wo] + [wo * Xo[:, j] for j in range(p)] * 2
        ext = np.r_[[-1.0], -(target + tol), -(target - tol)][:, None]
        A = hstack([csr_matrix(np.vstack(rows)), csr_matrix(ext)], format="csr")
        lo = np.r_[0.0, np.full(p, -np.inf), np.zeros(p)]
        hi = np.r_[0.0, np.zeros(p), np.full(p, np.inf)]
        c = np.r_[np.ones(m), 0.0]
        integrality = np.r_[np.ones(m), 0]
        bounds = Bounds(np.zeros(m + 1), np.r_[np.ones(m), np.inf])
    else:
        kind = "cardinality"
        if ratio <= 0:
            raise ConfigError(f"cardinality: ratio must be > 0, got {ratio}.")
        rows, ext = [], []
        for g in groups:                          # kept weight of the focal group = K, of the other = ratio K
            rows.append(sw * (treated == g))
            ext.append(-1.0 if g == focal else -float(ratio))
        lo, hi = [0.0, 0.0], [0.0, 0.0]
        diff = ((treated == focal) - (treated != focal) / float(ratio)) * sw
        for sign in (1, -1):                      # sum_focal w x - sum_other w x / ratio within +-tol K
            for j in range(p):
                rows.append(diff * X[:, j])
                ext.append(-sign * tol[j])
                lo.append(-np.inf if sign == 1 else 0.0)
                hi.append(0.0 if sign == 1 else np.inf)
        A = block(rows, np.array(ext)[:, None])
        c = np.r_[sw, 0.0]
        integrality = np.r_[np.ones(n), 0]
        smallest = min(int((treated == 0).sum()), int((treated == 1).sum()))
        bounds = Bounds(np.zeros(n + 1), np.r_[np.ones(n), float(smallest)])
        units = np.arange(n)
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    cons = LinearConstraint(A, lo, hi)
    res = _rounded_relaxation(c, A, lo, hi, bounds, len(units), float(time))
    if res is None:             # the relaxation's rounding is not provably optimal: branch and bound
        res = milp(-c, constraints=cons, integrality=integrality, bounds=bounds,
                   options={"time_limit": float(time), "disp": False, "presolve": False})
    if res.x is None:
        raise InputDataError(f"cardinality: the solver found no matched sample that meets the tolerances "
                             f"({res.message.strip()}); loosen tols or check the covariates.")
    info = {"solver": "highs", "problem": kind,
            "how": "lp_rounding" if res.message.startswith("optimal (") else
            "branch_and_bound", "status": int(res.status), "optimal": res.status == 0,
            "objective": float(-res.fun), "mip_gap": float(getattr(res, "mip_gap", 0.0) or 0.0)}
    if res.status != 0:
        msg = ("cardinality: the solver stopped before proving its sample the largest "
               f"({res.message.strip()}); "
               "the matched sample meets the tolerances but may not be optimal. Raise time.")
        warnings.warn(msg, stacklevel=3)
        info["warning"] = msg
    w = np.zeros(n)
    if kind == "profile_att":
        w[treated == focal] = 1.0
    w[units] = np.round(res.x[: len(units)]) + 0.0     # + 0.0: no -0.0
    if kind == "profile_att":
        scale_to = [focal]
    else:
        counts = [int((treated == g).sum()) for g in groups]
        scale_to = [groups[int(np.argmin(counts))]]
    ref = w[treated == scale_to[0]].sum()
    for g in groups:
        if g != scale_to[0] and w[treated == g].sum() > 0:
            w[treated == g] *= ref / w[treated == g].sum()
    return w, info
