"""Outcome analysis: group differences before and after matching, with intervals, tests and sensitivity.

Matching is a means; the end result is an outcome compared across groups once confounding is gone. For each
outcome column this module gives the naive (unmatched) difference, the matched ATT estimate with a paired
cluster bootstrap interval, the matched-pairs test (paired t or McNemar), and Rosenbaum's sensitivity value
Gamma (how much hidden bias would overturn the conclusion). `verification_bias` applies the same machinery to
face-recognition distances to a same-identity reference photo, the reference study's bias analysis.

Conventions: `treated` is 0/1 (1 = treated); a matches table has `treated_id`, `control_id` and optionally
`weight` and `embedding` (docs/architecture.md). Estimates are treated minus control.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize, stats

from ganmatch.errors import InputDataError

KINDS = ("numeric", "binary")
TABLE_COLUMNS = [
    "outcome", "kind", "method", "embedding", "estimate", "ci_low", "ci_high", "n_pairs", "n_treated",
    "n_control", "p_value", "test", "gamma", "truth", "error", "covers", "status",
]  # the tidy outcomes table, in this order
BIAS_COLUMNS = ["sample", "stat", "group", "value", "ci_low", "ci_high", "n", "p_value"]


# ---------------------------------------------------------------------------------------------- small helpers

# a difference row's numbers, in the order of its columns
DIFFERENCE_FIELDS = ("estimate", "n_pairs", "ci_low", "ci_high", "p_value")


def outcome_kind(y) -> str:
    """'binary' if every non-missing value is 0 or 1 (or a bool), else 'numeric'."""
    values = pd.Series(y).dropna()
    if values.dtype == bool:
        return "binary"
    if not pd.api.types.is_numeric_dtype(values):
        raise InputDataError(f"outcome {getattr(y, 'name', '')!r} is not numeric or 0/1; convert it in the "
                             "labels table")
    return "binary" if len(values) and values.isin([0, 1]).all() else "numeric"


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InputDataError(f"outcome kind {kind!r} is not one of {KINDS}")
    return kind


def _as_float(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).ravel()


# ------------------------------------------------------------------------------- naive (unmatched) comparison

def naive_difference(y, treated, kind: str | None = None, alpha: float = 0.05) -> dict:
    """Treated-minus-control difference of means on the unmatched data, with a (1 - alpha) interval.

    Numeric outcomes: Welch's t (unequal variances). Binary: difference of proportions with a Wald interval
    and the pooled two-proportion z-test. Missing values are dropped.
    """
    y = _as_float(y)
    t = _as_float(treated)
    keep = ~np.isnan(y) & ~np.isnan(t)
    y, t = y[keep], t[keep].astype(int)
    kind = _check_kind(kind or outcome_kind(y))
    y1, y0 = y[t == 1], y[t == 0]
    out = {"estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan,
           "n_treated": len(y1), "n_control": len(y0),
           "test": "welch_t" if kind == "numeric" else "two_proportion_z"}
    if len(y1) == 0 or len(y0) == 0:
        return out
    est = y1.mean() - y0.mean()
    out["estimate"] = float(est)
    z = stats.norm.ppf(1 - alpha / 2)
    if kind == "numeric":
        if len(y1) < 2 or len(y0) < 2:
            return out
        v1, v0 = y1.var(ddof=1) / len(y1), y0.var(ddof=1) / len(y0)
        se = np.sqrt(v1 + v0)
        if se == 0:
            out.update(ci_low=est, ci_high=est, p_value=1.0 if est == 0 else 0.0)
            return out
        df = (v1 + v0) ** 2 / (v1**2 / (len(y1) - 1) + v0**2 / (len(y0) - 1))
        q = stats.t.ppf(1 - alpha / 2, df)
        out.update(ci_low=est - q * se, ci_high=est + q * se, p_value=2 * stats.t.sf(abs(est) / se, df))
    else:
        p1, p0 = y1.mean(), y0.mean()
        se = np.sqrt(p1 * (1 - p1) / len(y1) + p0 * (1 - p0) / len(y0))
        out.update(ci_low=est - z * se, ci_high=est + z * se)
        pooled = (y1.sum() + y0.sum()) / (len(y1) + len(y0))
        se0 = np.sqrt(pooled * (1 - pooled) * (1 / len(y1) + 1 / len(y0)))
        out["p_value"] = (1.0 if est == 0 else 0.0) if se0 == 0 else 2 * stats.norm.sf(abs(est) / se0)
    out.update({k: float(out[k]) for k in ("ci_low", "ci_high", "p_value")})
    return out


# ---------------------------------------------------------------------------------------------- matched pairs

def paired_outcomes(pairs: pd.DataFrame, outcome: pd.Series):
    """Pair-level outcomes of a matches table: (y_treated, y_control, weight, cluster) as numpy arrays.

    `outcome` is indexed by image_id. Weights (column `weight`, default 1) are normalised to sum to 1 within
    each treated unit, so every treated unit counts once (the ATT), whether it has one control (1:1), k
    controls (k:1) or shares controls with others (with replacement). `cluster` numbers the treated units and
    is what the bootstrap resamples. Pairs with a missing outcome on either side are dropped.
    """
    for col in ("treated_id", "control_id"):
        if col not in pairs.columns:
            raise InputDataError(f"matches table lacks column {col!r} (see docs/architecture.md)")
    if not outcome.index.is_unique:
        raise InputDataError(f"outcome {outcome.name!r} has duplicate image ids; deduplicate the image index")
    ids = pd.Index(outcome.index.astype(str))
    t_ids = pairs["treated_id"].astype(str).to_numpy()
    c_ids = pairs["control_id"].astype(str).to_numpy()
    missing = np.setdiff1d(np.r_[t_ids, c_ids], ids.to_numpy())
    if len(missing):
        raise InputDataError(f"{len(missing)} matched image ids (e.g. {missing[0]!r}) have no row in the "
                             "outcome table")
    values = outcome.to_numpy(dtype=np.float64)
    y_t = values[ids.get_indexer(t_ids)]
    y_c = values[ids.get_indexer(c_ids)]
    w = pairs["weight"].to_numpy(np.float64) if "weight" in pairs.columns else np.ones(len(pairs))
    keep = ~np.isnan(y_t) & ~np.isnan(y_c) & (w > 0)
    y_t, y_c, w, t_ids = y_t[keep], y_c[keep], w[keep], t_ids[keep]
    cluster = pd.factorize(t_ids)[0]
    if len(w):
        w = w / np.bincount(cluster, weights=w)[cluster]
    return y_t, y_c, w, cluster


def _weights(y_t, weights) -> np.ndarray:
    return np.ones(len(y_t)) if weights is None else _as_float(weights)


def att_estimate(y_t, y_c, weights=None) -> float:
    """Weighted mean of treated-minus-control pair differences (the ATT; the plain mean for 1:1)."""
    d = _as_float(y_t) - _as_float(y_c)
    w = _weights(d, weights)
    return float(np.sum(w * d) / np.sum(w)) if len(d) and np.sum(w) > 0 else np.nan


def treated_contrasts(y_t, y_c, weights=None, cluster=None) -> np.ndarray:
    """One treated-minus-(weighted mean of its controls) difference per treated unit (cluster)."""
    d = _as_float(y_t) - _as_float(y_c)
    if cluster is None:
        return d
    w = _weights(d, weights)
    cluster = pd.factorize(np.asarray(cluster))[0]
    return np.bincount(cluster, weights=w * d) / np.bincount(cluster, weights=w)


def paired_bootstrap_ci(y_t, y_c, weights=None, cluster=None, n_boot: int = 2000, alpha: float = 0.05,
                        random_state: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `att_estimate`, resampling pairs (or treated units when `cluster` is
    given).

    Clusters keep a treated unit's k controls together in k:1 matching. Vectorised: one (n_boot, n) index
    draw. Reused controls (matching with replacement) are treated as independent, which makes the interval
    somewhat narrow (Abadie & Imbens 2008); prefer 1:1 without replacement when intervals matter.
    """
    d = _as_float(y_t) - _as_float(y_c)
    w = _weights(d, weights)
    if cluster is None:
        num, den = w * d, w
    else:
        codes = pd.factorize(np.asarray(cluster))[0]
        num, den = np.bincount(codes, weights=w * d), np.bincount(codes, weights=w)
    n = len(num)
    if n < 2:
        return (np.nan, np.nan)
    rng = np.random.default_rng(random_state)
    est = np.empty(n_boot)
    chunk = max(1, 4_000_000 // n)  # bound memory at a few million indices per draw
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        est[start : start + len(idx)] = num[idx].sum(axis=1) / den[idx].sum(axis=1)
    low, high = np.quantile(est, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def paired_test(y_t, y_c, kind: str = "numeric") -> float:
    """Two-sided p-value of no effect on matched pairs: paired t (numeric) or exact McNemar (binary).

    Exact McNemar: binomial test of the discordant pairs (treated 1 / control 0 against the reverse) at 1/2.
    """
    _check_kind(kind)
    d = _as_float(y_t) - _as_float(y_c)
    if kind == "binary":
        b, c = int(np.sum(d > 0)), int(np.sum(d < 0))
        return 1.0 if b + c == 0 else float(stats.binomtest(b, b + c, 0.5).pvalue)
    return _one_sample_t(d)


def _one_sample_t(d: np.ndarray) -> float:
    if len(d) < 2:
        return np.nan
    sd = d.std(ddof=1)
    if sd == 0:
        return 1.0 if d.mean() == 0 else 0.0
    return float(2 * stats.t.sf(abs(d.mean()) / (sd / np.sqrt(len(d))), len(d) - 1))


# ------------------------------------------------------------------------------------------- Rosenbaum bounds

def _signed_rank_parts(d: np.ndarray):
    d = d[d != 0]
    ranks = stats.rankdata(np.abs(d))  # average ranks for ties, zeros dropped (Rosenbaum 2002, sec. 4.3)
    return ranks, d > 0


def _wilcoxon_exact_sf(ranks: np.ndarray, t_obs: float, p: float) -> float:
    """P(sum of ranks_i * B_i >= t_obs), B_i ~ Bernoulli(p) independent, by convolution over doubled ranks."""
    r2 = np.rint(2 * ranks).astype(int)
    dist = np.zeros(r2.sum() + 1)
    dist[0] = 1.0
    top = 0
    for r in r2:
        new = dist * (1 - p)
        new[r : top + r + 1] += p * dist[: top + 1]
        dist, top = new, top + r
    return float(dist[int(np.rint(2 * t_obs)) :].sum())


def rosenbaum_pvalue(d, gamma: float, kind: str = "numeric", method: str = "normal") -> float:
    """Upper bound on the one-sided p-value (H1: effect > 0) of pair differences `d` under bias at most Gamma.

    Numeric: Wilcoxon's signed-rank statistic T (sum of ranks of |d| over positive d, zeros dropped); with
    p+ = Gamma / (1 + Gamma), E = p+ * sum(ranks), Var = p+ (1 - p+) * sum(ranks^2), and the bound is
    1 - Phi((T - E) / sqrt(Var)) (method "normal", no continuity correction, as Rosenbaum 2002, ch. 4) or
    the exact tail of that distribution (method "exact", fine up to a few hundred pairs).
    Binary (sign test / McNemar): with D discordant pairs of which b favour the treated, P(Binomial(D, p+) >=
    b).
    """
    _check_kind(kind)
    if gamma < 1:
        raise InputDataError(f"Gamma must be >= 1, got {gamma}")
    d = _as_float(d)
    d = d[~np.isnan(d)]
    p_plus = gamma / (1.0 + gamma)
    if kind == "binary":
        b, n = int(np.sum(d > 0)), int(np.sum(d != 0))
        return 1.0 if n == 0 else float(stats.binom.sf(b - 1, n, p_plus))
    ranks, positive = _signed_rank_parts(d)
    if len(ranks) == 0:
        return 1.0
    t_obs = ranks[positive].sum()
    if method == "exact":
        return _wilcoxon_exact_sf(ranks, t_obs, p_plus)
    if method != "normal":
        raise InputDataError(f"method {method!r} is not 'normal' or 'exact'")
    mean = p_plus * ranks.sum()
    var = p_plus * (1 - p_plus) * np.sum(ranks**2)
    return float(stats.norm.sf((t_obs - mean) / np.sqrt(var)))


def rosenbaum_gamma(y_t, y_c, kind: str = "numeric", alpha: float = 0.05, gamma_max: float = 1000.0,
                    method: str = "normal") -> float:
    """Sensitivity value: the Gamma at which the upper-bound one-sided p-value reaches `alpha`.

    The test is one-sided in the direction of the observed effect (the sign of the mean pair difference).
    Returns NaN when there is no conclusion to overturn (p > alpha already at Gamma = 1, or no non-zero
    differences) and inf when the result stays significant up to `gamma_max`. Found by root search on the
    continuous bound, so it is exact to 1e-6 rather than a grid step.
    """
    d = _as_float(y_t) - _as_float(y_c)
    d = d[~np.isnan(d)]
    if not np.any(d != 0):
        return np.nan
    if d.mean() < 0 or (d.mean() == 0 and np.sum(d < 0) > np.sum(d > 0)):
        d = -d

    def excess(log_gamma):
        return rosenbaum_pvalue(d, float(np.exp(log_gamma)), kind, method) - alpha

    if excess(0.0) > 0:
        return np.nan
    if excess(np.log(gamma_max)) <= 0:
        return np.inf
    return float(np.exp(optimize.brentq(excess, 0.0, np.log(gamma_max), xtol=1e-9)))


# ------------------------------------------------------------------------------------ one outcome, one sample

def matched_estimate(y_t, y_c, weights, cluster, kind: str, n_boot: int = 2000, alpha: float = 0.05,
                     random_state: int = 0) -> dict:
    """ATT, bootstrap interval, matched-pairs test and Rosenbaum Gamma for pair-level outcomes.

    Tests run on one contrast per treated unit (treated minus the weighted mean of its controls). Binary
    outcomes use McNemar and the sign-test bound when every treated unit has one control; with k:1 the
    contrasts are fractions, so the paired t and the signed-rank bound are used instead (recorded in `test`).
    """
    d = treated_contrasts(y_t, y_c, weights, cluster)
    one_to_one = cluster is None or len(d) == len(_as_float(y_t))
    test_kind = "binary" if kind == "binary" and one_to_one else "numeric"
    low, high = paired_bootstrap_ci(y_t, y_c, weights, cluster, n_boot=n_boot, alpha=alpha,
                                    random_state=random_state)
    return {
        "estimate": att_estimate(y_t, y_c, weights),
        "ci_low": low,
        "ci_high": high,
        "n_pairs": int(len(_as_float(y_t))),
        "n_treated": int(len(d)),
        "p_value": paired_test(d, np.zeros_like(d), test_kind) if len(d) else np.nan,
        "test": "mcnemar_exact" if test_kind == "binary" else "paired_t",
        "gamma": rosenbaum_gamma(d, np.zeros_like(d), test_kind, alpha=alpha) if len(d) else np.nan,
    }


def weighted_estimate(y, treated, weights, cluster, estimand: str = "ATT", n_boot: int = 2000,
                      alpha: float = 0.05,
                      random_state: int = 0) -> dict:
    """The effect on a matched sample given by unit weights (subclassification, exact, cem, full matching, or
    any method for the ATC/ATE): weighted treated mean minus weighted control mean, as MatchIt's recommended
    weighted regression of the outcome on the treatment. The interval and the p-value come from a cluster
    bootstrap that resamples `cluster`s (subclasses; a unit without one is its own), with a normal p-value on
    the bootstrap SE. Units with weight 0 or a missing outcome are left out."""
    y, t, w = _as_float(y), _as_float(treated), _as_float(weights)
    keep = ~np.isnan(y) & ~np.isnan(t) & (w > 0)
    y, t, w = y[keep], t[keep].astype(int), w[keep]
    cl = pd.factorize(np.asarray(cluster,
                                 dtype=object)[keep])[0] if cluster is not None else np.arange(len(y))
    out = {"estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan,
           "n_pairs": int((t == (0 if estimand == "ATC" else 1)).sum()),
           "n_treated": int((t == 1).sum()), "n_control": int((t == 0).sum()), "p_value": np.nan,
           "test": "weighted_cluster_bootstrap", "gamma": np.nan}
    if out["n_treated"] == 0 or out["n_control"] == 0:
        return out

    def diff(ww):
        a, b = np.sum(ww * (t == 1)), np.sum(ww * (t == 0))
        return np.sum(ww * y * (t == 1)) / a - np.sum(ww * y * (t == 0)) / b if a > 0 and b > 0 else np.nan

    out["estimate"] = float(diff(w))
    n_cl = int(cl.max()) + 1
    rng = np.random.default_rng(random_state)
    boot = np.array([diff(w * np.bincount(rng.integers(0, n_cl, n_cl),
                                          minlength=n_cl)[cl]) for _ in range(n_boot)])
    boot = boot[np.isfinite(boot)]
    if len(boot) > 1:
        out["ci_low"], out["ci_high"] = (float(q) for q in np.quantile(boot, [alpha / 2, 1 - alpha / 2]))
        se = float(np.std(boot, ddof=1))
        out["p_value"] = float(2 * stats.norm.sf(abs(out["estimate"]) / se)) if se > 0 else np.nan
    return out


def uses_pairs(pairs: pd.DataFrame | None, units: pd.DataFrame | None) -> bool:
    """Pair-level analysis (paired bootstrap over treated units, tests, Rosenbaum bounds) for methods that
    give each treated unit its own matched set and estimate the ATT; the weighted analysis of the units table,
    with subclasses as the bootstrap's clusters, otherwise (subclass, exact, cem, full matching where several
    treated units share a subclass, or the ATC/ATE)."""
    if units is None:
        return True
    estimand = str(units["estimand"].iloc[0]) if "estimand" in units.columns and len(units) else "ATT"
    if pairs is None or len(pairs) == 0 or estimand != "ATT":
        return False
    if "subclass" in units.columns and "treated" in units.columns:
        sub = units.loc[(units["treated"] == 1) & units["subclass"].notna(), "subclass"]
        if sub.duplicated().any():
            return False
    return True


def unit_arrays(units: pd.DataFrame, outcome: pd.Series):
    """(y, treated, weight, cluster) of a units table against an outcome indexed by image_id."""
    ids = units["image_id"].astype(str)
    y = outcome.reindex(ids).to_numpy(np.float64)
    sub = units["subclass"].astype("Int64")
    cluster = np.where(sub.isna(), "u" + ids.to_numpy(), "s" + sub.astype(str).to_numpy())
    return y, units["treated"].to_numpy(np.float64), units["weight"].to_numpy(np.float64), cluster


def _embedding_of(pairs: pd.DataFrame) -> str:
    if "embedding" in pairs.columns:
        values = pairs["embedding"].dropna().astype(str).unique()
        if len(values) == 1:
            return values[0]
    return ""


def _treated_series(treated, outcomes: pd.DataFrame) -> pd.Series:
    if isinstance(treated, str):
        if treated not in outcomes.columns:
            raise InputDataError(f"treatment column {treated!r} is not in the outcome table (config key "
                                 "`treatment`)")
        return outcomes.set_index("image_id")[treated]
    if not isinstance(treated, pd.Series):
        raise InputDataError("treated must be a column name or a 0/1 Series indexed by image_id")
    return treated


# --------------------------------------------------------------------------------------------- the tidy table

def estimate_outcomes(outcomes: pd.DataFrame, treated, matches: dict[str, pd.DataFrame], columns=None,
                      truth: dict | None = None, kinds: dict | None = None, n_boot: int = 2000,
                      alpha: float = 0.05,
                      random_state: int = 0, min_pairs: int = 1, units: dict[str, pd.DataFrame] | None = None
                      ) -> pd.DataFrame:
    """The outcomes table: per outcome, the naive difference and each matching's ATT, in one tidy frame.

    outcomes: `image_id` plus outcome columns (all non-id columns except the treatment when `columns` is
    None). treated: 0/1 Series indexed by image_id, or the name of a column of `outcomes`. matches: name ->
    matches table (`treated_id`, `control_id`, optional `weight`, `embedding`). units: name -> units table
    (image_id, treated, weight, subclass, estimand); methods without pairs, or estimating the ATC or ATE, are
    estimated from it (`weighted_estimate`), the others pair by pair. truth: outcome -> true effect (the
    demo's planted one); adds `truth`, `error` (estimate - truth) and `covers` (truth inside the interval).
    Columns: TABLE_COLUMNS. Naive rows have no n_pairs and no gamma. `status` is 'ok', 'too few pairs (n <
    min_pairs)' or 'not estimable (...)' (no estimate or no interval).
    """
    if "image_id" not in outcomes.columns:
        raise InputDataError("outcome table lacks column 'image_id'")
    table = outcomes.assign(image_id=outcomes["image_id"].astype(str)).set_index("image_id")
    if not table.index.is_unique:
        raise InputDataError("outcome table has duplicate image ids")
    t = _treated_series(treated, outcomes)
    t.index = t.index.astype(str)
    if columns is None:
        columns = [c for c in table.columns if not (isinstance(treated, str) and c == treated)]
    truth, kinds = truth or {}, kinds or {}
    rows = []
    for col in columns:
        if col not in table.columns:
            raise InputDataError(f"outcome {col!r} (config key `outcomes`) is not a column of the outcome "
                                 "table")
        y = table[col]
        kind = _check_kind(kinds.get(col) or outcome_kind(y))
        ty = t.reindex(y.index)
        naive = naive_difference(y.to_numpy(np.float64), ty.to_numpy(np.float64), kind, alpha)
        rows.append({"outcome": col, "kind": kind, "method": "naive", "embedding": "", "n_pairs": pd.NA,
                     "gamma": np.nan, **naive})
        for name, pairs in matches.items():
            u = (units or {}).get(name)
            if not uses_pairs(pairs, u):
                yy, tt, ww, cl = unit_arrays(u, y)
                res = weighted_estimate(yy, tt, ww, cl, str(u["estimand"].iloc[0]), n_boot, alpha,
                                        random_state)
                rows.append({"outcome": col, "kind": kind, "method": name, "embedding": _embedding_of(pairs),
                             **res})
                continue
            y_t, y_c, w, cl = paired_outcomes(pairs, y)
            res = matched_estimate(y_t, y_c, w, cl, kind, n_boot=n_boot, alpha=alpha,
                                   random_state=random_state)
            present = y.reindex(pairs["treated_id"].astype(str)).notna().to_numpy() & \
                y.reindex(pairs["control_id"].astype(str)).notna().to_numpy()
            res["n_control"] = int(pairs.loc[present, "control_id"].nunique())
            rows.append({"outcome": col, "kind": kind, "method": name, "embedding": _embedding_of(pairs),
                         **res})
    out = pd.DataFrame(rows)
    out["truth"] = out["outcome"].map(
        lambda c: float(truth[c]) if c in truth and truth[c] is not None else np.nan)
    out["error"] = out["estimate"] - out["truth"]
    covers = (out["ci_low"] <= out["truth"]) & (out["truth"] <= out["ci_high"])
    out["covers"] = covers.astype("boolean").mask(out["truth"].isna())
    for c in ("n_pairs", "n_treated", "n_control"):
        out[c] = out[c].astype("Int64")
    out["status"] = [estimate_status(r, min_pairs) for r in out.itertuples()]
    return out[TABLE_COLUMNS].reset_index(drop=True)


def estimate_status(row, min_pairs: int = 1) -> str:
    """'ok', 'too few pairs (n < min)' for a matched row below `min_pairs`, or 'not estimable (...)'."""
    if row.method != "naive" and pd.notna(row.n_pairs) and int(row.n_pairs) < min_pairs:
        return f"too few pairs ({int(row.n_pairs)} < {min_pairs})"
    if not np.isfinite(row.estimate):
        return "not estimable (no estimate)"
    if not (np.isfinite(row.ci_low) and np.isfinite(row.ci_high)):
        return "not estimable (no interval)"
    return "ok"


# -------------------------------------------------------------------------------------- face-recognition bias


def reference_distances(
    ids,
    identity,
    X,
    metric: str = "euclidean",
    reference: str = "random",
    exclude=None,
    random_state: int = 0,
) -> pd.DataFrame:
    """For each image, the embedding distance to a reference photo of the same identity.

    reference="random" (default) picks one other photo of the identity uniformly with a seeded generator; it
    is unbiased whatever the number of photos per identity. reference="nearest" takes the closest other
    photo, the best case, which shrinks as an identity has more photos (so it confounds group comparisons
    when groups differ in photos per identity). `exclude`: ids never used as references (e.g. photos with
    eyeglasses, as in the reference study); they still get a distance. Identities with no eligible other
    photo get NaN. Columns: image_id, identity, reference_id, distance.
    """
    ids = np.asarray(ids).astype(str)
    identity = np.asarray(identity).astype(str)
    X = np.asarray(X, dtype=np.float64).reshape(len(ids), -1)
    if len(identity) != len(ids):
        raise InputDataError("ids and identity differ in length")
    if reference not in ("random", "nearest"):
        raise InputDataError(f"reference {reference!r} is not 'random' or 'nearest'")
    if metric == "cosine":
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        X = X / np.where(norms == 0, 1.0, norms)
    elif metric != "euclidean":
        raise InputDataError(f"metric {metric!r} is not 'euclidean' or 'cosine'")
    eligible = ~np.isin(ids, np.asarray(list(exclude) if exclude is not None else [], dtype=str))
    rng = np.random.default_rng(random_state)
    ref = np.full(len(ids), None, dtype=object)
    dist = np.full(len(ids), np.nan)
    codes, _ = pd.factorize(identity)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    for members in np.split(order, bounds):
        sub = X[members]
        if metric == "cosine":
            dmat = np.clip(1.0 - sub @ sub.T, 0.0, None)
        else:
            dmat = np.sqrt(np.maximum(((sub[:, None, :] - sub[None, :, :]) ** 2).sum(-1), 0.0))
        ok = eligible[members][None, :] & ~np.eye(len(members), dtype=bool)
        for i, row in enumerate(members):
            cand = np.flatnonzero(ok[i])
            if len(cand) == 0:
                continue
            j = cand[np.argmin(dmat[i, cand])] if reference == "nearest" else cand[rng.integers(len(cand))]
            ref[row], dist[row] = ids[members[j]], dmat[i, j]
    return pd.DataFrame({"image_id": ids, "identity": identity, "reference_id": ref, "distance": dist})


def verification_bias(
    distance: pd.Series,
    treated: pd.Series,
    threshold: float = 0.6,
    matches: dict[str, pd.DataFrame] | None = None,
    n_boot: int = 2000,
    alpha: float = 0.05,
    random_state: int = 0,
    units: dict[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Face-verification bias between groups on the whole data and on each matched set.

    distance: per image (indexed by image_id) the face-recognition distance to its same-identity reference
    (`reference_distances`); NaN rows (no reference) are left out. An image is verified when distance <
    threshold (0.6 is dlib's same-person threshold). For each sample ("all", then each matching name) and
    group (treated, control): n, mean/quartiles of the distance and the accuracy (fraction verified), each
    group weighted as in the ATT on matched samples; then the treated-minus-control difference of
    mean_distance and accuracy with a (1 - alpha) interval (Welch / two-proportion on "all", paired
    bootstrap on matches) and p-value. Long table with columns BIAS_COLUMNS.
    """
    distance = distance.copy()
    distance.index = distance.index.astype(str)
    treated = treated.copy()
    treated.index = treated.index.astype(str)
    verified = (distance < threshold).astype(float).where(distance.notna())
    outcomes = {"mean_distance": distance, "accuracy": verified}
    rows = []

    def add(sample, stat, group, value, n, low=np.nan, high=np.nan, p=np.nan):
        rows.append(
            {
                "sample": sample,
                "stat": stat,
                "group": group,
                "value": float(value),
                "ci_low": float(low),
                "ci_high": float(high),
                "n": int(n),
                "p_value": float(p),
            }
        )

    t_all = treated.reindex(distance.index).to_numpy(np.float64)
    d_all = distance.to_numpy(np.float64)
    for g_name, g in (("treated", 1), ("control", 0)):
        y = d_all[(t_all == g) & ~np.isnan(d_all)]
        _distribution_rows(add, "all", g_name, y, np.ones(len(y)), threshold)
    for stat, series in outcomes.items():
        kind = "numeric" if stat == "mean_distance" else "binary"
        res = naive_difference(series.to_numpy(np.float64), t_all, kind, alpha)
        add(
            "all",
            stat,
            "difference",
            res["estimate"],
            res["n_treated"] + res["n_control"],
            res["ci_low"],
            res["ci_high"],
            res["p_value"],
        )
    for name, pairs in (matches or {}).items():
        u = (units or {}).get(name)
        if not uses_pairs(pairs, u):
            y, t, w, cl = unit_arrays(u, distance)
            keep = ~np.isnan(y) & (w > 0)
            for g_name, g in (("treated", 1), ("control", 0)):
                sel = keep & (t == g)
                _distribution_rows(add, name, g_name, y[sel], w[sel], threshold)
            for stat in outcomes:
                yy = (
                    y
                    if stat == "mean_distance"
                    else np.where(np.isnan(y), np.nan, (y < threshold).astype(float))
                )
                res = weighted_estimate(yy, t, w, cl, str(u["estimand"].iloc[0]), n_boot, alpha, random_state)
                add(name, stat, "difference", *(res[k] for k in DIFFERENCE_FIELDS))
            continue
        y_t, y_c, w, cl = paired_outcomes(pairs, distance)
        _distribution_rows(add, name, "treated", y_t, w, threshold)
        _distribution_rows(add, name, "control", y_c, w, threshold)
        for stat in outcomes:
            kind = "numeric" if stat == "mean_distance" else "binary"
            a, b = (
                (y_t, y_c)
                if kind == "numeric"
                else ((y_t < threshold).astype(float), (y_c < threshold).astype(float))
            )
            res = matched_estimate(a, b, w, cl, kind, n_boot=n_boot, alpha=alpha, random_state=random_state)
            add(name, stat, "difference", *(res[k] for k in DIFFERENCE_FIELDS))
    return pd.DataFrame(rows, columns=BIAS_COLUMNS)


def _weighted_quantile(y: np.ndarray, w: np.ndarray, q: float) -> float:
    order = np.argsort(y)
    cw = np.cumsum(w[order])
    return float(y[order][np.searchsorted(cw, q * cw[-1])])


def _distribution_rows(add, sample, group, y, w, threshold):
    n = len(y)
    if n == 0:
        for stat in ("mean_distance", "q25_distance", "median_distance", "q75_distance", "accuracy"):
            add(sample, stat, group, np.nan, 0)
        return
    add(sample, "mean_distance", group, np.average(y, weights=w), n)
    for stat, q in (("q25_distance", 0.25), ("median_distance", 0.5), ("q75_distance", 0.75)):
        add(sample, stat, group, _weighted_quantile(y, w, q), n)
    add(sample, "accuracy", group, np.average(y < threshold, weights=w), n)
