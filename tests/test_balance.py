"""Balance statistics worked out by hand, the long table's contract, and neighbour quality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ganmatch.analysis import balance, retrieval
from ganmatch.errors import InputDataError

X = np.array([1.0, 2.0, 3.0, 4.0])
T = np.array([1, 1, 0, 0])


def test_weighted_mean_var_ess():
    assert balance.weighted_mean(X, [1, 1, 0, 2]) == pytest.approx((1 + 2 + 8) / 4)
    assert balance.weighted_var([1.0, 3.0]) == pytest.approx(2.0)
    # reliability weights (cobalt): m = 5/3, sum w (x - m)^2 = 24/9, denominator 3 - 5/3
    assert balance.weighted_var([1.0, 3.0], [2, 1]) == pytest.approx((24 / 9) / (4 / 3))
    assert balance.ess([1, 1, 0, 2]) == pytest.approx(16 / 6)
    assert np.isnan(balance.weighted_mean(X, np.zeros(4)))


def test_smd_by_hand():
    # means 1.5 vs 3.5, both variances 0.5 -> pooled SD sqrt(0.5)
    assert balance.weighted_smd(X, T) == pytest.approx(-2 / np.sqrt(0.5))
    # matched sample drops unit 0 and 3: means 2 vs 3, still divided by the unmatched pooled SD
    assert balance.weighted_smd(X, T, [0, 1, 1, 0]) == pytest.approx(-1 / np.sqrt(0.5))
    assert balance.weighted_smd(X, T, sd=2.0) == pytest.approx(-1.0)
    assert balance.weighted_smd([1, 1, 1, 1], T) == 0.0
    assert balance.weighted_smd([1, 3, 0, 0], T, sd=0.0) == np.inf
    # both groups constant but different: cobalt falls back to the whole sample's SD, p(1 - p) = 1/4 here
    assert balance.weighted_smd([1, 1, 0, 0], T) == pytest.approx(2.0)
    assert balance.sd_denominator([1, 1, 0, 0], T, "treated") == (0.5, "all")


def test_var_ratio_and_ecdf_by_hand():
    x = np.array([0.0, 4.0, 1.0, 3.0])
    assert balance.var_ratio(x, T) == pytest.approx(8.0 / 2.0)
    assert np.isnan(balance.var_ratio([0, 1, 1, 0], T))  # binary: not reported, as cobalt
    # treated {0, 1}, control {2, 3}: eCDF gaps over 0,1,2,3 are .5, 1, .5, 0
    assert balance.ecdf_stats([0, 1, 2, 3], T) == pytest.approx((0.5, 1.0))
    # binary: KS max is the difference in proportions
    assert balance.ks_max([1, 0, 1, 1], T) == pytest.approx(0.5)
    # weights: treated unit 0 (x=0) has weight 3
    assert balance.ecdf_stats([0, 1, 2, 3], T, [3, 1, 1, 1])[0] == pytest.approx((0.75 + 1 + 0.5 + 0) / 4)


def test_balance_table_contract_and_values():
    cov = pd.DataFrame({"x": X, "flag": [1, 0, 1, 1]})
    w = np.array([0.0, 1.0, 1.0, 0.0])
    tab = balance.balance_table(cov, T, w)
    assert list(tab.columns) == balance.balance_columns()
    assert set(tab["stat"]) == set(balance.DESCRIPTIVE) | set(balance.STATS)
    assert set(tab["sample"]) == {"unmatched", "matched"}
    assert len(tab) == 2 * 2 * (len(balance.DESCRIPTIVE) + len(balance.STATS))
    v = tab.set_index(["covariate", "stat", "sample"])["value"]
    # ATT by default: the treated group's SD (variance 0.5, as the controls')
    assert v["x", "smd", "unmatched"] == pytest.approx(-2 / np.sqrt(0.5))
    assert v["x", "smd", "matched"] == pytest.approx(-1 / np.sqrt(0.5))
    assert v["flag", "mean_treated", "unmatched"] == 0.5 and v["flag", "mean_control", "unmatched"] == 1
    assert v["flag", "mean_treated", "matched"] == 0.0
    assert v["flag", "smd", "unmatched"] == pytest.approx(-0.5)  # binary: raw difference in proportions
    b = tab.set_index(["covariate", "stat", "sample"])
    assert b.loc[("flag", "smd", "unmatched"), ["type", "diff_type", "s_d_denom"]].tolist() == ["Binary",
                                                                                                "raw", ""]
    assert b.loc[("x", "smd", "matched"), ["type", "diff_type", "s_d_denom"]].tolist() == ["Contin.", "std",
                                                                                           "treated"]
    assert b.loc[("x", "var_ratio", "matched"), ["diff_type", "s_d_denom"]].tolist() == ["", ""]
    b = tab.set_index(["covariate", "stat", "sample"])
    assert b.loc[("x", "smd", "unmatched"), "threshold"] == 0.1
    assert not b.loc[("x", "smd", "unmatched"), "balanced"]
    assert pd.isna(b.loc[("x", "mean_treated", "unmatched"), "balanced"])
    loose = balance.balance_table(cov, T, None, thresholds={"smd": 5.0})
    assert set(loose["sample"]) == {"unmatched"}
    assert loose.set_index(["covariate", "stat"]).loc[("x", "smd"), "balanced"]


def test_weights_that_copy_the_treated_distribution_balance_it():
    x = np.array([1.0, 2.0, 2.0, 0.0, 0.0, 1.0, 2.0, 2.0, -1.0])
    t = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0])
    w = np.array([1, 1, 1, 0, 0, 1, 1, 1, 0], float)  # controls 1, 2, 2 mirror the treated 1, 2, 2
    tab = balance.balance_table(pd.DataFrame({"x": x}), t, w).set_index(["stat", "sample"])["value"]
    assert abs(tab["smd", "unmatched"]) > 0.1
    assert tab["smd", "matched"] == pytest.approx(0) and tab["ks_max", "matched"] == pytest.approx(0)
    assert tab["var_ratio", "matched"] == pytest.approx(1)


def test_sample_sizes_and_group_means():
    w = np.array([1.0, 0.0, 1.0, 2.0])
    sz = balance.sample_sizes(T, w).set_index("group")
    assert sz.loc["treated", ["all", "matched", "unmatched"]].tolist() == [2, 1, 1]
    assert sz.loc["control", "ess"] == pytest.approx(9 / 5)
    gm = balance.group_means(pd.DataFrame({"x": X}), T, None).set_index(["group", "sample"])
    row = gm.loc[("treated", "unmatched")]
    assert row["mean"] == 1.5 and row["n"] == 2
    assert row["se"] == pytest.approx(np.sqrt(0.5 / 2))
    assert row["ci_high"] - row["mean"] == pytest.approx(1.959963984540054 * row["se"])
    gm = balance.group_means(pd.DataFrame({"x": X}), T, w)
    assert set(gm["sample"]) == {"unmatched", "matched"}


def test_bad_input():
    cov = pd.DataFrame({"x": [1.0, np.nan, 2.0, 3.0]})
    with pytest.raises(InputDataError, match=r"\['x'\]"):
        balance.balance_table(cov, T, None)
    with pytest.raises(InputDataError, match="no members"):
        balance.balance_table(pd.DataFrame({"x": X}), np.ones(4, int), None)
    with pytest.raises(InputDataError, match="weights"):
        balance.balance_table(pd.DataFrame({"x": X}), T, np.array([1, -1, 0, 0]))
    with pytest.raises(InputDataError, match="0/1"):
        balance.balance_table(pd.DataFrame({"x": X}), np.array([1, 2, 0, 0]), None)


def test_neighbour_quality_by_hand():
    identity = pd.Series(["A", "A", "B", "C"], index=["a1", "a2", "b1", "c1"])
    attrs = pd.DataFrame({"image_id": ["a1", "a2", "b1", "c1"], "young": [1, 0, 1, 1], "smiling": [0, 0, 1,
                                                                                                   1]})
    nb = pd.DataFrame({
        "query": ["a1", "a1", "a2", "a2", "b1", "b1", "c1", "c1"],
        "neighbour": ["b1", "a2", "a1", "c1", "a1", "c1", "b1", "a2"],
        "distance": np.arange(8, dtype=np.float32), "rank": [1, 2] * 4, "scope": "all",
    })
    q = retrieval.retrieval_quality(nb, identity, attrs, ks=(1, 2)).iloc[0]
    # queries with another photo of their identity: a1 (top1 b1: miss; top2 has a2) and a2 (top1 a1: hit)
    assert q["err_top1"] == pytest.approx(0.5) and q["err_top2"] == 0.0
    # other identity among top-1 rows: a1->b1, b1->a1, c1->b1 differ; a2->a1 same -> 3/4
    assert q["other_top1"] == pytest.approx(0.75) and q["other_top2"] == pytest.approx(6 / 8)
    # |young| diffs at rank 1: a1-b1 0, a2-a1 1, b1-a1 0, c1-b1 0
    assert q["diff_young"] == pytest.approx(0.25) and q["diff_smiling"] == pytest.approx(0.5)
    assert q["n_queries"] == 4 and q["scope"] == "all"


def test_wilson_interval_known_answers_and_stays_inside_0_1():
    from ganmatch.analysis.balance import wilson_interval

    low, high = wilson_interval([0.0, 0.5, 1.0], [10, 100, 3])
    np.testing.assert_allclose(low, [0.0, 0.403832, 0.438503], atol=1e-5)
    np.testing.assert_allclose(high, [0.277533, 0.596168, 1.0], atol=1e-5)
    p = np.linspace(0, 1, 21)
    for n in (1, 2, 5, 30):
        lo, hi = wilson_interval(p, np.full_like(p, n))
        assert (lo >= 0).all() and (hi <= 1).all() and (lo <= p + 1e-12).all() and (hi >= p - 1e-12).all()
    assert np.isnan(wilson_interval(0.5, 0)).all()
    # the bounds hold p exactly, even after rounding
    for p, n in ((0.0, 1.4977), (0.0, 2.2941), (1.0, 7.3), (0.0, 1e6)):
        lo, hi = wilson_interval(p, n)
        assert lo <= p <= hi


def test_group_means_use_wilson_intervals_for_proportions():
    from ganmatch.analysis.balance import group_means

    rng = np.random.default_rng(0)
    t = np.r_[np.ones(8), np.zeros(30)].astype(int)
    X = pd.DataFrame({"rare": np.r_[np.ones(8), (rng.random(30) < 0.05)].astype(float),  # all treated have it
                      "height": rng.normal(170, 10, 38)})
    means = group_means(X, t, weights=np.r_[np.ones(8), np.ones(30)])
    rare = means[means["covariate"] == "rare"]
    assert (rare["interval"] == "wilson").all()
    assert (rare["ci_low"] >= 0).all() and (rare["ci_high"] <= 1).all()
    treated = rare[rare["group"] == "treated"].iloc[0]
    # a normal CI is [1, 1]
    assert treated["mean"] == 1.0 and treated["ci_high"] == 1.0 and treated["ci_low"] < 1.0
    height = means[means["covariate"] == "height"]
    assert (height["interval"] == "normal").all()
    np.testing.assert_allclose(height["ci_high"] - height["mean"], 1.959964 * height["se"], rtol=1e-5)


# ---------------------------------------------------------------- cobalt's choices, worked out by hand

T6 = np.array([1, 1, 1, 0, 0, 0])
COBALT = pd.DataFrame({"x": [2.0, 4.0, 9.0, 1.0, 2.0, 3.0],   # treated mean 5, var 13; controls mean 2, var 1
                       "b": [1, 1, 0, 0, 0, 1]})              # proportions 2/3 vs 1/3, p(1 - p) = 2/9 in each
W6 = np.array([1.0, 1.0, 0.0, 1.0, 1.0, 0.0])                # matched: x means 3 vs 1.5, b proportions 1 vs 0
# the whole sample: x mean 3.5, var 41.5 / 5 = 8.3; b proportion 1/2, p(1 - p) = 1/4
SD_X = {"treated": np.sqrt(13), "control": 1.0, "pooled": np.sqrt(7), "all": np.sqrt(8.3)}
SD_B = {"treated": np.sqrt(2 / 9), "control": np.sqrt(2 / 9), "pooled": np.sqrt(2 / 9), "all": 0.5}


def _smd(**kwargs):
    tab = balance.balance_table(COBALT, T6, W6, **kwargs)
    return tab[tab["stat"] == "smd"].set_index(["covariate", "sample"])


@pytest.mark.parametrize("denom", ["treated", "control", "pooled", "all"])
@pytest.mark.parametrize("binary", ["raw", "std"])
def test_each_s_d_denom_and_binary_choice_by_hand(denom, binary):
    smd = _smd(s_d_denom=denom, binary=binary)
    assert smd.loc[("x", "unmatched"), "value"] == pytest.approx(3 / SD_X[denom])
    assert smd.loc[("x", "matched"), "value"] == pytest.approx(1.5 / SD_X[denom])  # the unmatched sample's SD
    assert smd.loc[("x", "matched"), ["diff_type", "s_d_denom"]].tolist() == ["std", denom]
    if binary == "raw":
        assert smd.loc[("b", "unmatched"), "value"] == pytest.approx(1 / 3)
        assert smd.loc[("b", "matched"), "value"] == pytest.approx(1.0)
        assert smd.loc[("b", "matched"), ["diff_type", "s_d_denom"]].tolist() == ["raw", ""]
    else:
        assert smd.loc[("b", "unmatched"), "value"] == pytest.approx(1 / 3 / SD_B[denom])
        assert smd.loc[("b", "matched"), "value"] == pytest.approx(1 / SD_B[denom])
        assert smd.loc[("b", "matched"), ["diff_type", "s_d_denom"]].tolist() == ["std", denom]
    assert (smd["type"].loc["b"] == "Binary").all() and (smd["type"].loc["x"] == "Contin.").all()


@pytest.mark.parametrize(("estimand", "denom"), [("ATT", "treated"), ("ATC", "control"), ("ATE", "pooled")])
def test_auto_s_d_denom_follows_the_estimand_as_cobalt(estimand, denom):
    smd = _smd(estimand=estimand)
    assert smd.loc[("x", "unmatched"), "value"] == pytest.approx(3 / SD_X[denom])
    assert smd.loc[("x", "unmatched"), "s_d_denom"] == denom
    assert balance.resolve_s_d_denom("all", estimand) == "all"


def test_zero_sd_falls_back_to_the_whole_sample_and_says_so():
    # treated constant; controls mean 2; all: var 9.5 / 5
    x = pd.DataFrame({"x": [1.0, 1.0, 1.0, 0.0, 2.0, 4.0]})
    smd = balance.balance_table(x, T6).query("stat == 'smd'").iloc[0]
    assert smd["value"] == pytest.approx(-1 / np.sqrt(1.9)) and smd["s_d_denom"] == "all"


def test_two_valued_covariates_are_binary_indicators_of_their_larger_value():
    two = pd.DataFrame({"grade": [2, 2, 1, 1, 1, 2]})  # like b: 2/3 vs 1/3 have the larger value
    smd = balance.balance_table(two, T6, binary="std").query("stat == 'smd'").iloc[0]
    assert smd["type"] == "Binary" and smd["value"] == pytest.approx(1 / 3 / np.sqrt(2 / 9))
    tab = balance.balance_table(two, T6).set_index(["stat", "sample"])
    # p(1 - p), as cobalt
    assert tab.loc[("sd_treated", "unmatched"), "value"] == pytest.approx(np.sqrt(2 / 9))


def test_bad_balance_choices_name_themselves():
    with pytest.raises(InputDataError, match="s_d_denom 'weighted'"):
        balance.balance_table(COBALT, T6, s_d_denom="weighted")
    with pytest.raises(InputDataError, match="binary 'percent'"):
        balance.balance_table(COBALT, T6, binary="percent")
    with pytest.raises(InputDataError, match="estimand 'ATX'"):
        balance.balance_table(COBALT, T6, estimand="ATX")


LALONDE = Path(__file__).parent / "data" / "lalonde.csv"


def lalonde_nearest():
    """MatchIt's `matchit(treat ~ age + educ + race + married + nodegree + re74 + re75, data = lalonde)`
    through ganmatch's engine: an unpenalised logistic propensity score (distance propensity, link logit),
    then 1:1 nearest neighbour without replacement, treated units largest score first (MatchIt's defaults).
    Returns covariates (race as dummies, as cobalt splits it), treatment, weights."""
    from ganmatch.matching import MatchData, match

    df = pd.read_csv(LALONDE)
    X = pd.DataFrame({"age": df["age"], "educ": df["educ"]}
                     | {f"race_{r}": (df["race"] == r).astype(int) for r in ("black", "hispan", "white")}
                     | {c: df[c] for c in ("married", "nodegree", "re74", "re75")})
    t = df["treat"].to_numpy()
    design = [c for c in X.columns if c != "race_black"]
    res = match("nearest", MatchData(ids=np.arange(len(df)), treated=t, covariates=X), distance="propensity",
                covariates=design)
    return X.assign(distance=res.units["distance"].to_numpy()), t, res.units["weight"].to_numpy()


def test_lalonde_matches_cobalts_documented_bal_tab():
    """cobalt's README prints `bal.tab(m.out, thresholds = c(m = .1), un = TRUE)` for MatchIt's lalonde
    example; every Diff.Un and Diff.Adj agrees to its 4 decimals (ATT: treated SD; binary covariates raw)."""
    X, t, w = lalonde_nearest()
    documented = {  # covariate: (Type, Diff.Un, Diff.Adj)
        "distance": ("Contin.", 1.7941, 0.9739), "age": ("Contin.", -0.3094, 0.0718),
        "educ": ("Contin.", 0.0550, -0.1290), "race_black": ("Binary", 0.6404, 0.3730),
        "race_hispan": ("Binary", -0.0827, -0.1568), "race_white": ("Binary", -0.5577, -0.2162),
        "married": ("Binary", -0.3236, -0.0216), "nodegree": ("Binary", 0.1114, 0.0703),
        "re74": ("Contin.", -0.7211, -0.0505), "re75": ("Contin.", -0.2903, -0.0257)}
    tab = balance.balance_table(X, t, w, thresholds={"smd": 0.1})
    smd = tab[tab["stat"] == "smd"].set_index(["covariate", "sample"])
    for cov, (kind, un, adj) in documented.items():
        assert smd.loc[(cov, "unmatched"), "type"] == kind, cov
        assert round(smd.loc[(cov, "unmatched"), "value"], 4) == un, cov
        assert round(smd.loc[(cov, "matched"), "value"], 4) == adj, cov
    judged = smd.xs("matched", level="sample").drop(index="distance")["balanced"]
    assert int(judged.sum()) == 5 and int((~judged).sum()) == 4  # cobalt's tally: 5 balanced, 4 not
    sizes = balance.sample_sizes(t, w).set_index("group")
    assert sizes.loc["control", ["all", "matched", "unmatched"]].tolist() == [429, 185, 244]
    assert sizes.loc["treated", ["all", "matched", "unmatched"]].tolist() == [185, 185, 0]


def test_love_plot_axis_says_what_the_differences_are():
    label = balance.difference_axis_label
    binary_raw = balance.balance_table(COBALT[["b"]], T6).query("stat == 'smd'")
    assert label(binary_raw) == "Absolute mean difference (binary: raw difference in proportions)"
    both_std = balance.balance_table(COBALT, T6, binary="std", estimand="ATE").query("stat == 'smd'")
    assert label(both_std) == "Absolute standardised mean difference (units of the pooled SD before matching)"
    mixed = balance.balance_table(COBALT, T6).query("stat == 'smd'")
    assert label(mixed) == ("Absolute standardised mean difference (units of the treated group's SD before "
                            "matching; "
                            "binary: raw difference)")


def test_the_stage_reads_the_estimand_of_the_matching_result():
    from ganmatch.stages.balance import method_balance, table_estimand

    pairs = pd.DataFrame({"treated_id": ["a"], "control_id": ["d"], "weight": [1.0]})
    assert table_estimand(pairs) == "ATT"  # no estimand column: what every matcher estimated so far
    assert table_estimand(pairs.assign(estimand="ATC")) == "ATC"
    with pytest.raises(InputDataError, match="'estimand'"):
        table_estimand(pd.concat([pairs.assign(estimand="ATT"), pairs.assign(estimand="ATE")]))
    with pytest.raises(InputDataError, match="'estimand'"):
        table_estimand(pairs.assign(estimand="ATX"))
    ids = list("abcdef")
    index = pd.DataFrame({"image_id": ids, "male": T6, "identity": ids})
    attrs = COBALT.assign(image_id=ids)
    # the pairs a-d and b-e
    units = pd.DataFrame({"image_id": ids, "weight": [1.0, 1.0, 0.0, 1.0, 1.0, 0.0]})
    out = method_balance(index, attrs, units, "male", ["x", "b"], 0.1, "m", min_pairs=1, estimand="ATC")
    smd = out["table"].query("stat == 'smd'").set_index(["covariate", "sample"])
    assert smd.loc[("x", "unmatched"), "value"] == pytest.approx(3 / SD_X["control"])
    assert smd.loc[("x", "matched"), "value"] == pytest.approx(1.5 / SD_X["control"])  # W6's pairs
    assert "Estimand ATC" in out["text"] and "s_d_denom: control" in out["text"]
