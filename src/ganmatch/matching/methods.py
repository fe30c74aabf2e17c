"""MatchIt's split of matching into a distance and a method, with its options on every method.

`match(method, data, distance=..., **options)` computes the distance (`distance.distance_measure`), drops
units outside common support (`discard`), then runs the method within each `exact` stratum: `nearest` (in
`m_order`), `greedy` (globally closest pair first), `optimal` and `full` (assignment problems), `subclass`
(quantiles of a scalar distance), `exact` and `cem` (no distance), or the reference study's
`greedy_constrained`. Every result carries the pairs (where there are pairs) and a units table: weight,
subclass, discarded, distance. `METHODS` lists each method's parameters and defaults; config/schema.yaml
mirrors it (a test keeps them equal).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from ganmatch.analysis.matrices import DistanceMatrix
from ganmatch.errors import ConfigError
from ganmatch.matching import options as opt
from ganmatch.matching.cardinality import SOLVERS, cardinality_weights, tolerance_scale
from ganmatch.matching.constrained import match_greedy_constrained
from ganmatch.matching.data import (
    MatchData,
    MatchResult,
    _empty_pairs,
    caliper_between,
    make_result,
    one_caliper,
    set_weights,
    split_groups,
)
from ganmatch.matching.distance import (
    COVARIATE_TRANSFORMS,
    PROPENSITY_ONLY,
    PROPENSITY_OPTIONS,
    SCALAR_DISTANCES,
    DistanceMeasure,
    covariate_matrix,
    distance_measure,
    matchit_rows,
    sampling_weights,
)
from ganmatch.matching.greedy import CrossLists, greedy_pairs
from ganmatch.matching.nearest import covariate_sets, feature_sets, focal_order, line_sets, places
from ganmatch.matching.optimal import full_sets, optimal_sets
from ganmatch.matching.subclass import cem_subclasses, exact_subclasses, quantile_subclasses

REQUIRED = object()

# parameters renamed, per method: old spelling -> new name (refused with the new name, at start-up and here).
# greedy_constrained's cap is on its cost (distance + penalty), not on a distance as MatchIt's caliper.
RENAMED = {"greedy_constrained": {"caliper": "max_cost"}}

DISTANCE = {"distance": REQUIRED, "embedding": None, "metric": "euclidean", "covariates": None,
            "link": "logit",
            "penalty": "none", "C": 1.0, "l1_ratio": 0.5, "n_estimators": 500, "standardize": True,
            "max_iter": 1000,
            "score": None, "s_weights": None}
CALIPER = {"caliper": None, "std_caliper": True, "caliper_sd": None, "caliper_quantile": None,
           "covariate_caliper": None}
COMMON = {"exact": None, "antiexact": None, "mahvars": None, "discard": "none", "estimand": "ATT",
          "random_state": None}


@dataclass(frozen=True)
class Method:
    """A matching method: its parameters with their defaults, the estimands it supports, and its runner, one
    signature for all: run(data, params, s_weights) -> MatchResult (params complete, defaults filled in)."""

    name: str
    params: dict
    run: Callable[[MatchData, dict, np.ndarray | None], MatchResult]
    estimands: tuple = ("ATT", "ATC")
    description: str = ""


# METHODS, the registry (each method's parameters and its runner), is at the end of this module, below the
# runners.


def method_parameters(method: str) -> dict:
    """name -> default of every parameter `method` takes (`REQUIRED` for those without a default)."""
    if method not in METHODS:
        raise ConfigError(f"unknown matching method '{method}'; choose one of {sorted(METHODS)} "
                          "(config key matching.methods.<name>.method).")
    return dict(METHODS[method].params)


def relevant_parameters(spec: dict) -> dict:
    """A method's settings without those its distance ignores (e.g. `link` unless distance is propensity):
    what a person reading a run plan needs."""
    dist = spec.get("distance")
    drop = set()
    if dist is not None:
        drop |= set(PROPENSITY_ONLY) - set(PROPENSITY_OPTIONS.get(dist, ()))
        drop |= {"metric"} if dist != "embedding" else set()
        drop |= {"score"} if dist != "score" else set()
        drop |= {"C"} if dist == "propensity" and spec.get("penalty", "none") == "none" else set()
    if dist is None or dist not in SCALAR_DISTANCES:
        drop |= {"discard"} if spec.get("discard") == "none" else set()
    order = list(METHODS[spec["method"]].params) if spec.get("method") in METHODS else []
    rank = {k: i for i, k in enumerate(["method", *order])}
    return {k: spec[k] for k in sorted(spec, key=lambda k: rank.get(k, len(rank))) if k not in drop}


def match(method: str, data: MatchData, **params) -> MatchResult:
    """Run `method` on `data` with its parameters (a config block minus `method`): MatchIt's matchit()."""
    accepted = method_parameters(method)
    unknown = sorted(set(params) - set(accepted))
    renamed = {k: v for k, v in RENAMED.get(method, {}).items() if k in unknown}
    if renamed:
        raise ConfigError(f"matching method '{method}': " + "; ".join(
            f"'{old}' is now '{new}'" for old, new in renamed.items()) + ".")
    if unknown:
        raise ConfigError(f"matching method '{method}' does not take {unknown}; it takes {sorted(accepted)}.")
    missing = sorted(k for k, v in accepted.items() if v is REQUIRED and params.get(k) is None)
    if missing:
        raise ConfigError(f"matching method '{method}' needs {missing}.")
    p = {**accepted, **params}
    sw = sampling_weights(data, p.get("s_weights"), method)
    opt.check_estimand(p.get("estimand", "ATT"), METHODS[method].estimands, method)
    result = METHODS[method].run(data, p, sw)
    # MatchIt's match.data: the output weights are the matching weights x the s.weights
    if sw is not None:
        result.units["s_weight"] = sw
        result.units["weight"] = result.units["weight"].to_numpy(np.float64) * sw
        result.info["s_weights"] = p["s_weights"]
    result.units["estimand"] = result.info["estimand"]
    return result


def _run_constrained(data: MatchData, p: dict, sw: np.ndarray | None = None) -> MatchResult:
    """The reference study's matcher: the distance step on its embedding (as every distance method; an
    embedding distance has no common support, so nothing is discarded), then its own candidate rules (ATT
    pairs, units from them). A released distance matrix is the distance itself and is read as it is."""
    measure = None
    if not isinstance(data.embeddings.get(p["embedding"]), DistanceMatrix):
        measure = distance_measure(data, "embedding", p["embedding"], p["metric"], who="greedy_constrained",
                                   random_state=p["random_state"])
    discarded = opt.common_support(None, data.treated, "none")
    result = match_greedy_constrained(data, **p, measure=measure)
    result.info["estimand"] = "ATT"
    result.info["n_discarded"] = int(discarded.sum())
    result.units = units_from_pairs(data, result.pairs, discarded, measure)
    return result


def _measure(method: str, data: MatchData, p: dict, sw: np.ndarray | None):
    """The distance step of every distance method: the measure and the units outside common support."""
    measure = distance_measure(data, p["distance"], p["embedding"], p["metric"], p["covariates"], p["link"],
                               p["penalty"], p["C"], p["standardize"], p["max_iter"], p["score"],
                               random_state=p["random_state"], who=method, s_weights=sw,
                               l1_ratio=p["l1_ratio"],
                               n_estimators=p["n_estimators"])
    return measure, opt.common_support(measure.score, data.treated, p["discard"])


# ---------------------------------------------------------------- pair methods


@dataclass
class PairContext:
    """What a pair method's per-stratum solver reads: the rows it matches on, their metric, the caliper on the
    distance (`cal`, and `dcal` the one on the matched rows: none when mahvars carries it in the rule), the
    pair rule, the mahvars rows, the method's parameters, and the run's info (solvers add to it)."""

    measure: DistanceMeasure
    X: np.ndarray
    metric: str
    cal: float
    dcal: float
    rule: opt.PairRule
    mah: np.ndarray | None
    p: dict
    info: dict


@dataclass(frozen=True)
class PairKind:
    """A pair method: `solve(ctx, f, o, accept)` matches the focal positions f to the others o of one stratum
    and returns (focal indices, other indices, distances, subclass per edge or None); `order(F, OT, D, p,
    n_strata)` orders the merged strata's pairs; `subclasses`: the result is a partition (full matching), not
    matched sets."""

    name: str
    solve: Callable
    order: Callable
    subclasses: bool = False


def _solve_nearest(ctx: PairContext, f, o, accept):
    return (*_nearest(ctx.measure, ctx.X, f, o, ctx.cal, accept, ctx.p, ctx.p["random_state"], ctx.rule,
                      ctx.mah),
            None)


def _solve_greedy(ctx: PairContext, f, o, accept):
    lists = CrossLists(ctx.X[f], ctx.X[o], ctx.metric, ctx.p["k"])
    fi, oi, d = greedy_pairs(ctx.X[f], ctx.X[o], ctx.metric, ctx.dcal, ctx.p["n_pairs"], ctx.p["k"],
                             lists=lists,
                             accept=accept)
    ctx.info["n_refills"] = ctx.info.get("n_refills", 0) + lists.n_refills
    return fi, oi, d, None


def _solve_optimal(ctx: PairContext, f, o, accept):
    ratio = min(int(ctx.p["ratio"]), len(o))  # more copies of a focal unit than others cannot be filled
    fi, oi, d, ctx.info["solver"] = optimal_sets(ctx.X[f], ctx.X[o], ctx.metric, ctx.dcal, ratio, ctx.p["k"],
                                                 accept)
    return fi, oi, d, None


def _solve_full(ctx: PairContext, f, o, accept):
    fi, oi, d, sub, ctx.info["solver"] = full_sets(ctx.X[f], ctx.X[o], ctx.metric, ctx.dcal, ctx.p["k"],
                                                   accept)
    return fi, oi, d, sub


def _keep_order(F, OT, D, p, n_strata):
    return F, OT, D


def _greedy_order(F, OT, D, p, n_strata):
    """Strata merged in the global greedy order (closest first), cut at n_pairs."""
    if n_strata <= 1:
        return F, OT, D
    o = np.lexsort((OT, F, D))[: (len(F) if p["n_pairs"] is None else int(p["n_pairs"]))]
    return F[o], OT[o], D[o]


def _distance_order(F, OT, D, p, n_strata):
    o = np.lexsort((F, D))
    return F[o], OT[o], D[o]


PAIR_KINDS = {k.name: k for k in (
    PairKind("nearest", _solve_nearest, _keep_order),
    PairKind("greedy", _solve_greedy, _greedy_order),
    PairKind("optimal", _solve_optimal, _distance_order),
    PairKind("full", _solve_full, _keep_order, subclasses=True),
)}


def _run_pairs(data: MatchData, p: dict, sw: np.ndarray | None = None, *, kind: PairKind) -> MatchResult:
    """A pair method (nearest, greedy, optimal, full): the distance step, then `kind` within each exact
    stratum."""
    measure, discarded = _measure(kind.name, data, p, sw)
    return _pair_method(kind, data, measure, discarded, p)


def _pair_method(kind: PairKind, data: MatchData, measure: DistanceMeasure, discarded: np.ndarray, p: dict):
    method = kind.name
    split_groups(data, method)
    focal_val = opt.focal_value(p["estimand"])
    role = np.where(data.treated == focal_val, 1, 0)
    keep = ~discarded
    f_all, o_all = np.flatnonzero((role == 1) & keep), np.flatnonzero((role == 0) & keep)
    cal = _distance_caliper(measure, discarded, f_all, o_all, p)
    covcal = opt.CovariateCaliper(data, p["covariate_caliper"], p["std_caliper"], discarded)
    strata = opt.strata(data, p["exact"])
    X = measure.features()
    metric = measure.metric
    mah = None
    # MatchIt's mahvars: the score orders, calipers and discards; these rows match
    if p.get("mahvars"):
        if p.get("s_weights") is not None:
            raise ConfigError("mahvars with s_weights is not offered (MatchIt weights the Mahalanobis "
                              "transform by "
                              "them); drop one.")
        if not measure.scalar:
            raise ConfigError("mahvars needs a scalar distance (propensity or score) to order and caliper "
                              "by, as "
                              "MatchIt; with another distance list the columns in covariates instead.")
        mah = matchit_rows(covariate_matrix(data, p["mahvars"], method), data.treated, ~discarded,
                           "mahalanobis")
        X, metric = mah, "euclidean"
    rule = opt.PairRule(len(data.ids), covcal, opt.antiexact_codes(data, p.get("antiexact")),
                        measure.score if mah is not None else None, cal if mah is not None else np.inf)
    info = {}
    ctx = PairContext(measure, X, metric, cal, np.inf if mah is not None else cal, rule, mah, p, info)
    found = []
    for s in np.unique(strata[np.r_[f_all, o_all]]):
        f, o = f_all[strata[f_all] == s], o_all[strata[o_all] == s]
        if len(f) == 0 or len(o) == 0:
            continue
        accept = (lambda a, b, f=f, o=o: rule.ok(f[a], o[b])) if rule else None
        fi, oi, d, sub = kind.solve(ctx, f, o, accept)
        found.append((f[fi], o[oi], d, sub))
    F, OT, D, S = _merge(found, kind, p)
    t_pos, c_pos = (F, OT) if focal_val == 1 else (OT, F)
    if kind.subclasses:
        unit_sub = _unit_subclass(len(data.ids), F, OT, S)
        units = _units(data, opt.subclass_weights(unit_sub, data.treated, p["estimand"]), unit_sub, discarded,
                       measure)
        # each treated unit's controls share its weight (1 / its controls; a control's several treated get 1
        # each)
        per_treated = pd.Series(t_pos).map(pd.Series(t_pos).value_counts()).to_numpy(np.float64)
        pair_w = 1.0 / per_treated if len(F) else None
        subclass = S + 1 if len(F) else None
    else:
        pair_w, subclass = _set_columns(F)
        units = _set_units(data, F, OT, not p.get("replace"), discarded, measure)
    info.update(
        {
            "caliper": cal,
            "metric": metric,
            "distance": measure.name,
            "estimand": p["estimand"],
            "total_distance": float(np.sum(D)),
            "k": p["k"],
            "n_discarded": int(discarded.sum()),
            **measure.info,
        }
    )
    for key in ("ratio", "replace", "m_order", "ties", "exact", "antiexact", "mahvars", "discard"):
        if key in p:
            info[key] = p[key]
    result = make_result(
        data,
        method,
        p["embedding"] or "",
        t_pos,
        c_pos,
        D,
        info,
        weight=pair_w,
        subclass=subclass,
        extra=_score_columns(measure, t_pos, c_pos),
    )
    note = ratio_shortfall(
        method,
        int(p.get("ratio") or 1),
        F,
        n_other=len(o_all),
        focal="treated" if focal_val == 1 else "control",
    )
    if note:
        warnings.warn(note, stacklevel=3)
        result.info["warnings"].append(note)
    units["note"] = note  # the balance stage puts it into the matched sample's status
    result.units = units
    return result


def ratio_shortfall(method: str, ratio: int, focal_positions, n_other: int, focal: str = "treated") -> str:
    """'' when every matched focal unit got `ratio` matches; else one sentence saying the ratio was not met
    (how many matched focal units got fewer, and how many units the other group had), e.g. ratio 100000 with
    72 controls. MatchIt warns likewise ("Fewer control units than treated units...")."""
    if ratio <= 1 or len(focal_positions) == 0:
        return ""
    counts = np.unique(np.asarray(focal_positions), return_counts=True)[1]
    short = int((counts < ratio).sum())
    if short == 0:
        return ""
    other = "control" if focal == "treated" else "treated"
    return (
        f"{method}: ratio {ratio} not met: {short} of {len(counts)} matched {focal} units got fewer than "
        f"{ratio} "
        f"matches (the {other} group has {n_other} units within reach); the matched sample is smaller "
        "than "
        "asked."
    )


def _nearest(measure, X, f, o, cal, accept, p, rng_state, rule=None, mah=None):
    m_order = p["m_order"] or (
        "largest" if measure.scalar and p["estimand"] == "ATT" else "smallest" if measure.scalar else "data"
    )
    if (
        m_order == "closest"
        and (mah is not None or measure.scalar or measure.name in COVARIATE_TRANSFORMS)
        and p.get("ties", "matchit") == "matchit"
    ):
        pass  # MatchIt's closest-first list on its own scans (below)
    elif m_order == "closest":
        if int(p["ratio"]) != 1 or p["replace"]:
            raise ConfigError(
                "nearest: m_order 'closest' is the greedy method (1:1 without replacement); "
                "use method: greedy or another m_order."
            )
        if mah is not None:
            return greedy_pairs(mah[f], mah[o], "euclidean", np.inf, None, p["k"], accept=accept)
        return greedy_pairs(X[f], X[o], measure.metric, cal, None, p["k"], accept=accept)
    order = focal_order(m_order, len(f), measure.score[f] if measure.scalar else None, rng_state)
    if p.get("ties", "matchit") not in ("matchit", "index"):
        raise ConfigError(f"nearest: ties must be matchit or index, got '{p['ties']}'.")
    if p.get("ties") == "index" and mah is None:  # ganmatch's earlier order: lower score, then lower row
        if measure.scalar:
            return line_sets(
                measure.score[f], measure.score[o], order, int(p["ratio"]), bool(p["replace"]), cal, accept
            )
        return feature_sets(
            X[f], X[o], measure.metric, order, int(p["ratio"]), bool(p["replace"]), cal, accept, p["k"]
        )
    if mah is not None:  # MatchIt's scan on the mahvars rows, the score's caliper in the rule
        return covariate_sets(
            mah, f, o, order, int(p["ratio"]), bool(p["replace"]), np.inf, rule, mahvars=True
        )
    if measure.scalar:
        return line_sets(
            measure.score[f],
            measure.score[o],
            order,
            int(p["ratio"]),
            bool(p["replace"]),
            cal,
            accept,
            f,
            o,
            places(measure.score),
        )
    # MatchIt's C++ scan on the transformed covariates, ties included
    if measure.name in COVARIATE_TRANSFORMS:
        return covariate_sets(X, f, o, order, int(p["ratio"]), bool(p["replace"]), cal, rule)
    return feature_sets(
        X[f], X[o], measure.metric, order, int(p["ratio"]), bool(p["replace"]), cal, accept, p["k"]
    )


def _distance_caliper(measure: DistanceMeasure, discarded, f_all, o_all, p) -> float:
    """The caliper on the distance: on a scalar score `caliper` (in its SDs when std_caliper, as MatchIt); on
    features `caliper` is absolute (std_caliper must be false, as MatchIt for matrix distances), or relative
    to the focal units' nearest distances (caliper_sd, caliper_quantile)."""
    one_caliper(p["caliper"], p["caliper_sd"], p["caliper_quantile"])
    if p["caliper"] is not None:
        if measure.scalar:
            return opt.score_caliper(measure.score, discarded, p["caliper"], p["std_caliper"])
        if p["std_caliper"]:
            raise ConfigError(
                "a caliper on an embedding or covariate distance is absolute: set std_caliper: "
                "false, "
                "or use caliper_sd / caliper_quantile (MatchIt refuses std.caliper for such "
                "distances)."
            )
    X = measure.features()
    return caliper_between(
        X[f_all], X[o_all], measure.metric, p["caliper"], p["caliper_sd"], p["caliper_quantile"]
    )


def _merge(found, kind: PairKind, p):
    """The strata's pairs in one list, in the kind's order; subclasses renumbered across strata (full
    matching)."""
    if not found:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros(0), z
    F, OT, D = (np.concatenate([x[i] for x in found]) for i in range(3))
    if kind.subclasses:
        offsets = np.cumsum([0] + [int(x[3].max()) + 1 if len(x[3]) else 0 for x in found[:-1]])
        S = np.concatenate([x[3] + off for x, off in zip(found, offsets, strict=True)])
        return F, OT, D, S
    return (*kind.order(F, OT, D, p, len(found)), np.zeros(0, np.int64))


def _set_columns(F):
    """Pair weights 1 / (matches of the focal unit) and subclasses numbered by focal unit in matching
    order."""
    if len(F) == 0:
        return None, None
    _, first, inverse = np.unique(F, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(1, len(first) + 1)
    return 1.0 / np.bincount(inverse)[inverse].astype(np.float64), rank[inverse]


def _unit_subclass(n, F, OT, S):
    code = np.full(n, -1, np.int64)
    if len(F):
        code[F] = S
        code[OT] = S
    return code


def _score_columns(measure: DistanceMeasure, t_pos, c_pos) -> dict:
    if measure.logit is None:
        return {}
    return {"treated_logit": measure.logit[t_pos], "control_logit": measure.logit[c_pos]}


# ---------------------------------------------------------------- subclass methods


def _run_subclass(data: MatchData, p: dict, sw: np.ndarray | None = None) -> MatchResult:
    """MatchIt's subclass: the distance step, then quantile subclasses of the scalar distance."""
    measure, discarded = _measure("subclass", data, p, sw)
    if not measure.scalar:
        raise ConfigError("subclass needs a scalar distance (distance: propensity or score), as MatchIt.")
    code, cuts = quantile_subclasses(
        measure.score, data.treated, discarded, p["subclass"], int(p["min_n"]), p["estimand"]
    )
    info = {
        "distance": measure.name,
        "n_subclasses": int(code.max()) + 1 if (code >= 0).any() else 0,
        "cuts": [float(c) for c in cuts],
        "n_discarded": int(discarded.sum()),
        **measure.info,
    }
    return _set_result("subclass", data, code, discarded, measure, p, info)


def _run_strata(data: MatchData, p: dict, sw: np.ndarray | None = None, *, method: str) -> MatchResult:
    """exact and cem: subclasses of the covariates' (coarsened) values, no distance."""
    if data.covariates is None or any(c not in data.covariates for c in p["covariates"]):
        raise ConfigError(
            f"{method}: covariates {p['covariates']} are not all columns of the attributes table."
        )
    split_groups(data, method)
    cov = data.covariates[list(p["covariates"])]
    code = (
        exact_subclasses(cov, data.treated)
        if method == "exact"
        else cem_subclasses(cov, data.treated, p["cutpoints"])
    )
    info = {"n_subclasses": int(code.max()) + 1, "covariates": list(p["covariates"])}
    return _set_result(method, data, code, np.zeros(len(data.ids), bool), None, p, info)


def cardinality_tolerances(tols, covariates: list[str]) -> np.ndarray:
    """`tols` as one tolerance per covariate: a number for all, or {covariate: tolerance} naming each."""
    if isinstance(tols, dict):
        missing = [c for c in covariates if c not in tols]
        extra = [c for c in tols if c not in covariates]
        if missing or extra:
            raise ConfigError(
                "cardinality: tols must name every covariate and nothing else (missing "
                f"{missing}, "
                f"not covariates {extra})."
            )
        out = np.array([float(tols[c]) for c in covariates])
    else:
        out = np.full(len(covariates), float(tols))
    if (out < 0).any() or not np.isfinite(out).all():
        raise ConfigError(f"cardinality: tols must be finite and >= 0, got {tols}.")
    return out


def _run_cardinality(data: MatchData, p: dict, sw: np.ndarray | None = None) -> MatchResult:
    """MatchIt's cardinality matching within each `exact` stratum (`cardinality.cardinality_weights`)."""
    if p["solver"] not in SOLVERS:
        raise ConfigError(
            f"cardinality: solver must be one of {list(SOLVERS)} (scipy's HiGHS), got '{p['solver']}'."
        )
    split_groups(data, "cardinality")
    X = covariate_matrix(data, p["covariates"], "cardinality")
    tols = cardinality_tolerances(p["tols"], list(p["covariates"]))
    if p["std_tols"]:
        X = X / tolerance_scale(X, data.treated, p["estimand"], sw)
    strata = opt.strata(data, p["exact"])
    w = np.zeros(len(data.ids))
    infos = []
    for s in np.unique(strata):
        rows = np.flatnonzero(strata == s)
        t = data.treated[rows]
        if (t == 0).all() or (t == 1).all():
            continue
        w[rows], info = cardinality_weights(
            t, X[rows], p["estimand"], tols, p["ratio"], None if sw is None else sw[rows], p["time"]
        )
        infos.append(info)
    code = np.full(len(data.ids), -1, np.int64)
    info = {
        "covariates": list(p["covariates"]),
        "tols": [float(x) for x in tols],
        "std_tols": bool(p["std_tols"]),
        "ratio": p["ratio"],
        "solver": "highs",
        "optimal": all(i["optimal"] for i in infos),
        "objective": float(sum(i["objective"] for i in infos)),
        "n_subclasses": 0,
        "how": ", ".join(sorted({i["how"] for i in infos})),
    }
    result = _set_result("cardinality", data, code, np.zeros(len(data.ids), bool), None, p, info, weights=w)
    for i in infos:
        if "warning" in i:
            result.info["warnings"].append(i["warning"])
    return result


def _set_result(method, data, code, discarded, measure, p, info, weights=None):
    w = opt.subclass_weights(code, data.treated, p["estimand"]) if weights is None else weights
    units = _units(data, w, code, discarded, measure)
    info = {
        "method": method,
        "estimand": p["estimand"],
        "n_treated": int(data.treated.sum()),
        "n_control": int((data.treated == 0).sum()),
        "n_matched": 0,
        "n_treated_matched": int(((w > 0) & (data.treated == 1)).sum()),
        "n_control_matched": int(((w > 0) & (data.treated == 0)).sum()),
        "warnings": [],
        **info,
    }
    if info["n_treated_matched"] == 0 or info["n_control_matched"] == 0:
        msg = f"{method}: no subclass holds both groups; nothing was matched."
        warnings.warn(msg, stacklevel=3)
        info["warnings"].append(msg)
    return MatchResult(pairs=_empty_pairs(), info=info, units=units)


# ---------------------------------------------------------------- the units table


def _units(data: MatchData, weight, subclass, discarded, measure: DistanceMeasure | None) -> pd.DataFrame:
    """MatchIt's per-unit output: weight, subclass (<NA> when none), discarded, the scalar distance, and the
    propensity model's logit and probability (NaN for other distances)."""
    n = len(data.ids)
    nan = np.full(n, np.nan)
    sub = pd.array(
        np.where(subclass >= 0, subclass + 1, 0) if subclass is not None else np.zeros(n, int), dtype="Int64"
    )
    if subclass is None:
        sub[:] = pd.NA
    else:
        sub[subclass < 0] = pd.NA
    return pd.DataFrame(
        {
            "image_id": data.id_strings,
            "treated": data.treated.astype(np.int64),
            "weight": np.asarray(weight, np.float64),
            "subclass": sub,
            "discarded": np.asarray(discarded, bool),
            "distance": measure.score.astype(np.float64) if measure is not None and measure.scalar else nan,
            "logit": measure.logit if measure is not None and measure.logit is not None else nan,
            "propensity": measure.propensity
            if measure is not None and measure.propensity is not None
            else nan,
        }
    )


def _set_units(
    data: MatchData, F, OT, numbered: bool, discarded, measure: DistanceMeasure | None
) -> pd.DataFrame:
    """The units table of matched sets (focal positions F, their matches OT): MatchIt's set weights and, when
    `numbered` (no replacement), one subclass per focal unit's set."""
    sub = None
    if numbered:
        _, s = _set_columns(F)
        sub = _unit_subclass(len(data.ids), F, OT, s - 1 if s is not None else np.zeros(0, np.int64))
    return _units(data, set_weights(len(data.ids), F, OT), sub, discarded, measure)


def units_from_pairs(data: MatchData, pairs: pd.DataFrame, discarded: np.ndarray | None = None,
                     measure: DistanceMeasure | None = None) -> pd.DataFrame:
    """The units table of an ATT pairs table without replacement (the reference study's matcher's)."""
    pos = pd.Series(np.arange(len(data.ids)), index=data.ids)
    T = pos.reindex(pairs["treated_id"].astype(str)).to_numpy(np.int64)
    C = pos.reindex(pairs["control_id"].astype(str)).to_numpy(np.int64)
    keep_all = np.zeros(len(data.ids), bool) if discarded is None else discarded
    return _set_units(data, T, C, True, keep_all, measure)


# ---------------------------------------------------------------- the registry

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "nearest",
            run=partial(_run_pairs, kind=PAIR_KINDS["nearest"]),
            params={
                **DISTANCE,
                **CALIPER,
                **COMMON,
                "ratio": 1,
                "replace": False,
                "m_order": None,
                "ties": "matchit",
                "k": 100,
            },
            description="each focal unit in m_order takes its nearest available units (MatchIt's nearest)",
        ),
        Method(
            "greedy",
            run=partial(_run_pairs, kind=PAIR_KINDS["greedy"]),
            params={**DISTANCE, **CALIPER, **COMMON, "n_pairs": None, "k": 100},
            description="globally closest (focal, other) pair first, 1:1 without replacement",
        ),
        Method(
            "optimal",
            run=partial(_run_pairs, kind=PAIR_KINDS["optimal"]),
            params={**DISTANCE, **CALIPER, **COMMON, "ratio": 1, "k": 100},
            description="ratio:1 matching minimising the total distance (MatchIt's optimal)",
        ),
        Method(
            "full",
            run=partial(_run_pairs, kind=PAIR_KINDS["full"]),
            params={**DISTANCE, **CALIPER, **COMMON, "k": 100},
            estimands=("ATT", "ATC", "ATE"),
            description="optimal full matching: subclasses of one unit and one or more of the other group",
        ),
        Method(
            "subclass",
            run=_run_subclass,
            params={
                **DISTANCE,
                "discard": "none",
                "estimand": "ATT",
                "random_state": None,
                "subclass": 6,
                "min_n": 1,
            },
            estimands=("ATT", "ATC", "ATE"),
            description="subclasses between quantiles of a scalar distance (MatchIt's subclass)",
        ),
        Method(
            "exact",
            run=partial(_run_strata, method="exact"),
            params={"covariates": REQUIRED, "estimand": "ATT", "random_state": None, "s_weights": None},
            estimands=("ATT", "ATC", "ATE"),
            description="one subclass per combination of the covariates' values",
        ),
        Method(
            "cem",
            run=partial(_run_strata, method="cem"),
            params={
                "covariates": REQUIRED,
                "cutpoints": None,
                "estimand": "ATT",
                "random_state": None,
                "s_weights": None,
            },
            estimands=("ATT", "ATC", "ATE"),
            description="coarsened exact matching (numeric covariates binned)",
        ),
        Method(
            "cardinality",
            run=_run_cardinality,
            params={
                "covariates": REQUIRED,
                "tols": 0.05,
                "std_tols": True,
                "ratio": 1,
                "exact": None,
                "estimand": "ATT",
                "solver": "highs",
                "time": 120.0,
                "random_state": None,
                "s_weights": None,
            },
            estimands=("ATT", "ATC", "ATE"),
            description="the largest sample with covariate means balanced within tols "
                        "(MatchIt's cardinality)",
        ),
    )
}


def _constrained_params() -> dict:
    import inspect

    return {
        k: (REQUIRED if p.default is inspect.Parameter.empty else p.default)
        for k, p in inspect.signature(match_greedy_constrained).parameters.items()
        if k != "data" and p.kind is not p.KEYWORD_ONLY  # keyword-only: given by the runner, not the config
    }


METHODS["greedy_constrained"] = Method(
    "greedy_constrained",
    _constrained_params(),
    _run_constrained,
    ("ATT",),
    description="the reference study's constrained greedy matching",
)
