"""MatchIt's options shared by the methods: estimand (which group is matched to which), common-support
discard, exact strata, calipers on the distance and on covariates, and the weights of matched sets and
subclasses. Semantics follow MatchIt 4.5 (`discard`, `process.caliper`, `weights.matrix`,
`weights.subclass`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ganmatch.errors import ConfigError, InputDataError
from ganmatch.matching.data import MatchData

DISCARDS = ("none", "treated", "control", "both")


def check_estimand(estimand: str, allowed: tuple[str, ...], method: str) -> str:
    if estimand not in allowed:
        raise ConfigError(f"{method}: estimand must be one of {list(allowed)} for this method, got "
                          f"'{estimand}' "
                          "(MatchIt: nearest, greedy and optimal matching estimate the ATT or the ATC).")
    return estimand


def focal_value(estimand: str) -> int:
    """The treatment value of the units that each get matches: 1 for the ATT, 0 for the ATC."""
    return 0 if estimand == "ATC" else 1


def common_support(score: np.ndarray | None, treated: np.ndarray, discard: str) -> np.ndarray:
    """MatchIt's `discard`: units whose scalar distance lies outside the other group's range ("treated":
    treated outside the controls' range, "control": the reverse, "both": outside the overlap)."""
    if discard not in DISCARDS:
        raise ConfigError(f"discard must be one of {list(DISCARDS)}, got '{discard}'.")
    if discard == "none":
        return np.zeros(len(treated), bool)
    if score is None:
        raise ConfigError("discard needs a scalar distance (propensity or score): common support is a range "
                          "of it.")
    s1, s0 = score[treated == 1], score[treated == 0]
    if discard == "both":
        return (score < max(s0.min(), s1.min())) | (score > min(s0.max(), s1.max()))
    if discard == "control":
        return (score < s1.min()) | (score > s1.max())
    return (score < s0.min()) | (score > s0.max())


def strata(data: MatchData, exact: list[str] | None) -> np.ndarray:
    """Codes of the exact strata (one per combination of the `exact` columns' values); all 0 without."""
    if not exact:
        return np.zeros(len(data.ids), np.int64)
    if data.covariates is None or any(c not in data.covariates for c in exact):
        raise ConfigError(f"exact columns {exact} are not all in the attributes table.")
    return pd.factorize(pd.MultiIndex.from_frame(data.covariates[list(exact)].astype(str)))[0].astype(
        np.int64
    )


def score_caliper(
    score: np.ndarray, discarded: np.ndarray, caliper: float | None, std_caliper: bool
) -> float:
    """The caliper on a scalar distance: `caliper` SDs of the score over the kept units (std_caliper), else
    absolute; inf without a caliper."""
    if caliper is None:
        return np.inf
    if caliper < 0:
        raise ConfigError(f"caliper must be >= 0, got {caliper}.")
    return float(caliper) * (float(np.std(score[~discarded], ddof=1)) if std_caliper else 1.0)


class CovariateCaliper:
    """Per-covariate calipers (MatchIt's named `caliper` entries): a pair is admissible only if it differs by
    at most the width on every named covariate; widths are in SDs of the kept units when `std_caliper`."""

    def __init__(self, data: MatchData, widths: dict | None, std_caliper: bool, discarded: np.ndarray):
        self.names = sorted(widths or {})
        if not self.names:
            self.C = None
            return
        if data.covariates is None or any(c not in data.covariates for c in self.names):
            raise ConfigError(
                f"covariate_caliper names {self.names}, not all columns of the attributes table."
            )
        C = data.covariates[self.names].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
        if np.isnan(C).any():
            raise InputDataError(f"covariate_caliper: {self.names} have missing or non-numeric values.")
        binary = [n for j, n in enumerate(self.names) if len(np.unique(C[:, j])) <= 2]
        if binary:
            raise ConfigError(
                f"covariate_caliper: calipers cannot be used with binary variables ({binary}); "
                "use exact instead (as MatchIt)."
            )
        w = np.array([float(widths[n]) for n in self.names])
        if std_caliper:
            w = w * C[~discarded].std(axis=0, ddof=1)
        self.C, self.widths = C, w

    def __bool__(self) -> bool:
        return self.C is not None

    def ok(self, i, j) -> np.ndarray:
        """Admissibility of the pairs (i[k], j[k])."""
        if self.C is None:
            return np.ones(np.broadcast(np.asarray(i), np.asarray(j)).shape, bool)
        return np.all(np.abs(self.C[np.asarray(i)] - self.C[np.asarray(j)]) <= self.widths, axis=-1)


def subclass_weights(subclass: np.ndarray, treated: np.ndarray, estimand: str) -> np.ndarray:
    """Weights of subclasses (MatchIt's `weights.subclass`): for the ATT treated 1 and controls n_treated /
    n_control of their subclass, rescaled to sum to the number of matched controls (ATC the mirror; ATE both
    groups n_total / n_group, each rescaled). `subclass` < 0: unmatched, weight 0."""
    w = np.zeros(len(subclass))
    m = subclass >= 0
    if not m.any():
        return w
    s = subclass[m]
    n_sub = int(s.max()) + 1
    n1 = np.bincount(s[treated[m] == 1], minlength=n_sub).astype(float)
    n0 = np.bincount(s[treated[m] == 0], minlength=n_sub).astype(float)
    i1, i0 = m & (treated == 1), m & (treated == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        if estimand == "ATT":
            w[i1], w[i0] = 1.0, (n1 / n0)[subclass[i0]]
            w[i0] *= i0.sum() / w[i0].sum()
        elif estimand == "ATC":
            w[i1], w[i0] = (n0 / n1)[subclass[i1]], 1.0
            w[i1] *= i1.sum() / w[i1].sum()
        else:
            w[i1], w[i0] = ((n0 + n1) / n1)[subclass[i1]], ((n0 + n1) / n0)[subclass[i0]]
            w[i1] *= i1.sum() / w[i1].sum()
            w[i0] *= i0.sum() / w[i0].sum()
    return w


def antiexact_codes(data: MatchData, antiexact: list[str] | None) -> np.ndarray | None:
    """Integer codes of the `antiexact` columns (one column each), or None: MatchIt's antiexact, pairs must
    differ on every one of them."""
    if not antiexact:
        return None
    if data.covariates is None or any(c not in data.covariates for c in antiexact):
        raise ConfigError(f"antiexact columns {antiexact} are not all in the attributes table.")
    return np.column_stack([pd.factorize(data.covariates[c].astype(str))[0] for c in antiexact]).astype(
        np.int64
    )


class PairRule:
    """Which (focal, other) pairs may be matched, beyond the distance's caliper: per-covariate calipers,
    MatchIt's antiexact columns (the two units must differ on each), and a caliper on a scalar score when
    matching on other rows (MatchIt's caliper on the propensity score with `mahvars`). Positions are rows of
    the data."""

    def __init__(
        self,
        n: int,
        covcal: CovariateCaliper | None = None,
        antiexact: np.ndarray | None = None,
        score: np.ndarray | None = None,
        score_caliper: float = np.inf,
    ):
        self.covcal = covcal if covcal else None
        self.antiexact = antiexact
        self.score = (
            None if score is None or not np.isfinite(score_caliper) else np.asarray(score, np.float64)
        )
        self.score_caliper = float(score_caliper)
        self.C = self.covcal.C if self.covcal else np.zeros((n, 0))
        self.widths = np.asarray(self.covcal.widths, np.float64) if self.covcal else np.zeros(0)
        self.A = antiexact if antiexact is not None else np.zeros((n, 0), np.int64)
        self.sc = self.score if self.score is not None else np.zeros(n)

    def __bool__(self) -> bool:
        return self.covcal is not None or self.antiexact is not None or self.score is not None

    def ok(self, i, j) -> np.ndarray:
        i, j = np.asarray(i), np.asarray(j)
        out = np.ones(np.broadcast(i, j).shape, bool)
        if self.covcal is not None:
            out &= self.covcal.ok(i, j)
        if self.antiexact is not None:
            out &= np.all(self.antiexact[i] != self.antiexact[j], axis=-1)
        if self.score is not None:
            out &= np.abs(self.score[i] - self.score[j]) <= self.score_caliper
        return out
