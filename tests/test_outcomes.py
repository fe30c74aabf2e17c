"""Known-answer tests of the outcome analysis: paired differences, bootstrap coverage, Rosenbaum bounds."""

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ganmatch.analysis import outcomes as oc
from ganmatch.errors import InputDataError

# Morton et al. (1982) lead in children's blood, 33 exposed/control pairs (Rosenbaum 2002, Observational
# Studies, ch. 4; the same vectors are the example of rbounds::psens). Published: mean difference 15.97 ug/dl,
# signed-rank statistic V = 499.
LEAD_EXPOSED = [38, 23, 41, 18, 37, 36, 23, 62, 31, 34, 24, 14, 21, 17, 16, 20, 15, 10, 45, 39, 22, 35, 49,
                48,
                44, 35, 43, 39, 34, 13, 73, 25, 27]
LEAD_CONTROL = [16, 18, 18, 24, 19, 11, 10, 15, 16, 18, 18, 13, 19, 10, 16, 16, 24, 13, 9, 14, 21, 19, 7, 18,
                19, 12, 11, 22, 25, 16, 13, 11, 13]


def pairs_table(treated_ids, control_ids, weight=None, embedding="gan"):
    df = pd.DataFrame({"treated_id": treated_ids, "control_id": control_ids})
    if weight is not None:
        df["weight"] = weight
    df["embedding"] = embedding
    return df


# ---------------------------------------------------------------------------- estimates by hand

def test_paired_difference_by_hand():
    y = pd.Series([3.0, 5.0, 4.0, 1.0, 2.0, 6.0], index=["t1", "t2", "t3", "c1", "c2", "c3"])
    pairs = pairs_table(["t1", "t2", "t3"], ["c1", "c2", "c3"])
    y_t, y_c, w, cl = oc.paired_outcomes(pairs, y)
    np.testing.assert_array_equal(y_t - y_c, [2.0, 3.0, -2.0])
    assert oc.att_estimate(y_t, y_c, w) == pytest.approx(1.0)
    # paired t by hand: mean 1, sd sqrt(7), t = 1 / (sqrt(7)/sqrt(3)), df 2
    t = 1.0 / (np.sqrt(7.0) / np.sqrt(3.0))
    assert oc.paired_test(y_t, y_c) == pytest.approx(2 * stats.t.sf(t, 2))


def test_k_to_one_weights_count_each_treated_once():
    # t1 has two controls (weights 1 each -> normalised to 1/2), t2 one control.
    y = pd.Series({"t1": 10.0, "t2": 4.0, "c1": 2.0, "c2": 4.0, "c3": 1.0})
    pairs = pairs_table(["t1", "t1", "t2"], ["c1", "c2", "c3"], weight=[1.0, 1.0, 1.0])
    y_t, y_c, w, cl = oc.paired_outcomes(pairs, y)
    np.testing.assert_allclose(w, [0.5, 0.5, 1.0])
    # contrasts: t1: 10 - 3 = 7, t2: 4 - 1 = 3 -> ATT 5
    np.testing.assert_allclose(oc.treated_contrasts(y_t, y_c, w, cl), [7.0, 3.0])
    assert oc.att_estimate(y_t, y_c, w) == pytest.approx(5.0)


def test_matched_pairs_drops_missing_and_rejects_unknown_ids():
    y = pd.Series({"t1": 1.0, "t2": np.nan, "c1": 0.0, "c2": 0.0})
    y_t, y_c, w, cl = oc.paired_outcomes(pairs_table(["t1", "t2"], ["c1", "c2"]), y)
    assert len(y_t) == 1
    with pytest.raises(InputDataError, match="no row"):
        oc.paired_outcomes(pairs_table(["t1"], ["zz"]), y)


def test_naive_difference_matches_welch_and_two_proportion():
    rng = np.random.default_rng(1)
    y = np.r_[rng.normal(1.0, 1.0, 40), rng.normal(0.0, 2.0, 60)]
    t = np.r_[np.ones(40), np.zeros(60)]
    res = oc.naive_difference(y, t)
    ref = stats.ttest_ind(y[:40], y[40:], equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert res["estimate"] == pytest.approx(y[:40].mean() - y[40:].mean())
    assert res["p_value"] == pytest.approx(ref.pvalue)
    assert (res["ci_low"], res["ci_high"]) == pytest.approx((ci.low, ci.high))
    # binary: 30/50 vs 20/50 -> 0.2; pooled z = 0.2 / sqrt(.5*.5*(2/50)) = 2.0
    yb = np.r_[np.ones(30), np.zeros(20), np.ones(20), np.zeros(30)]
    tb = np.r_[np.ones(50), np.zeros(50)]
    rb = oc.naive_difference(yb, tb)
    assert rb["estimate"] == pytest.approx(0.2)
    assert rb["p_value"] == pytest.approx(2 * stats.norm.sf(2.0))
    assert rb["ci_high"] - rb["ci_low"] == pytest.approx(2 * 1.959964 * np.sqrt(2 * 0.24 / 50), rel=1e-5)


def test_mcnemar_exact():
    # 8 pairs treated 1 / control 0, 2 the reverse, 5 concordant: exact binomial test of 8 of 10 at 1/2
    y_t = np.r_[np.ones(8), np.zeros(2), np.ones(3), np.zeros(2)]
    y_c = np.r_[np.zeros(8), np.ones(2), np.ones(3), np.zeros(2)]
    p = oc.paired_test(y_t, y_c, "binary")
    assert p == pytest.approx(2 * sum(stats.binom.pmf(k, 10, 0.5) for k in (8, 9, 10)))
    assert p == pytest.approx(0.109375)


# ---------------------------------------------------------------------------- bootstrap

def test_bootstrap_interval_covers_at_nominal_rate():
    rng = np.random.default_rng(2024)
    tau, n, n_sim = 0.5, 60, 200
    covered = 0
    for k in range(n_sim):
        y_c = rng.normal(0.0, 1.0, n)
        y_t = y_c + tau + rng.standard_t(5, n)  # heavy-ish tailed pair differences
        low, high = oc.paired_bootstrap_ci(y_t, y_c, n_boot=1000, random_state=k)
        covered += low <= tau <= high
    rate = covered / n_sim
    # binomial SE at 0.95 and 200 draws is 0.015; allow the percentile method's small-n undercoverage
    assert 0.91 <= rate <= 0.99, rate


def test_bootstrap_interval_matches_normal_theory_and_weights():
    rng = np.random.default_rng(11)
    d = rng.normal(2.0, 1.0, 400)
    low, high = oc.paired_bootstrap_ci(d, np.zeros(400), n_boot=4000)
    se = d.std(ddof=1) / np.sqrt(400)
    assert (high - low) == pytest.approx(2 * 1.959964 * se, rel=0.06)
    assert (low + high) / 2 == pytest.approx(d.mean(), abs=0.2 * se)
    # weights: the interval is about the weighted mean, not the plain one
    y_t = np.r_[np.full(100, 1.0), np.full(100, 3.0)] + rng.normal(0, 0.1, 200)
    w = np.r_[np.full(100, 9.0), np.ones(100)]
    low, high = oc.paired_bootstrap_ci(y_t, np.zeros(200), w)
    assert low < oc.att_estimate(y_t, np.zeros(200), w) < high < 2.0


def test_bootstrap_is_seeded_and_clusters_are_resampled_whole():
    rng = np.random.default_rng(0)
    y_t, y_c = rng.normal(1, 1, 50), rng.normal(0, 1, 50)
    assert oc.paired_bootstrap_ci(y_t, y_c, random_state=3) == oc.paired_bootstrap_ci(y_t, y_c,
                                                                                      random_state=3)
    # duplicating every pair inside its own cluster must not change a cluster bootstrap (same seed)
    cl = np.arange(50)
    a = oc.paired_bootstrap_ci(y_t, y_c, cluster=cl, random_state=5)
    b = oc.paired_bootstrap_ci(np.repeat(y_t, 2), np.repeat(y_c, 2), np.full(100, 0.5), np.repeat(cl, 2),
                               random_state=5)
    assert a == pytest.approx(b)
    # ... whereas resampling the duplicated pairs independently narrows the interval (the error clustering
    # avoids)
    c = oc.paired_bootstrap_ci(np.repeat(y_t, 2), np.repeat(y_c, 2), random_state=5)
    assert c[1] - c[0] < 0.85 * (a[1] - a[0])


# ---------------------------------------------------------------------------- Rosenbaum bounds

def test_rosenbaum_lead_example():
    t, c = np.array(LEAD_EXPOSED, float), np.array(LEAD_CONTROL, float)
    d = t - c
    assert d.mean() == pytest.approx(15.97, abs=0.005)
    nz = d[d != 0]
    assert stats.rankdata(np.abs(nz))[nz > 0].sum() == 499  # published V = 499
    # Gamma = 1 is the ordinary large-sample signed-rank test (tie-corrected variance, no continuity
    # correction)
    ref = stats.wilcoxon(d, alternative="greater", method="approx", correction=False, zero_method="wilcox")
    assert oc.rosenbaum_pvalue(d, 1.0) == pytest.approx(ref.pvalue, rel=1e-9)
    # normal-approximation bounds, 4 decimals, as the psens formula gives them (pinned values: the book's
    # table itself could not be checked offline; T, E and Var are checked against enumeration below)
    expected = {2: 0.0018, 3: 0.0131, 4: 0.0367, 5: 0.0694, 6: 0.1073}
    for g, p in expected.items():
        assert oc.rosenbaum_pvalue(d, g) == pytest.approx(p, abs=6e-5)
    # significant at 0.05 through Gamma = 4.25, not at 5: the sensitivity value lies between
    gamma = oc.rosenbaum_gamma(t, c, "numeric")
    assert 4.25 < gamma < 5.0
    assert oc.rosenbaum_pvalue(d, gamma) == pytest.approx(0.05, abs=1e-8)
    # the direction follows the effect: swapping the groups gives the same Gamma
    assert oc.rosenbaum_gamma(c, t, "numeric") == pytest.approx(gamma)


def test_rosenbaum_signed_rank_against_enumeration():
    d = np.array([1.3, -0.4, 2.2, 0.9, -1.7, 3.1, 0.6, 2.8, -0.2, 1.1])
    ranks = stats.rankdata(np.abs(d))
    t_obs = ranks[d > 0].sum()
    signs = np.array(list(itertools.product((0, 1), repeat=len(d))))  # all 2^10 sign patterns
    t_all = signs @ ranks
    for gamma in (1.0, 2.0, 3.5):
        p = gamma / (1 + gamma)
        prob = p ** signs.sum(1) * (1 - p) ** (len(d) - signs.sum(1))
        exact = prob[t_all >= t_obs].sum()
        assert oc.rosenbaum_pvalue(d, gamma, method="exact") == pytest.approx(exact, rel=1e-10)
        # the normal approximation uses the exact mean and variance of T under the bound
        mean = (prob * t_all).sum()
        sd = np.sqrt((prob * (t_all - mean) ** 2).sum())
        assert mean == pytest.approx(p * ranks.sum())
        assert oc.rosenbaum_pvalue(d, gamma) == pytest.approx(stats.norm.sf((t_obs - mean) / sd), rel=1e-9)


def test_rosenbaum_sign_test_bound_and_gamma():
    # 9 of 10 discordant pairs favour the treated: bound = P(Bin(10, p+) >= 9) = 10 p^9 (1 - p) + p^10
    y_t = np.r_[np.ones(9), 0, np.ones(5)]
    y_c = np.r_[np.zeros(9), 1, np.ones(5)]
    for gamma in (1.0, 1.5, 2.0):
        p = gamma / (1 + gamma)
        assert oc.rosenbaum_pvalue(y_t - y_c, gamma, "binary") == pytest.approx(10 * p**9 * (1 - p) + p**10)
    g = oc.rosenbaum_gamma(y_t, y_c, "binary")
    p = g / (1 + g)
    assert 10 * p**9 * (1 - p) + p**10 == pytest.approx(0.05, abs=1e-8)
    assert 1.0 < g < 2.0


def test_rosenbaum_gamma_conventions():
    assert np.isnan(oc.rosenbaum_gamma(np.ones(5), np.ones(5)))  # no non-zero difference
    rng = np.random.default_rng(0)
    # not significant at Gamma 1
    assert np.isnan(oc.rosenbaum_gamma(rng.normal(size=30), rng.normal(size=30)))
    big = np.linspace(1, 2, 200)
    assert np.isinf(oc.rosenbaum_gamma(big, np.zeros(200), gamma_max=5.0))  # still significant at gamma_max
    with pytest.raises(InputDataError):
        oc.rosenbaum_pvalue([1.0], 0.5)


# ---------------------------------------------------------------------------- ground truth

def planted(n=600, tau=1.0, seed=0):
    """Confounded data: x raises both treatment and outcome, so the naive difference is biased upward."""
    rng = np.random.default_rng(seed)
    x = rng.random(n) < 0.5
    t = (rng.random(n) < np.where(x, 0.8, 0.2)).astype(int)
    y = tau * t + 2.0 * x + 0.5 * rng.standard_normal(n)
    ids = [f"img{i:04d}" for i in range(n)]
    table = pd.DataFrame({"image_id": ids, "outcome": y, "male": t, "flag": (y > 1.5).astype(int)})
    # exact 1:1 matching on x without replacement (an oracle matcher)
    pairs = []
    for v in (False, True):
        tr = [ids[i] for i in np.flatnonzero((t == 1) & (x == v))]
        co = [ids[i] for i in np.flatnonzero((t == 0) & (x == v))]
        pairs += list(zip(tr, co[: len(tr)], strict=False))
    exact = pairs_table([p[0] for p in pairs], [p[1] for p in pairs], embedding="oracle")
    return table, exact


def test_estimate_outcomes_recovers_planted_effect():
    table, exact = planted()
    out = oc.estimate_outcomes(table[["image_id", "outcome", "flag", "male"]], "male", {"exact": exact},
                               columns=["outcome", "flag"], truth={"outcome": 1.0}, n_boot=1000)
    assert list(out.columns) == oc.TABLE_COLUMNS
    assert len(out) == 4
    row = out.set_index(["outcome", "method"])
    naive, matched = row.loc[("outcome", "naive")], row.loc[("outcome", "exact")]
    assert naive["estimate"] > 1.5 and not naive["covers"]  # biased by 2 * (P(x|t=1) - P(x|t=0)) = 1.2
    assert matched["covers"] and abs(matched["error"]) < 0.15
    assert matched["embedding"] == "oracle" and matched["n_pairs"] == matched["n_treated"] == len(exact)
    assert matched["p_value"] < 1e-6 and matched["gamma"] > 2 and matched["test"] == "paired_t"
    assert np.isnan(naive["gamma"]) and pd.isna(naive["n_pairs"])
    assert matched["error"] == pytest.approx(matched["estimate"] - 1.0)
    flag = row.loc[("flag", "exact")]
    assert flag["kind"] == "binary" and flag["test"] == "mcnemar_exact" and pd.isna(flag["covers"])
    # round trip through Parquet keeps the schema
    again = pd.read_parquet(_to_parquet(out))
    assert list(again.columns) == oc.TABLE_COLUMNS


def _to_parquet(df):
    import io

    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    buf.seek(0)
    return buf


def test_estimate_outcomes_with_series_treatment_and_bad_column():
    table, exact = planted(n=200, seed=3)
    treated = table.set_index("image_id")["male"]
    out = oc.estimate_outcomes(table[["image_id", "outcome"]], treated, {"exact": exact}, n_boot=200)
    assert set(out["method"]) == {"naive", "exact"}
    with pytest.raises(InputDataError, match="nope"):
        oc.estimate_outcomes(table[["image_id", "outcome"]], treated, {}, columns=["nope"])


# ---------------------------------------------------------------------------- face-recognition bias

def test_reference_distances_nearest_random_and_singletons():
    ids = ["a1", "a2", "a3", "b1", "c1", "c2"]
    identity = ["A", "A", "A", "B", "C", "C"]
    X = np.array([[0, 0], [3, 4], [1, 0], [9, 9], [0, 0], [0, 2]], float)
    near = oc.reference_distances(ids, identity, X, reference="nearest").set_index("image_id")
    assert near.loc["a1", "reference_id"] == "a3" and near.loc["a1", "distance"] == pytest.approx(1.0)
    assert near.loc["a2", "distance"] == pytest.approx(np.sqrt(4 + 16))
    assert np.isnan(near.loc["b1", "distance"]) and pd.isna(near.loc["b1", "reference_id"])
    assert near.loc["c2", "distance"] == pytest.approx(2.0)
    excl = oc.reference_distances(ids, identity, X, reference="nearest", exclude=["a3"]).set_index("image_id")
    assert excl.loc["a1", "reference_id"] == "a2" and excl.loc["a3", "reference_id"] == "a1"
    rnd = oc.reference_distances(ids, identity, X, reference="random", random_state=7)
    again = oc.reference_distances(ids, identity, X, reference="random", random_state=7)
    pd.testing.assert_frame_equal(rnd, again)
    assert (rnd["reference_id"] != rnd["image_id"]).all()
    cos = oc.reference_distances(ids, identity, X + 1, metric="cosine",
                                 reference="nearest").set_index("image_id")
    assert cos.loc["c1", "distance"] == pytest.approx(1 - 4 / (np.sqrt(2) * np.sqrt(10)))


def test_verification_bias_by_hand():
    dist = pd.Series({"t1": 0.3, "t2": 0.7, "t3": 0.5, "c1": 0.2, "c2": 0.65, "c3": 0.9, "c4": np.nan})
    treated = pd.Series({"t1": 1, "t2": 1, "t3": 1, "c1": 0, "c2": 0, "c3": 0, "c4": 0})
    pairs = pairs_table(["t1", "t2"], ["c2", "c3"])
    out = oc.verification_bias(dist, treated, threshold=0.6, matches={"m": pairs}, n_boot=200)
    assert list(out.columns) == oc.BIAS_COLUMNS
    v = out.set_index(["sample", "stat", "group"])["value"]
    assert v[("all", "accuracy", "treated")] == pytest.approx(2 / 3)
    assert v[("all", "accuracy", "control")] == pytest.approx(1 / 3)  # c4 has no reference: left out
    assert v[("all", "accuracy", "difference")] == pytest.approx(1 / 3)
    assert v[("all", "mean_distance", "treated")] == pytest.approx(0.5)
    assert v[("all", "mean_distance", "difference")] == pytest.approx(0.5 - 1.75 / 3)
    assert v[("all", "median_distance", "control")] == pytest.approx(0.65)
    assert v[("m", "mean_distance", "control")] == pytest.approx(0.775)
    assert v[("m", "mean_distance", "difference")] == pytest.approx(0.5 - 0.775)
    assert v[("m", "accuracy", "treated")] == pytest.approx(0.5)
    assert v[("m", "accuracy", "control")] == pytest.approx(0.0)
    assert v[("m", "accuracy", "difference")] == pytest.approx(0.5)
