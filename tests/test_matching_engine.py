"""The MatchIt-style engine: each method against a brute-force reference written out here or in
benchmarks/matchit_parity.py (MatchIt's algorithms on full matrices), MatchIt's weights, subclasses and
options, the unpenalised propensity fit, and the live parity with R's MatchIt when Rscript is present."""

from __future__ import annotations

import importlib.util
import itertools

import numpy as np
import pandas as pd
import pytest
from helpers import ROOT

from ganmatch.analysis import distances
from ganmatch.analysis.outcomes import weighted_estimate
from ganmatch.errors import ConfigError, InputDataError
from ganmatch.matching import MatchData, fit_logistic_irls, full_sets, match, optimal_sets
from ganmatch.matching import options as opt
from ganmatch.matching.subclass import coarsen, quantile_subclasses


def _parity_module():
    spec = importlib.util.spec_from_file_location("matchit_parity", ROOT / "benchmarks" / "matchit_parity.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


PARITY = _parity_module()


def study(n=300, seed=0, ties=False):
    """Confounded data: covariates a, b (continuous), c (binary), age; a score column ps; an embedding e."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    treated = (rng.random(n) < 1 / (1 + np.exp(-(1.2 * z[:, 0] - 0.8 * z[:, 1] - 0.5)))).astype(int)
    cov = pd.DataFrame({"a": z[:, 0], "b": z[:, 1], "c": (z[:, 2] > 0).astype(int),
                        "age": np.round(rng.normal(40, 10, n), 0 if ties else 6)})
    cov["ps"] = np.round(1 / (1 + np.exp(-z[:, 0])), 2 if ties else 12)
    ids = np.array([f"u{i:03d}" for i in range(n)])
    return MatchData(ids=ids, treated=treated, covariates=cov, embeddings={"e": z.astype(np.float32)})


def pair_set(res, estimand="ATT"):
    t, c = ("treated_id", "control_id") if estimand != "ATC" else ("control_id", "treated_id")
    return set(zip(res.pairs[t], res.pairs[c], strict=True))


# ---------------------------------------------------------------- nearest = MatchIt's algorithm, written out


NEAREST_CASES = [
    {"distance": "score", "score": "ps"},
    {"distance": "score", "score": "ps", "ratio": 2},
    {"distance": "score", "score": "ps", "ratio": 3, "replace": True},
    {"distance": "score", "score": "ps", "caliper": 0.05},
    {"distance": "score", "score": "ps", "m_order": "smallest", "estimand": "ATC"},
    {"distance": "score", "score": "ps", "exact": ["c"], "discard": "both"},
    {"distance": "score", "score": "ps", "caliper": 0.3, "covariate_caliper": {"age": 0.5}},
    {"distance": "score", "score": "ps", "m_order": "data"},
    {"distance": "mahalanobis", "covariates": ["a", "b", "age"]},
    {"distance": "scaled_euclidean", "covariates": ["a", "b"], "ratio": 2},
    {"distance": "embedding", "embedding": "e", "k": 3},
    {"distance": "embedding", "embedding": "e", "k": 2, "exact": ["c"], "covariate_caliper": {"age": 1.0}},
    {"distance": "propensity", "covariates": ["a", "b", "c"], "ratio": 2, "replace": True},
    {"distance": "score", "score": "ps", "antiexact": ["c"]},
    {"distance": "mahalanobis", "covariates": ["a", "b", "age"], "antiexact": ["c"], "ratio": 2},
    {"distance": "robust_mahalanobis", "covariates": ["a", "b", "age"]},
    {"distance": "scaled_euclidean", "covariates": ["age"], "ratio": 2},
]


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("params", NEAREST_CASES)
def test_nearest_equals_matchits_algorithm_on_full_matrices(params, ties):
    data = study(seed=len(params), ties=ties)
    res = match("nearest", data, **params)
    assert pair_set(res, params.get("estimand", "ATT")) == PARITY.reference_pairs(data, "nearest", params)
    matched = np.isin(data.ids, np.r_[res.pairs.treated_id, res.pairs.control_id])
    assert ((res.units["weight"].to_numpy() > 0) == matched).all()


def test_nearest_rounds_and_weights_are_matchits():
    data = study(seed=4)
    res = match("nearest", data, distance="score", score="ps", ratio=2)
    u = res.units.set_index("image_id")
    matched_controls = u[(u.treated == 0) & (u.weight > 0)]
    # rescaled to the matched controls
    assert np.isclose(matched_controls.weight.sum(), len(matched_controls))
    assert (u.loc[u.treated == 1, "weight"].isin([0.0, 1.0])).all()
    sizes = res.pairs.groupby("treated_id").size()
    assert sizes.max() == 2
    first_round = res.pairs.drop_duplicates("treated_id")
    # every first match before any second
    assert list(first_round.index) == list(range(len(first_round)))


# ---------------------------------------------------------------- optimal and full: brute force


def test_optimal_ratio_two_is_the_cheapest_assignment():
    rng = np.random.default_rng(2)
    Xf, Xo = rng.normal(size=(3, 2)), rng.normal(size=(7, 2))
    D = distances.pairwise(Xf, Xo, force=True).astype(np.float64)
    best = min(sum(D[i // 2, c] for i, c in enumerate(p)) for p in itertools.permutations(range(7), 6))
    f, o, d, dense = optimal_sets(Xf, Xo, ratio=2)
    assert dense == "dense" and np.isclose(d.sum(), best) and np.bincount(f).tolist() == [2, 2, 2]
    f2, o2, d2, dense2 = optimal_sets(Xf, Xo, ratio=2, k=2, dense_limit=0)
    assert dense2 == "sparse_knn" and np.isclose(d2.sum(), best, rtol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_optimal_with_too_few_controls_for_the_ratio_is_variable_ratio_as_matchit(seed):
    """4 focal units, 6 others, ratio 2: as MatchIt 4.7 (optmatch's mean.controls = 1.5) every focal unit gets
    1 or 2 others and all 6 are used, at the least total distance (brute force over every assignment); with
    fewer others than focal units, 1:1."""
    rng = np.random.default_rng(seed)
    Xf, Xo = rng.normal(size=(4, 2)), rng.normal(size=(6, 2))
    D = distances.pairwise(Xf, Xo, force=True).astype(np.float64)
    best = min(sum(D[a, j] for j, a in enumerate(assign)) for assign in itertools.product(range(4), repeat=6)
               if all(1 <= assign.count(i) <= 2 for i in range(4)))
    for limit in (4_000_000, 0):                              # the dense and the sparse solver
        f, o, d, _ = optimal_sets(Xf, Xo, ratio=2, k=6, dense_limit=limit)
        assert sorted(o) == list(range(6)) and set(np.bincount(f, minlength=4)) <= {1, 2}
        assert np.isclose(d.sum(), best, rtol=1e-5)
    f, o, d, _ = optimal_sets(Xf, Xo[:3], ratio=2)
    assert len(f) == 3 and np.bincount(f).max() == 1 and sorted(o) == [0, 1, 2]


def _min_edge_cover(D: np.ndarray) -> float:
    nf, no = D.shape
    edges = [(i, j) for i in range(nf) for j in range(no)]
    best = np.inf
    for mask in range(1, 1 << len(edges)):
        chosen = [e for b, e in enumerate(edges) if mask >> b & 1]
        if {e[0] for e in chosen} == set(range(nf)) and {e[1] for e in chosen} == set(range(no)):
            best = min(best, sum(D[e] for e in chosen))
    return best


@pytest.mark.parametrize("seed", range(4))
def test_full_matching_is_the_minimum_edge_cover(seed):
    rng = np.random.default_rng(seed)
    Xf, Xo = rng.normal(size=(3, 2)), rng.normal(size=(4, 2))
    D = distances.pairwise(Xf, Xo, force=True).astype(np.float64)
    f, o, d, sub, dense = full_sets(Xf, Xo)
    assert dense == "dense" and np.isclose(d.sum(), _min_edge_cover(D))
    assert set(f) == {0, 1, 2} and set(o) == {0, 1, 2, 3}
    for s in np.unique(sub):                                   # subclasses are stars: one side has one unit
        assert min(len(set(f[sub == s])), len(set(o[sub == s]))) == 1


def test_full_matching_with_tied_scores_still_forms_stars_and_both_analyses_agree():
    from ganmatch.analysis.outcomes import paired_outcomes, uses_pairs

    data = study(300, 9, ties=True)
    data.covariates["ps"] = np.round(data.covariates["ps"], 1)       # a handful of distinct scores: many ties
    res = match("full", data, distance="score", score="ps")
    pairs, units = res.pairs, res.units
    for _, g in pairs.groupby("subclass"):
        assert min(g["treated_id"].nunique(), g["control_id"].nunique()) == 1
    assert units["weight"].gt(0).all()
    y = pd.Series(np.random.default_rng(0).normal(size=len(data.ids)), index=data.ids)
    y_t, y_c, w, cl = paired_outcomes(pairs, y)
    by_pairs = np.mean(pd.Series(w * (y_t - y_c)).groupby(cl).sum() / pd.Series(w).groupby(cl).sum())
    t = units["treated"].to_numpy()
    uw = units["weight"].to_numpy()
    yy = y.reindex(units["image_id"]).to_numpy()
    by_weights = np.sum(uw * yy * t) / np.sum(uw * t) - np.sum(uw * yy * (1 - t)) / np.sum(uw * (1 - t))
    assert np.isclose(by_pairs, by_weights)
    assert not uses_pairs(pairs, units)          # treated units share subclasses: the weighted analysis


@pytest.mark.parametrize("seed", range(40))
def test_line_full_matching_has_the_general_solvers_objective(seed):
    """The one-dimensional solver against the general one (a maximum-gain assignment plus nearest edges) on
    random scores, half of them rounded so that ties abound: the same total distance, every unit covered,
    stars."""
    from ganmatch.matching.optimal import line_full

    rng = np.random.default_rng(seed)
    nf, no = int(rng.integers(1, 25)), int(rng.integers(1, 25))
    # small integers: ties everywhere, and distances exact in the general solver's float32 too
    if seed % 2:
        xf, xo = rng.integers(0, 12, nf).astype(float), rng.integers(2, 15, no).astype(float)
    else:
        xf, xo = rng.normal(size=nf), rng.normal(0.4, 1.2, size=no)
    general = full_sets(xf[:, None], xo[:, None], line=False)
    f, o, d, sub, dense = full_sets(xf[:, None], xo[:, None], line=True)
    assert general[4] == "dense" and dense == "line"
    general_cost = np.abs(xf[general[0]] - xo[general[1]]).sum()          # its cover's cost in float64
    if seed % 2:
        assert d.sum() == general_cost
    # the general solver compares float32 distances: equal to their precision, never better
    else:
        assert np.isclose(d.sum(), general_cost, rtol=1e-6) and d.sum() <= general_cost + 1e-12
    # the DP's value is the cover's cost
    assert np.isclose(line_full(xf, xo)[3], d.sum(), rtol=1e-12, atol=1e-12)
    assert set(f) == set(range(nf)) and set(o) == set(range(no))
    assert np.allclose(d, np.abs(xf[f] - xo[o]))
    for s in np.unique(sub):
        assert min(len(set(f[sub == s])), len(set(o[sub == s]))) == 1


@pytest.mark.parametrize("seed", range(6))
def test_line_full_matching_equals_brute_force_on_tiny_problems(seed):
    rng = np.random.default_rng(100 + seed)
    nf, no = (2, 4) if seed % 2 else (3, 3)
    xf, xo = np.round(rng.normal(size=nf), 1), np.round(rng.normal(size=no), 1)
    best = _min_edge_cover(np.abs(xf[:, None] - xo[None, :]))
    assert np.isclose(full_sets(xf[:, None], xo[:, None], line=True)[2].sum(), best)


def test_large_full_matching_on_a_score_takes_the_line_solver():
    """Past the dense solver's size a scalar distance without calipers goes to the line solver: everyone
    matched, its objective, stars; with a caliper it stays with the general solver."""
    from ganmatch.matching.optimal import line_full

    rng = np.random.default_rng(3)
    n = 4_200
    treated = (np.arange(n) % 2).astype(int)
    ps = np.round(rng.beta(2, 5, n) + 0.1 * treated, 3)
    data = MatchData(ids=np.array([f"u{i}" for i in range(n)]), treated=treated,
                     covariates=pd.DataFrame({"ps": ps}))
    res = match("full", data, distance="score", score="ps")
    assert res.info["solver"] == "line" and (res.units["weight"] > 0).all()
    assert np.isclose(res.info["total_distance"], line_full(ps[treated == 1], ps[treated == 0])[3])
    for _, g in res.pairs.groupby("subclass"):
        assert min(g["treated_id"].nunique(), g["control_id"].nunique()) == 1


def test_reference_lapack_routines_solve_and_factor():
    from ganmatch.matching import reflapack

    rng = np.random.default_rng(0)
    A = rng.normal(size=(5, 5))
    S = A @ A.T + np.eye(5)
    assert np.allclose(reflapack.solve_identity(S) @ S, np.eye(5))
    R, piv, rank = reflapack.pivoted_cholesky(S)
    assert rank == 5 and np.allclose(R.T @ R, S[np.ix_(piv, piv)])
    # the largest diagonal first, as dpstrf
    assert piv[0] == int(np.argmax(np.diag(S)))


def _edge_cover_lp(D: np.ndarray) -> float:
    """The minimum edge cover's cost as a linear programme (its constraint matrix is totally unimodular)."""
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix

    nf, no = D.shape
    e = np.arange(nf * no)
    A = coo_matrix((np.ones(2 * nf * no), (np.r_[e // no, nf + e % no], np.r_[e, e])), shape=(nf + no,
                                                                                              nf * no))
    return linprog(D.ravel(), A_ub=-A.tocsr(), b_ub=-np.ones(nf + no), bounds=(0, 1), method="highs").fun


def test_full_matching_dense_and_sparse_reach_the_lp_optimum_and_weights_flow():
    rng = np.random.default_rng(7)
    Xf, Xo = rng.normal(size=(60, 3)), rng.normal(0.3, 1, size=(90, 3))
    best = _edge_cover_lp(distances.pairwise(Xf, Xo, force=True).astype(np.float64))
    assert np.isclose(full_sets(Xf, Xo)[2].sum(), best, rtol=1e-6)
    f, o, d, sub, dense = full_sets(Xf, Xo, k=2, dense_limit=0)
    assert dense == "sparse_knn" and np.isclose(d.sum(), best, rtol=1e-5)
    data = study(200, 3)
    for estimand in ("ATT", "ATC", "ATE"):
        res = match("full", data, distance="score", score="ps", estimand=estimand)
        u = res.units
        assert (u["weight"] > 0).all() and u["subclass"].notna().all()         # full matching keeps everyone
        sub = u["subclass"].astype(int).to_numpy()
        expect = opt.subclass_weights(sub - 1, u["treated"].to_numpy(), estimand)
        assert np.allclose(u["weight"], expect)


# ---------------------------------------------------------------- subclass, exact, cem


def test_subclass_quantiles_scooting_and_weights():
    score = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.15, 0.25, 0.9, 0.95])
    treated = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0])
    code, cuts = quantile_subclasses(score, treated, np.zeros(10, bool), subclass=3, min_n=1)
    assert np.allclose(cuts, np.quantile(score[treated == 1], [0, 1 / 3, 2 / 3, 1]))
    for s in range(3):                                   # every subclass holds both groups after scooting
        assert {0, 1} <= set(treated[code == s])
    dropped, _ = quantile_subclasses(score, treated, np.zeros(10, bool), subclass=3, min_n=0)
    assert (dropped == -1).sum() > 0
    w = opt.subclass_weights(code, treated, "ATT")
    assert (w[treated == 1] == 1).all() and np.isclose(w[treated == 0].sum(), 4)


def test_exact_and_cem_known_answers():
    cov = pd.DataFrame({"x": [0, 0, 1, 1, 2, 2, 2], "y": [1, 1, 0, 0, 1, 1, 0]})
    data = MatchData(ids=[f"i{i}" for i in range(7)], treated=[1, 0, 1, 0, 1, 0, 1], covariates=cov)
    res = match("exact", data, covariates=["x", "y"])
    u = res.units
    assert u["subclass"].isna().tolist() == [False] * 6 + [True]            # (2, 0) has no control
    assert u["weight"].tolist() == [1, 1, 1, 1, 1, 1, 0] and len(res.pairs) == 0
    assert coarsen(np.array([0.0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), 2).tolist() == [1] * 5 + [2] * 5
    assert coarsen(np.arange(10.0), "sturges").max() == 5                     # ceil(log2(10) + 1) bins
    res = match("cem", data, covariates=["x"], cutpoints={"x": [0.5]})       # x: {0} vs {1, 2}
    assert res.units["subclass"].notna().all()


# ---------------------------------------------------------------- the distance and the options


def test_unpenalised_fit_converges_to_the_maximum_likelihood():
    from sklearn.linear_model import LogisticRegression

    data = study(400, 5)
    Z = data.covariates[["a", "b", "c"]].to_numpy()
    beta, eta, converged = fit_logistic_irls(Z, data.treated)
    ref = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(Z, data.treated)
    assert converged and np.allclose(beta, np.r_[ref.intercept_, ref.coef_.ravel()], atol=1e-5)


def test_common_support_and_calipers_are_matchits():
    score = np.array([0.1, 0.2, 0.8, 0.3, 0.5, 0.9])
    treated = np.array([1, 1, 1, 0, 0, 0])
    assert opt.common_support(score, treated, "treated").tolist() == [True, True, False, False, False, False]
    assert opt.common_support(score, treated, "control").tolist() == [False, False, False, False, False, True]
    assert opt.common_support(score, treated, "both").tolist() == [True, True, False, False, False, True]
    assert np.isclose(opt.score_caliper(score, np.zeros(6, bool), 0.5, True), 0.5 * np.std(score, ddof=1))
    with pytest.raises(ConfigError, match="binary"):
        opt.CovariateCaliper(study(), {"c": 1}, True, np.zeros(300, bool))


def test_refused_combinations_raise_in_the_library_too():
    data = study()
    with pytest.raises(ConfigError, match="std_caliper"):
        match("nearest", data, distance="embedding", embedding="e", caliper=0.5)
    with pytest.raises(ConfigError, match="scalar distance"):
        match("subclass", data, distance="embedding", embedding="e")
    with pytest.raises(ConfigError, match="estimand"):
        match("nearest", data, distance="score", score="ps", estimand="ATE")
    with pytest.raises(ConfigError, match="needs"):
        match("exact", data)


def test_weighted_estimate_is_the_subclass_weighted_difference():
    y = np.array([3.0, 1.0, 5.0, 4.0, 0.0, 2.0])
    t = np.array([1, 0, 0, 1, 0, 0])
    sub = np.array([1, 1, 1, 2, 2, 2])
    w = opt.subclass_weights(sub - 1, t, "ATT")
    res = weighted_estimate(y, t, w, sub, n_boot=200)
    expect = np.mean([3 - 3, 4 - 1])                       # per subclass: treated minus the controls' mean
    assert np.isclose(res["estimate"], expect) and res["test"] == "weighted_cluster_bootstrap"


def test_ties_index_keeps_the_earlier_order_lower_score_then_lower_row():
    """`ties: index` (the demo's propensity method): equal distances to the lower score, equal scores to the
    lower row, whatever the focal unit's own row; the default follows MatchIt's scan and differs on such data.
    """
    data = study(seed=11, ties=True)
    data.covariates["ps"] = np.round(data.covariates["ps"], 1)
    params = {"distance": "score", "score": "ps", "m_order": "random", "random_state": 3, "caliper": 0.5}
    res = match("nearest", data, ties="index", **params)
    ps = data.covariates["ps"].to_numpy()
    f, o = np.flatnonzero(data.treated == 1), np.flatnonzero(data.treated == 0)
    pos = np.empty(len(o), np.int64)
    pos[np.lexsort((np.arange(len(o)), ps[o]))] = np.arange(len(o))
    tie = np.where(ps[o][None, :] < ps[f][:, None], -pos[None, :], len(o) + pos[None, :])
    order = np.random.default_rng(3).permutation(len(f))
    cal = 0.5 * np.std(ps, ddof=1)
    want = {(data.ids[f[a]], data.ids[o[b]])
            for a, b in PARITY.dense_nearest(np.abs(ps[f][:, None] - ps[o][None, :]), order, caliper=cal,
                                             tie=tie)}
    assert pair_set(res) == want and res.info["ties"] == "index"
    assert pair_set(match("nearest", data, **params)) != want


@pytest.mark.parametrize("ties", [False, True])
def test_mahvars_matches_on_mahalanobis_within_the_scores_caliper_as_matchit(ties):
    """mahvars: focal units in the score's order (largest first) each take the nearest unit in the Mahalanobis
    distance of the mahvars columns among those within the score's caliper, MatchIt's tie order."""
    from ganmatch.matching.distance import matchit_rows

    data = study(seed=5, ties=ties)
    res = match("nearest", data, distance="score", score="ps", mahvars=["a", "age"], caliper=0.5)
    ps = data.covariates["ps"].to_numpy()
    M = matchit_rows(data.covariates[["a", "age"]].to_numpy(), data.treated, np.ones(len(ps), bool),
                     "mahalanobis")
    f, o = np.flatnonzero(data.treated == 1), np.flatnonzero(data.treated == 0)
    D = np.zeros((len(f), len(o)))
    for j in range(M.shape[1]):
        D += (M[f, j][:, None] - M[o, j][None, :]) ** 2
    cal = 0.5 * np.std(ps, ddof=1)
    ok = np.abs(ps[f][:, None] - ps[o][None, :]) <= cal
    order = np.lexsort((np.arange(len(f)), -ps[f]))
    tie = PARITY.scan_ties(M[:, 0], f, o, np.zeros(len(ps), np.int64))
    want = {(data.ids[f[a]], data.ids[o[b]]) for a, b in PARITY.dense_nearest(D, order, ok=ok, tie=tie)}
    assert pair_set(res) == want and res.info["mahvars"] == ["a", "age"]


@pytest.mark.parametrize("method", ["nearest", "greedy", "optimal", "full"])
def test_antiexact_pairs_differ_on_every_antiexact_column(method):
    data = study(seed=2)
    res = match(method, data, distance="score", score="ps", antiexact=["c"])
    c = data.covariates.set_index(pd.Index(data.ids))["c"]
    assert len(res.pairs) and (c.reindex(res.pairs["treated_id"]).to_numpy()
                               != c.reindex(res.pairs["control_id"]).to_numpy()).all()


@pytest.mark.parametrize("distance", ["score", "mahalanobis"])
def test_closest_first_is_the_global_greedy_in_double_precision(distance):
    """m_order closest on a score or covariates (MatchIt's closest-first list): without ties, the pair closest
    in double precision first, then the closest among the rest, as a dense greedy."""
    from ganmatch.matching.distance import matchit_rows

    data = study(seed=8)
    params = {"distance": "score", "score": "ps"} if distance == "score" else \
        {"distance": "mahalanobis", "covariates": ["a", "b", "age"]}
    res = match("nearest", data, m_order="closest", **params)
    f, o = np.flatnonzero(data.treated == 1), np.flatnonzero(data.treated == 0)
    if distance == "score":
        ps = data.covariates["ps"].to_numpy()
        D = np.abs(ps[f][:, None] - ps[o][None, :])
    else:
        M = matchit_rows(data.covariates[["a", "b", "age"]].to_numpy(), data.treated, np.ones(len(data.ids),
                                                                                              bool),
                         "mahalanobis")
        D = ((M[f][:, None, :] - M[o][None, :, :]) ** 2).sum(axis=-1)
    want = set()
    for _ in range(min(D.shape)):
        a, b = np.unravel_index(np.argmin(D), D.shape)
        want.add((data.ids[f[a]], data.ids[o[b]]))
        D[a, :], D[:, b] = np.inf, np.inf
    assert pair_set(res) == want


def test_farthest_first_takes_the_hardest_focal_unit_first_and_matches_everyone():
    data = study(seed=4)
    res = match("nearest", data, distance="score", score="ps", m_order="farthest")
    ps = pd.Series(data.covariates["ps"].to_numpy(), index=data.ids)
    treated, controls = data.ids[data.treated == 1], data.ids[data.treated == 0]
    assert len(res.pairs) == min(len(treated), len(controls))
    hardest = max(treated, key=lambda t: np.min(np.abs(ps[controls].to_numpy() - ps[t])))
    assert res.pairs["treated_id"].iloc[0] == hardest
    two = match("nearest", data, distance="mahalanobis", covariates=["a", "b"], m_order="farthest", ratio=2)
    assert two.pairs.groupby("treated_id").size().max() <= 2


CPP_PARTIAL_SORT = r"""
#include <algorithm>
#include <vector>
#include <numeric>
#include <cstdio>
int main() { int T; if (scanf("%d", &T) != 1) return 1; while (T--) { int n, m; if (scanf("%d %d", &n, &m) != 2) return 1;
  std::vector<double> d(n); for (auto& x : d) if (scanf("%lf", &x) != 1) return 1;
  std::vector<int> ind(n); std::iota(ind.begin(), ind.end(), 0);
  std::partial_sort(ind.begin(), ind.begin() + m, ind.end(), [&d](int a, int b) { return d[a] < d[b]; });
  for (int i = 0; i < m; i++) printf("%d ", ind[i]); printf("\n"); } }
"""  # noqa: E501 (embedded source text)


@pytest.mark.skipif(__import__("shutil").which("g++") is None, reason="no C++ compiler here to run "
                                                                      "std::partial_sort")
def test_heap_select_is_cpps_partial_sort_ties_included(tmp_path):
    """MatchIt keeps a focal unit's closest candidates with std::partial_sort; ganmatch's `_heap_select` must
    pick (and order) the same ones when distances tie."""
    import subprocess

    from ganmatch.matching.nearest import _heap_select

    (tmp_path / "ps.cpp").write_text(CPP_PARTIAL_SORT)
    subprocess.run(["g++", "-O1", "-o", str(tmp_path / "ps"), str(tmp_path / "ps.cpp")], check=True)
    rng = np.random.default_rng(0)
    cases = []
    for _ in range(500):
        n = int(rng.integers(2, 12))
        cases.append((n, int(rng.integers(1, n)), rng.integers(0, 4, n).astype(float).tolist()))
    text = f"{len(cases)}\n" + "".join(f"{n} {m} " + " ".join(map(str, d)) + "\n" for n, m, d in cases)
    out = subprocess.run([str(tmp_path / "ps")], input=text, capture_output=True, text=True,
                         check=True).stdout
    for line, (_, m, d) in zip(out.splitlines(), cases, strict=True):
        assert [int(x) for x in line.split()] == _heap_select(d, m)


# ---------------------------------------------------------------- live parity with R's MatchIt


R_PEERS, R_REASON = PARITY.r_peers()


@pytest.mark.slow
@pytest.mark.skipif(R_PEERS is None, reason=f"{R_REASON}; benchmarks/results/matchit_parity.md holds the "
                                            "committed "
                    "comparison with MatchIt 4.7.2 and optmatch")
def test_lalonde_parity_with_r_matchit(tmp_path):
    """MatchIt 4.7.2 run live: nearest (every case, ties included), exact, subclass and cem identical; optimal
    and full, whose optima are not unique, at least as good on the objective as optmatch's."""
    table = PARITY.parity("lalonde", PARITY.lalonde(), PARITY.LALONDE_COVS, ["age", "educ", "re74", "re75"],
                          ["race", "married", "nodegree"], tmp_path)
    identity = table[~table["case"].str.startswith(PARITY.OBJECTIVE)]
    assert (identity["status"] == "identical").all(), identity.loc[identity["status"] != "identical",
                                                                   "case"].tolist()
    nearest = table[table["case"].str.startswith("nearest")]
    assert nearest["same_as_reference"].astype(bool).all()
    objective = table[table["case"].str.startswith(PARITY.OBJECTIVE)]
    failed = objective["status"].str.startswith("MatchIt failed")
    # an R error in 4.7.2
    assert objective.loc[failed, "case"].tolist() == ["optimal 1:1, antiexact on married"]
    ran = objective[~failed]
    assert len(ran) == 5 and (ran["objective_ganmatch"] <= ran["objective_matchit"] * (1 + 1e-9)).all()


def test_r_versions_compare_numerically():
    """MatchIt's version gate compares numbers, not strings ("4.10.0" is newer than "4.5.4"; R's "0.10-8"
    reads)."""
    assert PARITY.r_version("4.10.0") > PARITY.MIN_MATCHIT > PARITY.r_version("4.5.3")
    assert PARITY.r_version("4.5.4") == PARITY.MIN_MATCHIT
    assert PARITY.r_version("0.10-8") < PARITY.r_version("0.10-10")


# ---------------------------------------------------------------- scalar distances: the compiled line solvers


def _assignment_optimum(xf, xo, ratio, caliper):
    """(matched, total distance) of the dense assignment with an expensive 'unmatched' for every copy."""
    from scipy.optimize import linear_sum_assignment

    D = np.abs(np.repeat(xf, ratio)[:, None] - xo[None, :])
    ok = D <= caliper
    big = (D[ok].max() + 1.0) * (len(D) + 1) if ok.any() else 1.0
    r, c = linear_sum_assignment(np.where(ok, D, big))
    keep = ok[r, c]
    return int(keep.sum()), float(D[r, c][keep].sum())


@pytest.mark.parametrize("seed", range(4))
def test_line_pairs_is_the_assignment_optimum_with_ties_ratios_and_calipers(seed):
    """The order-preserving programme on a line gives the assignment's optimum: as many matched, the same
    total, each other used once, each focal unit at most `ratio` times, every pair within the caliper."""
    from ganmatch.matching.line_pairs import line_pairs

    rng = np.random.default_rng(seed)
    for _ in range(300):
        nf, no = int(rng.integers(1, 8)), int(rng.integers(1, 12))
        ratio = int(rng.integers(1, 3)) if no >= 2 * nf else 1
        xf = np.round(rng.normal(size=nf), int(rng.integers(0, 3)))          # rounded: ties
        xo = np.round(rng.normal(size=no) + 0.3, int(rng.integers(0, 3)))
        cal = [np.inf, 0.2, 0.5, 1.0][int(rng.integers(0, 4))]
        f, o, d = line_pairs(xf, xo, ratio, cal)
        n, total = _assignment_optimum(xf, xo, ratio, cal)
        assert len(set(o.tolist())) == len(o) and np.bincount(f, minlength=nf).max(initial=0) <= ratio
        assert np.all(d <= cal) and np.allclose(d, np.abs(xf[f] - xo[o]))
        assert len(f) == n and np.isclose(d.sum(), total, atol=1e-9)


def test_optimal_sets_on_a_large_scalar_uses_the_line_programme_with_the_dense_optimum():
    rng = np.random.default_rng(5)
    Xf, Xo = rng.normal(size=(300, 1)), rng.normal(0.4, 1.0, size=(700, 1))
    for ratio, cal in ((1, np.inf), (2, np.inf), (1, 0.05)):
        fd, od, dd, dense = optimal_sets(Xf, Xo, ratio=ratio, caliper=cal)
        fl, ol, dl, dense_l = optimal_sets(Xf, Xo, ratio=ratio, caliper=cal, line=True)
        assert dense == "dense" and dense_l == "line"
        # the dense solver's distances are float32's; the line's exact
        assert len(fl) == len(fd) and np.isclose(dl.sum(), dd.sum(), rtol=1e-6)
    # 1,500 x 3,000 pairs: past the dense solver's 4,000,000
    res = match("optimal", MatchData(ids=np.arange(4500).astype(str), treated=np.r_[np.ones(1500, int),
                                                                                      np.zeros(3000, int)],
                                     covariates=pd.DataFrame({"ps": rng.random(4500)})),
                distance="score", score="ps")
    assert res.info["solver"] == "line"


@pytest.mark.parametrize("seed", range(3))
def test_compiled_nearest_scan_equals_the_python_scan_ties_and_rounds_included(seed):
    """The compiled rounds (no per-pair rule) pick exactly the pairs of the Python scan, which the parity
    tests hold to MatchIt 4.7.2: forced through the Python scan by a rule that accepts everything."""
    from ganmatch.matching.methods import places
    from ganmatch.matching.nearest import line_sets

    rng = np.random.default_rng(seed)
    for _ in range(400):
        n = int(rng.integers(2, 40))
        score = np.round(rng.normal(size=n), int(rng.integers(0, 3)))
        treat = rng.random(n) < 0.35
        f, o = np.flatnonzero(treat), np.flatnonzero(~treat)
        if not len(f) or not len(o):
            continue
        ratio, cal = int(rng.integers(1, 4)), [np.inf, 0.3, 1.0][int(rng.integers(0, 3))]
        order = rng.permutation(len(f))
        fast = line_sets(score[f], score[o], order, ratio, False, cal, None, f, o, places(score))
        slow = line_sets(score[f], score[o], order, ratio, False, cal, lambda a, b: True, f, o, places(score))
        for a, b in zip(fast, slow, strict=True):
            assert np.array_equal(a, b)


def test_exact_subclasses_number_value_combinations_in_order_of_first_appearance():
    """Integer keys per column (no text keys): the same subclasses as one key per combination of the values'
    text, numbered by first appearance, NaN and None a value of their own; -0.0 and 0.0 one value, as R's
    factor makes them."""
    from ganmatch.matching.subclass import exact_subclasses

    def by_text(frame, treated):
        key = pd.factorize(pd.MultiIndex.from_frame(frame.astype(str)))[0]
        both = np.intersect1d(key[treated == 1], key[treated == 0])
        first = pd.unique(key[np.isin(key, both)])
        out = np.full(len(key), -1, np.int64)
        out[np.isin(key, both)] = pd.Series(np.arange(len(first)), index=first).reindex(
            key[np.isin(key, both)]).to_numpy()
        return out

    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 60))
        frame = pd.DataFrame({"a": rng.integers(0, 3, n), "b": rng.choice(["x", "y", None], n),
                              "c": np.round(rng.normal(size=n), 0) + 0.0, "d": rng.random(n) < 0.5})
        frame.loc[rng.random(n) < 0.1, "c"] = np.nan
        treated = (rng.random(n) < 0.4).astype(int)
        want = by_text(frame, treated)
        if (want == -1).all():
            with pytest.raises(InputDataError, match="no combination"):
                exact_subclasses(frame, treated)
        else:
            assert np.array_equal(exact_subclasses(frame, treated), want)
    signed = pd.DataFrame({"z": [-0.0, 0.0]})
    assert exact_subclasses(signed, np.array([1, 0])).tolist() == [0, 0]


def test_sparse_optimal_with_a_caliper_widens_only_lists_that_may_miss_admissible_others(monkeypatch):
    """With a caliper the sparse solver reaches the dense optimum (as many matched, the same total) without
    widening every list to all the others: a list whose k-th distance is past the caliper already holds every
    admissible other (the old rule doubled k for everyone while an unmatched unit had an edge)."""
    from ganmatch.matching import optimal

    asked = []
    real = optimal._knn_edges
    monkeypatch.setattr(optimal, "_knn_edges",
                        lambda Xf, *a, **k: asked.append((len(Xf), a[2])) or real(Xf, *a, **k))
    rng = np.random.default_rng(0)
    for _ in range(3):
        Xf = rng.normal(size=(300, 16)).astype(np.float32) + 0.3
        Xo = rng.normal(size=(500, 16)).astype(np.float32)
        nn = distances.knn(Xf, 1, Y=Xo, exclude_self=False)[1][:, 0]
        cal = float(np.quantile(nn, 0.6))
        fd, _, dd, dense = optimal_sets(Xf, Xo, caliper=cal)
        asked.clear()
        fs, _, ds, dense_s = optimal_sets(Xf, Xo, caliper=cal, k=5, dense_limit=0)
        assert dense == "dense" and dense_s == "sparse_knn"
        assert len(fs) == len(fd) and np.isclose(ds.sum(), dd.sum(), rtol=1e-6)
        assert max(k for _, k in asked) < 500        # no list widened to every other
