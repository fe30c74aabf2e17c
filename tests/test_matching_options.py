"""MatchIt 4.7 options added by issue 27: cardinality matching (checked by brute force: R's cardinality needs
a MILP solver package that the R peer library lacks), sampling weights and scikit-learn propensity models."""

import copy

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import ROOT

from ganmatch.errors import ConfigError
from ganmatch.matching import MatchData, match
from ganmatch.matching.cardinality import cardinality_weights, tolerance_scale
from ganmatch.settings.config import load_schema, validate_config

LALONDE = ROOT / "tests/data/lalonde.csv"


def _subsets(n: int) -> np.ndarray:
    return ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1).astype(np.float64)


def brute_force_size(t, X, kind: str, tol: float, ratio) -> float:
    """The largest feasible sample over every subset of units (MatchIt's programme written out), -1 if
    none."""
    M = _subsets(len(t))
    n1, n0 = M @ (t == 1), M @ (t == 0)
    s1, s0 = M @ ((t == 1)[:, None] * X), M @ ((t == 0)[:, None] * X)
    eps = 1e-9
    if kind == "ATT":
        ok = (n0 == ratio * n1) & np.all(np.abs(s1 - s0 / ratio) <= tol * n1[:, None] + eps, axis=1)
        return float((n1 + n0)[ok].max(initial=-1))
    if kind == "profile":
        m1 = X[t == 1].mean(axis=0)
        ok = (M[:, t == 1].sum(axis=1) == 0) & np.all(np.abs(s0 - n0[:, None] * m1) <= tol * n0[:,
                                                                                                None] + eps,
                                                      axis=1)
        return float(n0[ok].max(initial=-1))
    tm = X.mean(axis=0)
    ok = (n1 >= 1) & (n0 >= 1) & (n0 == ratio * n1)
    ok &= np.all(np.abs(s1 - n1[:, None] * tm) <= tol / 2 * n1[:, None] + eps, axis=1)
    ok &= np.all(np.abs(s0 - n0[:, None] * tm) <= tol / 2 * n0[:, None] + eps, axis=1)
    return float((n1 + n0)[ok].max(initial=-1))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("tol", [0.1, 0.4, 1.0])
def test_cardinality_is_the_largest_balanced_sample_by_brute_force(seed, tol):
    rng = np.random.default_rng(seed)
    t = np.r_[np.ones(5, int), np.zeros(8, int)]
    X = rng.normal(size=(13, 2)) + 0.6 * t[:, None]
    for kind, ratio in (("ATT", 1), ("ATT", 2), ("profile", None), ("ATE", 1)):
        want = brute_force_size(t, X, kind, tol, ratio)
        if want < 0:
            with pytest.raises(Exception, match="no matched sample"):
                cardinality_weights(t, X, "ATE" if kind == "ATE" else "ATT", tol, ratio)
            continue
        w, info = cardinality_weights(t, X, "ATE" if kind == "ATE" else "ATT", tol, ratio)
        kept = w > 0
        got = kept[t == 0].sum() if kind == "profile" else kept.sum()
        assert info["optimal"] and got == want, (kind, ratio, got, want)
        # the kept sample meets the tolerances, with MatchIt's weights
        if kind == "ATT" and kept.any():
            m1, m0 = X[kept & (t == 1)].mean(axis=0), X[kept & (t == 0)].mean(axis=0)
            assert np.all(np.abs(m1 - m0) <= tol + 1e-7)
            assert kept[t == 0].sum() == ratio * kept[t == 1].sum()
            assert np.allclose(w[kept & (t == 0)], 1.0 / ratio) and np.allclose(w[kept & (t == 1)], 1.0)
        # every treated unit kept; controls scaled to the treated's sum
        if kind == "profile":
            assert np.all(w[t == 1] == 1) and np.isclose(w[t == 0].sum(), 5.0 if want > 0 else 0.0)


def test_cardinality_tolerances_are_in_the_focal_groups_sd():
    X = np.array([[0.0], [2.0], [4.0], [1.0], [9.0]])
    t = np.array([1, 1, 1, 0, 0])
    assert tolerance_scale(X, t, "ATT")[0] == pytest.approx(2.0)          # SD of 0, 2, 4 (n - 1)
    assert tolerance_scale(X, t, "ATC")[0] == pytest.approx(np.std([1.0, 9.0], ddof=1))
    assert tolerance_scale(X, t, "ATE")[0] == pytest.approx(np.sqrt((4.0 + 32.0) / 2))


def _lalonde():
    df = pd.read_csv(LALONDE)
    df["black"], df["hispan"] = (df["race"] == "black").astype(int), (df["race"] == "hispan").astype(int)
    return df


def test_cardinality_on_lalonde_meets_its_tolerances_through_match():
    df = _lalonde()
    covs = ["age", "educ", "black", "hispan", "married", "nodegree", "re74", "re75"]
    data = MatchData(df["id"], df["treat"], covariates=df[covs])
    res = match("cardinality", data, covariates=covs, tols=0.1)
    u = res.units
    assert res.info["optimal"] and res.pairs.empty and u["subclass"].isna().all()
    kept = u["weight"].to_numpy() > 0
    t = df["treat"].to_numpy()
    sd = df.loc[t == 1, covs].std(ddof=1).to_numpy()
    diff = (df.loc[kept & (t == 1), covs].mean() - df.loc[kept & (t == 0), covs].mean()).to_numpy() / sd
    assert np.all(np.abs(diff) <= 0.1 + 1e-6)
    assert kept[t == 1].sum() == kept[t == 0].sum() > 100      # 1:1, and most of the 185 treated kept
    loose = match("cardinality", data, covariates=covs, tols=0.5)
    assert (loose.units["weight"] > 0).sum() >= kept.sum()    # looser tolerances never keep fewer
    per = match("cardinality", data, covariates=covs, tols={c: 0.1 for c in covs}, ratio=None)
    assert (per.units["weight"][t == 1] == 1).all()           # ratio None: every treated unit kept


@pytest.fixture()
def config():
    with open(ROOT / "config/config.yaml") as fh:
        return yaml.safe_load(fh)


def test_config_takes_a_cardinality_method_and_checks_its_tols(config):
    schema = load_schema(ROOT / "config/schema.yaml")
    good = copy.deepcopy(config)
    good["matching"]["methods"]["card"] = {"method": "cardinality", "covariates": ["young", "smiling"],
                                           "tols": {"young": 0.05, "smiling": 0.1}, "ratio": None}
    validate_config(good, schema)
    bad = copy.deepcopy(good)
    bad["matching"]["methods"]["card"]["tols"] = {"young": 0.05}
    with pytest.raises(ConfigError, match=r"matching.methods.card.tols' names \['young'\]"):
        validate_config(bad, schema)
    bad = copy.deepcopy(good)
    bad["matching"]["methods"]["card"]["solver"] = "glpk"
    with pytest.raises(ConfigError, match="card.solver"):
        validate_config(bad, schema)


# ---------------------------------------------------------------- sampling weights (MatchIt's s.weights)

S_WEIGHTS_R = r"""
suppressPackageStartupMessages(library(MatchIt))
out <- commandArgs(trailingOnly = TRUE)[1]
d <- read.csv(file.path(out, "data.csv"), stringsAsFactors = TRUE)
rownames(d) <- d$id
f <- treat ~ age + educ + race + married + nodegree + re74 + re75
m <- matchit(f, data = d, s.weights = ~sw)
md <- match_data(m, drop.unmatched = FALSE)
write.csv(data.frame(id = d$id, distance = sprintf("%.17g", m$distance), weight = sprintf("%.17g", md$weights)),
          file.path(out, "nearest.csv"), row.names = FALSE)
mm <- m$match.matrix
write.csv(data.frame(focal = rownames(mm), other = mm[, 1]), file.path(out, "pairs.csv"), row.names = FALSE)
s <- summary(m, standardize = TRUE)$sum.all
write.csv(data.frame(cov = rownames(s), smd = sprintf("%.17g", s[, "Std. Mean Diff."])), file.path(out, "smd.csv"),
          row.names = FALSE)
sc <- matchit(f, data = d, s.weights = ~sw, method = "subclass", subclass = 4)
write.csv(data.frame(id = d$id, weight = sprintf("%.17g", match_data(sc, drop.unmatched = FALSE)$weights)),
          file.path(out, "subclass.csv"), row.names = FALSE)
"""  # noqa: E501 (embedded source text)


def _parity():
    import importlib.util

    spec = importlib.util.spec_from_file_location("matchit_parity", ROOT / "benchmarks/matchit_parity.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_s_weights_as_matchit_472_on_lalonde(tmp_path):
    """With sampling weights sw = 1 + (educ mod 3) / 2, MatchIt 4.7.2's weighted glm score, 1:1 nearest pairs,
    match_data weights (matching x sampling), subclass weights and summary's before-matching SMDs, against
    ganmatch's."""
    import subprocess

    from ganmatch.analysis.balance import balance_table

    parity = _parity()
    peers, why = parity.r_peers()
    if peers is None:
        pytest.skip(why)
    df = _lalonde()
    df["sw"] = 1.0 + (df["educ"] % 3) / 2.0
    df.drop(columns=["black", "hispan"]).to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "sw.R").write_text(S_WEIGHTS_R)
    subprocess.run(["Rscript", str(tmp_path / "sw.R"), str(tmp_path)], check=True, capture_output=True,
                   env=parity.r_env())
    r = pd.read_csv(tmp_path / "nearest.csv").set_index("id").loc[df["id"]]
    covs = ["age", "educ", "black", "hispan", "married", "nodegree", "re74", "re75"]
    data = MatchData(df["id"], df["treat"], covariates=df[covs + ["sw"]])
    g = match("nearest", data, distance="propensity", covariates=covs, s_weights="sw")
    assert np.allclose(g.units["propensity"], r["distance"], rtol=0, atol=1e-9)
    rp = pd.read_csv(tmp_path / "pairs.csv")
    assert set(zip(g.pairs["treated_id"], g.pairs["control_id"], strict=True)) == \
        set(zip(rp["focal"], rp["other"], strict=True))
    assert np.allclose(g.units["weight"], r["weight"], rtol=1e-12, atol=1e-12)
    assert np.array_equal(g.units["s_weight"], df["sw"])
    sub = match("subclass", data, distance="propensity", covariates=covs, s_weights="sw", subclass=4)
    rs = pd.read_csv(tmp_path / "subclass.csv").set_index("id").loc[df["id"]]
    assert np.allclose(sub.units["weight"], rs["weight"], rtol=1e-9, atol=1e-12)
    smd = pd.read_csv(tmp_path / "smd.csv").set_index("cov")["smd"]
    table = balance_table(df[["age", "educ", "re74", "re75"]], df["treat"].to_numpy(),
                          g.units["weight"].to_numpy(),
                          s_weights=df["sw"].to_numpy())
    ours = table[(table["stat"] == "smd") & (table["sample"] == "unmatched")].set_index("covariate")["value"]
    for c in ("age", "educ", "re74", "re75"):
        assert ours[c] == pytest.approx(smd[c], abs=1e-9), c


def test_config_checks_s_weights_and_the_propensity_models_options(config):
    schema = load_schema(ROOT / "config/schema.yaml")
    base = copy.deepcopy(config)
    base["matching"]["methods"]["sw"] = {"method": "nearest", "distance": "ridge", "covariates": ["young",
                                                                                                  "smiling"],
                                         "s_weights": "makeup", "C": 0.5}
    validate_config(base, schema)
    for patch, msg in (({"s_weights": "age"}, r"sw.s_weights' is 'age', which is not among 'covariates'"),
                       ({"distance": "mahalanobis"},
                        r"sw.s_weights' with distance mahalanobis is not offered"),
                       ({"distance": "gbm"}, r"sw.C' applies only to distance: propensity / lasso / ridge"),
                       ({"l1_ratio": 0.3}, r"sw.l1_ratio' applies only to distance: elasticnet")):
        bad = copy.deepcopy(base)
        bad["matching"]["methods"]["sw"].update(patch)
        with pytest.raises(ConfigError, match=msg):
            validate_config(bad, schema)


# ---------------------------------------------------------------- scikit-learn propensity models


def _auc(score, t) -> float:
    from scipy.stats import rankdata

    r = rankdata(score)
    n1, n0 = int(t.sum()), int((1 - t).sum())
    return float((r[t == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def test_ridge_with_a_huge_penalty_gives_a_near_constant_score():
    from ganmatch.matching.distance import PropensityModel

    rng = np.random.default_rng(0)
    Z = rng.normal(size=(400, 4))
    t = (Z[:, 0] + rng.normal(size=400) > 0).astype(int)
    weak = PropensityModel(C=1e-8, model="ridge").fit(Z, t)
    strong = PropensityModel(C=1.0, model="ridge").fit(Z, t)
    assert np.std(weak.propensity_) < 1e-6 and np.abs(weak.coef_[1:]).max() < 1e-6
    assert np.std(strong.propensity_) > 0.1


def test_lasso_recovers_a_planted_sparse_model_and_elasticnet_keeps_more():
    from ganmatch.matching.distance import PropensityModel

    rng = np.random.default_rng(1)
    Z = rng.normal(size=(3000, 10))
    t = (rng.random(3000) < 1 / (1 + np.exp(-(1.5 * Z[:, 0] - 1.0 * Z[:, 3])))).astype(int)
    lasso = PropensityModel(C=0.02, model="lasso").fit(Z, t)
    assert set(np.flatnonzero(np.abs(lasso.coef_[1:]) > 1e-8)) == {0, 3}
    enet = PropensityModel(C=0.02, model="elasticnet", l1_ratio=0.5).fit(Z, t)
    kept = set(np.flatnonzero(np.abs(enet.coef_[1:]) > 1e-8))
    # the L2 part keeps some of the noise columns the L1 penalty drops
    assert kept > {0, 3}


@pytest.mark.parametrize("model", ["gbm", "randomforest"])
def test_tree_models_find_a_nonlinear_propensity_a_logistic_fit_misses_and_repeat_exactly(model):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(600, 2))
    t = (rng.random(600) < np.where(np.abs(x[:, 0]) > 1.0, 0.85, 0.15)).astype(int)
    frame = pd.DataFrame(x, columns=["a", "b"])
    data = MatchData(np.arange(600).astype(str), t, covariates=frame)
    glm = match("nearest", data, distance="propensity", covariates=["a", "b"])
    runs = [match("nearest", data, distance=model, covariates=["a", "b"], n_estimators=100, random_state=7)
            for _ in range(2)]
    assert _auc(glm.units["propensity"].to_numpy(), t) < 0.6
    assert _auc(runs[0].units["propensity"].to_numpy(), t) > 0.8
    assert np.array_equal(runs[0].units["propensity"], runs[1].units["propensity"])
    assert runs[0].pairs.equals(runs[1].pairs) and runs[0].info["model"] == model


def test_lasso_distance_matches_through_match_with_linear_logit():
    df = _lalonde()
    covs = ["age", "educ", "black", "hispan", "married", "nodegree", "re74", "re75"]
    data = MatchData(df["id"], df["treat"], covariates=df[covs])
    res = match("nearest", data, distance="lasso", covariates=covs, C=0.1, link="linear.logit", caliper=0.2)
    u = res.units
    assert np.allclose(u["distance"], u["logit"]) and res.info["distance"] == "lasso"
    assert 0 < len(res.pairs) <= 185


@pytest.mark.parametrize("estimand,ratio", [("ATT", 1), ("ATT", 2), ("ATT", None), ("ATE", 1)])
def test_cardinality_shortcut_through_the_relaxation_keeps_the_optimum(monkeypatch, estimand, ratio):
    """Large problems are solved through the LP relaxation with most of its 0/1 variables fixed, accepted only
    when that meets the relaxation's bound; the result is as large as full branch and bound's."""
    import ganmatch.matching.cardinality as card

    rng = np.random.default_rng(5)
    t = (rng.random(2500) < 0.3).astype(int)
    X = rng.normal(size=(2500, 3)) + 0.4 * t[:, None]
    X = X / tolerance_scale(X, t, estimand)
    w, info = cardinality_weights(t, X, estimand, 0.05, ratio)
    monkeypatch.setattr(card, "_rounded_relaxation", lambda *a, **k: None)
    w_bb, info_bb = cardinality_weights(t, X, estimand, 0.05, ratio)
    assert info_bb["how"] == "branch_and_bound"
    assert info["how"] == ("branch_and_bound" if ratio == 2 else "lp_rounding")     # 2:1: 3K misses the bound
    assert info["objective"] == pytest.approx(info_bb["objective"]) and info["optimal"] and info_bb["optimal"]
    assert (w > 0).sum() == (w_bb > 0).sum()
