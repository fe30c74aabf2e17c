"""Covariate balance before and after matching (MatchIt/cobalt style), and neighbour quality.

The statistic kernels are pure weighted functions of one covariate; `STATS` is the single source of each
statistic's function, label and default threshold, and `balance_table` is a long, tidy table built from it.
Mean differences follow cobalt's `bal.tab`: continuous covariates are standardised, binary ones (two distinct
values, or constant) are raw differences in proportions unless `binary="std"`; the SD in the denominator
(`s_d_denom`: the treated group's for the ATT, the controls' for the ATC, pooled for the ATE, or set
explicitly) is computed in the *unadjusted* sample, so the before/after values share one scale.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ganmatch.errors import InputDataError

Z95 = 1.959963984540054

# cobalt's defaults: the SD of the group the estimand is about; pooled = sqrt((var_t + var_c) / 2)
ESTIMAND_S_D_DENOM = {"ATT": "treated", "ATC": "control", "ATE": "pooled"}
S_D_DENOMS = ("treated", "control", "pooled", "all")
BINARY_DIFFS = ("raw", "std")

# ---------------------------------------------------------------- weighted kernels


def _w(x, weights):
    x = np.asarray(x, np.float64)
    w = np.ones_like(x) if weights is None else np.asarray(weights, np.float64)
    return x, w


def weighted_mean(x, weights=None) -> float:
    """Weighted mean; NaN when the weights sum to 0."""
    x, w = _w(x, weights)
    s = w.sum()
    return float(np.dot(w, x) / s) if s > 0 else np.nan


def weighted_var(x, weights=None) -> float:
    """Unbiased weighted variance with reliability weights: sum w (x - m)^2 / (sum w - sum w^2 / sum w)."""
    x, w = _w(x, weights)
    s = w.sum()
    if s <= 0:
        return np.nan
    m = np.dot(w, x) / s
    denom = s - np.dot(w, w) / s
    return float(np.dot(w, (x - m) ** 2) / denom) if denom > 0 else np.nan


def covariate_var(x, weights=None, binary: bool = False) -> float:
    """cobalt's variance of a covariate: p (1 - p) of the weighted proportion p for a binary (0/1) one, else
    the unbiased weighted variance (`weighted_var`)."""
    if not binary:
        return weighted_var(x, weights)
    p = weighted_mean(x, weights)
    return float(p * (1 - p))


def ess(weights) -> float:
    """Kish effective sample size (sum w)^2 / sum w^2."""
    w = np.asarray(weights, np.float64)
    ss = np.dot(w, w)
    return float(w.sum() ** 2 / ss) if ss > 0 else 0.0


def _split(x, treated, weights):
    x, w = _w(x, weights)
    t = np.asarray(treated).astype(bool)
    return (x[t], w[t]), (x[~t], w[~t])


def is_binary(x) -> bool:
    """cobalt's 'Binary' type: at most two distinct values (a constant covariate counts as binary)."""
    return len(np.unique(np.asarray(x, np.float64))) <= 2


def as_indicator(x) -> np.ndarray:
    """A binary covariate as 0/1: 1 for its larger value (0/1 columns are unchanged), as cobalt's dummies."""
    x = np.asarray(x, np.float64)
    values = np.unique(x)
    return (
        (x == values[-1]).astype(np.float64)
        if len(values) == 2 and not np.isin(values, [0.0, 1.0]).all()
        else x
    )


def resolve_s_d_denom(s_d_denom: str, estimand: str) -> str:
    """The SD denominator to use: `s_d_denom` itself, or for 'auto' cobalt's default for the estimand."""
    if estimand not in ESTIMAND_S_D_DENOM:
        raise InputDataError(f"balance: estimand '{estimand}' is not one of {', '.join(ESTIMAND_S_D_DENOM)}.")
    if s_d_denom == "auto":
        return ESTIMAND_S_D_DENOM[estimand]
    if s_d_denom not in S_D_DENOMS:
        raise InputDataError(f"balance: s_d_denom '{s_d_denom}' is not one of auto, {', '.join(S_D_DENOMS)}.")
    return s_d_denom


def sd_denominator(
    x, treated, s_d_denom: str = "pooled", binary: bool | None = None, s_weights=None
) -> tuple[float, str]:
    """(SD, denominator used) of one covariate in the unadjusted sample, as cobalt's `col_w_smd`.

    treated / control: that group's SD; pooled: sqrt((var_treated + var_control) / 2); all: the whole
    sample's. Binary variances are p (1 - p). A zero or undefined SD falls back to the whole sample's
    (cobalt), and the second value then says 'all'. `s_weights` (sampling weights) weight the variances, as
    cobalt and MatchIt's summary do.
    """
    binary = is_binary(x) if binary is None else binary
    (x1, w1), (x0, w0) = _split(x, treated, s_weights)
    x = np.asarray(x, np.float64)
    v1, v0 = covariate_var(x1, w1, binary), covariate_var(x0, w0, binary)
    var = {"treated": v1, "control": v0, "pooled": (v1 + v0) / 2, "all": covariate_var(x, s_weights, binary)}[
        s_d_denom
    ]
    if not (np.isfinite(var) and var > 0):
        return float(np.sqrt(covariate_var(x, s_weights, binary))), "all"
    return float(np.sqrt(var)), s_d_denom


def pooled_sd(x, treated) -> float:
    """sqrt((var_treated + var_control) / 2) of the unweighted groups (cobalt's s.d.denom = 'pooled')."""
    return sd_denominator(x, treated, "pooled")[0]


def weighted_smd(x, treated, weights=None, sd=None, s_d_denom: str = "pooled") -> float:
    """(mean_treated - mean_control) / sd, with weighted means (cobalt's `col_w_smd` with std = TRUE).

    sd defaults to the unadjusted sample's `s_d_denom` SD (see `sd_denominator`); equal means give 0, and an
    explicit zero `sd` gives +-inf when they differ.
    """
    diff = mean_difference(x, treated, weights)
    sd = sd_denominator(x, treated, s_d_denom)[0] if sd is None else float(sd)
    if not np.isfinite(diff) or diff == 0:
        return diff
    if sd == 0 or not np.isfinite(sd):
        return float(np.sign(diff) * np.inf)
    return float(diff / sd)


def mean_difference(x, treated, weights=None) -> float:
    """Raw weighted mean_treated - mean_control (for a 0/1 covariate: the difference in proportions)."""
    (x1, w1), (x0, w0) = _split(x, treated, weights)
    return float(weighted_mean(x1, w1) - weighted_mean(x0, w0))


def var_ratio(x, treated, weights=None) -> float:
    """Weighted variance of the treated over that of the controls (NaN for binary covariates, as cobalt)."""
    if is_binary(x):
        return np.nan
    (x1, w1), (x0, w0) = _split(x, treated, weights)
    v1, v0 = weighted_var(x1, w1), weighted_var(x0, w0)
    if v0 == 0:
        return np.nan if v1 == 0 else np.inf
    return float(v1 / v0)


def ecdf_stats(x, treated, weights=None) -> tuple[float, float]:
    """(mean, max) absolute difference of the weighted eCDFs of treated and controls over the pooled
    values."""
    (x1, w1), (x0, w0) = _split(x, treated, weights)
    if w1.sum() <= 0 or w0.sum() <= 0:
        return np.nan, np.nan
    values = np.unique(np.concatenate([x1[w1 > 0], x0[w0 > 0]]))

    def cdf(xg, wg):
        o = np.argsort(xg, kind="stable")
        cum = np.cumsum(wg[o]) / wg.sum()
        pos = np.searchsorted(xg[o], values, side="right")
        return np.where(pos > 0, cum[np.maximum(pos - 1, 0)], 0.0)

    diff = np.abs(cdf(x1, w1) - cdf(x0, w0))
    return float(diff.mean()), float(diff.max())


def ks_mean(x, treated, weights=None) -> float:
    return ecdf_stats(x, treated, weights)[0]


def ks_max(x, treated, weights=None) -> float:
    """Kolmogorov-Smirnov statistic (cobalt's KS; for a binary covariate the difference in proportions)."""
    return ecdf_stats(x, treated, weights)[1]


# ---------------------------------------------------------------- registry

# compare: how `value` is judged against `threshold` ("abs_below": |v| < t; "ratio_within": 1/t < v < t).
# "smd" is cobalt's mean difference: standardised or raw per row, as the row's diff_type says.
STATS = {
    "smd": {"function": weighted_smd, "label": "Diff.", "threshold": 0.1, "compare": "abs_below"},
    "var_ratio": {"function": var_ratio, "label": "V.Ratio", "threshold": 2.0, "compare": "ratio_within"},
    "ks_mean": {"function": ks_mean, "label": "eCDF Mean", "threshold": 0.05, "compare": "abs_below"},
    "ks_max": {"function": ks_max, "label": "KS", "threshold": 0.1, "compare": "abs_below"},
}
DESCRIPTIVE = ["mean_treated", "mean_control", "sd_treated", "sd_control"]
SAMPLES = ["unmatched", "matched"]
TYPES = {True: "Binary", False: "Contin."}  # cobalt's Type column


def balance_columns() -> list[str]:
    """Columns of the long balance table. `type` is cobalt's Binary/Contin.; on the `smd` rows `diff_type`
    says whether the difference is standardised ('std') or raw ('raw') and `s_d_denom` which group's SD
    divided it (treated, control, pooled, all; '' when raw); both are '' on the other statistics' rows."""
    return [
        "covariate",
        "type",
        "stat",
        "sample",
        "value",
        "threshold",
        "balanced",
        "status",
        "diff_type",
        "s_d_denom",
    ]


def _status(value: float, balanced) -> str:
    """What a reader should take from one statistic: balanced, not balanced, or not estimable (never
    'balanced')."""
    if pd.isna(balanced):
        return "not estimable" if not np.isfinite(value) and not np.isinf(value) else ""
    return "balanced" if balanced else "not balanced"


def too_few_pairs(n_pairs: int, min_pairs: int) -> str:
    """The status of a matched sample too small to judge, e.g. 'too few pairs (1 < 10)'; '' when large
    enough."""
    return f"too few pairs ({n_pairs} < {min_pairs})" if n_pairs < min_pairs else ""


def _judge(value: float, threshold: float, compare: str):
    if threshold is None or not np.isfinite(value) and not np.isinf(value):
        return pd.NA
    if compare == "abs_below":
        return bool(abs(value) < threshold)
    return bool(1.0 / threshold < value < threshold)


# ---------------------------------------------------------------- tables


def _check(covariates: pd.DataFrame, treated, weights):
    if not isinstance(covariates, pd.DataFrame):
        raise InputDataError("balance: covariates must be a DataFrame (one column per covariate).")
    n = len(covariates)
    t = np.asarray(treated)
    if t.shape != (n,) or pd.isna(t).any() or not np.isin(t, [0, 1]).all():
        raise InputDataError(f"balance: treatment must be 0/1 with one value per row ({n} rows).")
    t = t.astype(int)
    if t.sum() == 0 or t.sum() == n:
        raise InputDataError("balance: one treatment group has no members.")
    if weights is not None:
        weights = np.asarray(weights, np.float64)
        if weights.shape != (n,) or not np.isfinite(weights).all() or (weights < 0).any():
            raise InputDataError(f"balance: weights must be finite, >= 0, one per row ({n} rows).")
    X = covariates.apply(pd.to_numeric, errors="coerce").astype(np.float64)
    bad = [c for c in X if not np.isfinite(X[c]).all()]
    if bad:
        raise InputDataError(
            f"balance: covariate column(s) {bad} have missing, non-numeric or infinite values."
        )
    return X, t, weights


def balance_table(
    covariates: pd.DataFrame,
    treated: np.ndarray,
    weights: np.ndarray | None = None,
    thresholds: dict | None = None,
    min_pairs: int = 1,
    estimand: str = "ATT",
    s_d_denom: str = "auto",
    binary: str = "raw",
    s_weights=None,
) -> pd.DataFrame:
    """Long balance table (see `balance_columns`), unmatched and, when `weights` are given, matched.

    `s_weights` (MatchIt's sampling weights): the unmatched sample and the SDs are weighted by them (the
    matched `weights` already include them, as MatchIt's match.data weights).

    Mean differences (stat 'smd') follow cobalt's `bal.tab`: continuous covariates are standardised, binary
    ones raw differences in proportions unless `binary='std'`; the SD is `s_d_denom`'s ('auto': treated for
    the ATT, control for the ATC, pooled for the ATE), computed in the unmatched sample for both samples.
    Binary covariates with values other than 0/1 are read as indicators of their larger value.

    A matched sample with fewer than `min_pairs` matched treated units is judged by nobody: its rows get
    balanced = NA and status 'too few pairs (n < min)'; a statistic that cannot be computed (NaN) is
    'not estimable'. Neither is ever counted as balanced. `thresholds` overrides STATS' defaults by stat name.
    """
    X, t, weights = _check(covariates, treated, weights)
    if s_weights is not None:
        s_weights = _check(covariates, treated, s_weights)[2]
    denom = resolve_s_d_denom(s_d_denom, estimand)
    if binary not in BINARY_DIFFS:
        raise InputDataError(f"balance: binary '{binary}' is not one of {', '.join(BINARY_DIFFS)}.")
    thr = {k: v["threshold"] for k, v in STATS.items()} | dict(thresholds or {})
    rows = []
    samples = [("unmatched", s_weights)] + ([("matched", weights)] if weights is not None else [])
    for cov in X.columns:
        bin_ = is_binary(X[cov].to_numpy())
        x = as_indicator(X[cov].to_numpy()) if bin_ else X[cov].to_numpy()
        std = binary == "std" or not bin_
        sd, used = sd_denominator(x, t, denom, bin_, s_weights) if std else (np.nan, "")
        for sample, w in samples:
            (x1, w1), (x0, w0) = _split(x, t, w)
            vals = {
                "mean_treated": weighted_mean(x1, w1),
                "mean_control": weighted_mean(x0, w0),
                "sd_treated": np.sqrt(covariate_var(x1, w1, bin_)),
                "sd_control": np.sqrt(covariate_var(x0, w0, bin_)),
                "smd": weighted_smd(x, t, w, sd=sd) if std else mean_difference(x, t, w),
            }
            vals |= {name: spec["function"](x, t, w) for name, spec in STATS.items() if name != "smd"}
            for name, value in vals.items():
                threshold = thr.get(name) if name in STATS else None
                judged = _judge(value, threshold, STATS[name]["compare"]) if name in STATS else pd.NA
                rows.append(
                    {
                        "covariate": cov,
                        "type": TYPES[bin_],
                        "stat": name,
                        "sample": sample,
                        "value": float(value),
                        "threshold": np.nan if threshold is None else float(threshold),
                        "balanced": judged,
                        "status": _status(float(value), judged) if name in STATS else "",
                        "diff_type": ("std" if std else "raw") if name == "smd" else "",
                        "s_d_denom": used if name == "smd" else "",
                    }
                )
    out = pd.DataFrame(rows, columns=balance_columns())
    out["balanced"] = out["balanced"].astype("boolean")
    if weights is not None:
        few = too_few_pairs(int(((weights > 0) & (t == 1)).sum()), min_pairs)
        if few:
            matched = (out["sample"] == "matched").to_numpy()
            out.loc[matched, "balanced"] = pd.NA
            out.loc[matched & (out["status"] != ""), "status"] = few
    return out


SD_WORDS = {
    "treated": "treated group's SD",
    "control": "control group's SD",
    "pooled": "pooled SD",
    "all": "whole sample's SD",
}


def difference_axis_label(smd: pd.DataFrame) -> str:
    """The love plot's x label, as cobalt's: standardised, raw, or mixed mean differences (binary covariates
    raw), naming the SD the standardised ones were divided by (the table's diff_type and s_d_denom columns).
    """
    if "diff_type" not in smd:
        return "Absolute standardised mean difference"
    kinds = set(smd["diff_type"])
    denoms = [SD_WORDS.get(d, d) for d in dict.fromkeys(smd.loc[smd["diff_type"] == "std", "s_d_denom"])]
    sd = f"units of the {' / '.join(denoms)} before matching" if denoms else ""
    if kinds == {"raw"}:
        return "Absolute mean difference (binary: raw difference in proportions)"
    if kinds == {"std"}:
        return f"Absolute standardised mean difference ({sd})"
    return f"Absolute standardised mean difference ({sd}; binary: raw difference)"


def sample_sizes(treated, weights=None) -> pd.DataFrame:
    """Per group: all, matched (weight > 0), unmatched, and the effective sample size of the weights."""
    t = np.asarray(treated).astype(int)
    w = np.ones(len(t)) if weights is None else np.asarray(weights, np.float64)
    rows = []
    for g, name in ((0, "control"), (1, "treated")):
        wg = w[t == g]
        rows.append(
            {
                "group": name,
                "all": int(len(wg)),
                "matched": int((wg > 0).sum()),
                "unmatched": int((wg <= 0).sum()),
                "ess": ess(wg),
            }
        )
    return pd.DataFrame(rows)


def wilson_interval(p, n, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion `p` from `n` (effective) observations: always inside [0, 1],
    sensible at p = 0 or 1 and for small n, where the normal interval runs past the ends (Wilson 1927)."""
    p, n = np.asarray(p, np.float64), np.asarray(n, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z / denom * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
        # the interval contains p; min/max keep that exact under rounding (at p = 0 or 1 the bound is p
        # itself)
        low, high = (
            np.clip(np.minimum(centre - half, p), 0.0, 1.0),
            np.clip(np.maximum(centre + half, p), 0.0, 1.0),
        )
    bad = ~(n > 0) | ~np.isfinite(p)
    return np.where(bad, np.nan, low), np.where(bad, np.nan, high)


def group_means(covariates: pd.DataFrame, treated, weights=None) -> pd.DataFrame:
    """Mean per covariate, group and sample with a 95% interval: Wilson for 0/1 covariates (a proportion's
    interval stays inside [0, 1]), else normal; both use the effective sample size of the weights.
    `interval` names the kind."""
    X, t, weights = _check(covariates, treated, weights)
    samples = [("unmatched", None)] + ([("matched", weights)] if weights is not None else [])
    rows = []
    for cov in X.columns:
        x = X[cov].to_numpy()
        binary = bool(np.isin(x[np.isfinite(x)], (0.0, 1.0)).all())
        for sample, w in samples:
            for g, name in ((0, "control"), (1, "treated")):
                xg = x[t == g]
                wg = np.ones(len(xg)) if w is None else w[t == g]
                m = weighted_mean(xg, wg)
                n_eff = ess(wg)
                se = np.sqrt(weighted_var(xg, wg) / n_eff) if n_eff > 1 else np.nan
                if binary:
                    low, high = (float(v) for v in wilson_interval(m, n_eff))
                else:
                    low, high = m - Z95 * se, m + Z95 * se
                rows.append(
                    {
                        "covariate": cov,
                        "group": name,
                        "sample": sample,
                        "mean": m,
                        "se": se,
                        "ci_low": low,
                        "ci_high": high,
                        "interval": "wilson" if binary else "normal",
                        "n": int((wg > 0).sum()),
                    }
                )
    return pd.DataFrame(rows)
