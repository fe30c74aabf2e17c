"""MatchIt 4.7 options added by issue 27: cardinality matching (checked by brute force: R's cardinality needs a MILP
solver package that the R peer library lacks), sampling weights and scikit-learn propensity models."""

import copy

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT

from ganmatch.errors import ConfigError
from ganmatch.matching import MatchData, match
from ganmatch.matching.cardinality import cardinality_weights, tolerance_scale
from ganmatch.settings.config import load_schema, validate_config

LALONDE = ROOT / "tests/data/lalonde.csv"


def _subsets(n: int) -> np.ndarray:
    return ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1).astype(np.float64)


def brute_force_size(t, X, kind: str, tol: float, ratio) -> float:
    """The largest feasible sample over every subset of units (MatchIt's programme written out), -1 if none."""
    M = _subsets(len(t))
    n1, n0 = M @ (t == 1), M @ (t == 0)
    s1, s0 = M @ ((t == 1)[:, None] * X), M @ ((t == 0)[:, None] * X)
    eps = 1e-9
    if kind == "ATT":
        ok = (n0 == ratio * n1) & np.all(np.abs(s1 - s0 / ratio) <= tol * n1[:, None] + eps, axis=1)
        return float((n1 + n0)[ok].max(initial=-1))
    if kind == "profile":
        m1 = X[t == 1].mean(axis=0)
        ok = (M[:, t == 1].sum(axis=1) == 0) & np.all(np.abs(s0 - n0[:, None] * m1) <= tol * n0[:, None] + eps, axis=1)
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
        if kind == "ATT" and kept.any():            # the kept sample meets the tolerances, with MatchIt's weights
            m1, m0 = X[kept & (t == 1)].mean(axis=0), X[kept & (t == 0)].mean(axis=0)
            assert np.all(np.abs(m1 - m0) <= tol + 1e-7)
            assert kept[t == 0].sum() == ratio * kept[t == 1].sum()
            assert np.allclose(w[kept & (t == 0)], 1.0 / ratio) and np.allclose(w[kept & (t == 1)], 1.0)
        if kind == "profile":                       # every treated unit kept; controls scaled to the treated's sum
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
