"""Matching: hand-made known answers per method, and the heap-driven greedy methods against
straightforward dense implementations written here."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from ganmatch import matching
from ganmatch.analysis import distances
from ganmatch.errors import ConfigError, InputDataError
from ganmatch.matching import MatchData, match, matched_weights
from ganmatch.matching.nearest import line_sets


def make_data(X, treated, **kw):
    X = np.asarray(X, np.float32).reshape(len(treated), -1)
    ids = np.array([f"i{j}" for j in range(len(treated))])
    return MatchData(ids=ids, treated=np.asarray(treated), embeddings={"e": X, **kw.pop("emb", {})}, **kw)


def pairs_of(res):
    return list(zip(res.pairs.treated_id, res.pairs.control_id, strict=True))


# ---------------------------------------------------------------- dense references


def dense_greedy(Xt, Xc, caliper=np.inf, n_pairs=None):
    """Textbook greedy: argmin of the full matrix, mask its row and column, repeat."""
    P = distances.pairwise(Xt, Xc).astype(np.float64)
    out = []
    while n_pairs is None or len(out) < n_pairs:
        j = int(np.argmin(P))
        t, c = divmod(j, P.shape[1])
        if not np.isfinite(P[t, c]) or P[t, c] > caliper:
            break
        out.append((t, c))
        P[t, :] = np.inf
        P[:, c] = np.inf
    return out


def dense_constrained(X, F, R, treated, ident, glasses, thr, mode, gap, n_pairs, penalty=1e6):
    """The reference study's loop on full matrices (feasibility checked when a pair reaches the top)."""
    n = len(X)
    t_idx, c_idx = np.flatnonzero(treated == 1), np.flatnonzero(treated == 0)
    cost = distances.pairwise(X[t_idx], X[c_idx]).astype(np.float64)
    viol = distances.pairwise(F[t_idx], F[c_idx]) > thr
    cost = cost + penalty * viol if mode == "penalty" else np.where(viol, np.inf, cost)
    Rm = distances.pairwise(R, R)
    refs = [[j for j in range(n) if ident[j] == ident[i] and j != i and glasses[j] != 1] for i in range(n)]
    sizes = pd.Series(ident).value_counts()
    ok = np.array([sizes[ident[i]] >= 2 and len(refs[i]) > 0 for i in range(n)])
    cost[~ok[t_idx], :] = np.inf
    cost[:, ~ok[c_idx]] = np.inf

    def ref_pair(a, b):
        best = None
        for ra in refs[a]:
            for rb in refs[b]:
                g = abs(float(Rm[a, ra]) - float(Rm[b, rb]))
                if gap[0] <= g <= gap[1] and (best is None or g < best[2]):
                    best = (ra, rb, g)
        return best

    out = []
    while len(out) < n_pairs:
        j = int(np.argmin(cost))
        a, b = divmod(j, cost.shape[1])
        if not np.isfinite(cost[a, b]):
            break
        rr = ref_pair(t_idx[a], c_idx[b])
        if rr is None:
            cost[a, b] = np.inf
            continue
        out.append((t_idx[a], c_idx[b], rr[0], rr[1], bool(viol[a, b])))
        dead = np.isin(ident, [ident[t_idx[a]], ident[c_idx[b]]])
        cost[dead[t_idx], :] = np.inf
        cost[:, dead[c_idx]] = np.inf
    return out


# ---------------------------------------------------------------- greedy


def test_greedy_known_answer():
    # treated at 0 and 10, controls at 1, 9.5, 20: the closest pair (10, 9.5) goes first
    data = make_data([0, 10, 1, 9.5, 20], [1, 1, 0, 0, 0])
    res = match("greedy", data, distance="embedding", embedding="e")
    assert pairs_of(res) == [("i1", "i3"), ("i0", "i2")]
    assert res.pairs["distance"].tolist() == [0.5, 1.0]
    assert res.pairs["subclass"].tolist() == [1, 2] and (res.pairs["weight"] == 1).all()
    assert list(res.pairs.columns[:7]) == matching.PAIR_COLUMNS
    res = match("greedy", data, distance="embedding", embedding="e", caliper=0.7, std_caliper=False)
    assert pairs_of(res) == [("i1", "i3")]
    res = match("greedy", data, distance="embedding", embedding="e", n_pairs=1)
    assert len(res.pairs) == 1 and res.info["n_matched"] == 1


@pytest.mark.parametrize("n,d,k,seed", [(2000, 16, 4, 0), (600, 8, 2, 1), (300, 4, 50, 2), (200, 3, 1, 3)])
def test_greedy_equals_dense(n, d, k, seed):
    rng = np.random.default_rng(seed)
    treated = (rng.random(n) < rng.uniform(0.3, 0.6)).astype(int)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[treated == 1] += 0.4
    X[5] = X[7]  # a duplicate: exact ties
    data = make_data(X, treated)
    t_idx, c_idx = np.flatnonzero(treated), np.flatnonzero(1 - treated)
    for kw in ({}, {"n_pairs": n // 5}, {"caliper_quantile": 0.5}):
        res = match("greedy", data, distance="embedding", embedding="e", k=k, **kw)
        cal = res.info["caliper"]
        ref = dense_greedy(X[t_idx], X[c_idx], cal, kw.get("n_pairs"))
        assert pairs_of(res) == [(data.ids[t_idx[a]], data.ids[c_idx[b]]) for a, b in ref]
    assert res.info["n_refills"] >= 0


def test_greedy_refills_when_lists_run_out():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(400, 5)).astype(np.float32)
    treated = np.r_[np.ones(200, int), np.zeros(200, int)]
    res = match("greedy", make_data(X, treated), distance="embedding", embedding="e", k=1)
    assert res.info["n_refills"] > 0 and len(res.pairs) == 200
    ref = dense_greedy(X[:200], X[200:])
    assert pairs_of(res) == [(f"i{a}", f"i{200 + b}") for a, b in ref]


def test_greedy_with_a_caliper_does_not_refill_lists_already_past_it():
    """A used-up list whose last distance is past the caliper is not searched again (every control beyond it
    is farther). On a line: treated t1 at 0 keeps c0 (0.9) and c2 (1.5), which tA and tB take first; with
    caliper 1 its list ends past the caliper, so no refill; the pairs are the dense algorithm's."""
    from ganmatch.matching.greedy import CrossLists, greedy_pairs

    Xt = np.array([[0.0], [0.95], [-1.5]], np.float32)             # t1, tA, tB
    Xc = np.array([[0.9], [3.0], [-1.5]], np.float32)              # c0, c3, c2
    lists = CrossLists(Xt, Xc, "euclidean", 2)
    t, c, _ = greedy_pairs(Xt, Xc, caliper=1.0, lists=lists)
    assert list(zip(t.tolist(), c.tolist(), strict=True)) == [(2, 2), (1, 0)] and lists.n_refills == 0
    rng = np.random.default_rng(6)
    X = rng.normal(size=(600, 6)).astype(np.float32)
    data = make_data(X, np.r_[np.ones(300, int), np.zeros(300, int)])
    capped = match("greedy", data, distance="embedding", embedding="e", k=2, caliper_quantile=0.5)
    ref = dense_greedy(X[:300], X[300:], capped.info["caliper"])
    assert pairs_of(capped) == [(f"i{a}", f"i{300 + b}") for a, b in ref]


def test_greedy_refill_reads_the_live_controls_without_copying_them():
    """At 30,000 photos pixel_greedy made 1,746 refills, each copying the live controls (64 MB) and
    re-validating them. A refill now allocates O(live controls), not O(live controls x features): its peak
    is a small fraction of the control matrix, at 1x and 2x the controls alike, and its lists equal a dense
    sort of the live controls."""
    import tracemalloc

    from ganmatch.matching.greedy import CrossLists

    rng = np.random.default_rng(8)
    for m in (4000, 8000):
        Xt = rng.normal(size=(5, 768)).astype(np.float32)
        Xc = rng.normal(size=(m, 768)).astype(np.float32)
        lists = CrossLists(Xt, Xc, "euclidean", 2)
        alive = rng.random(m) < 0.7
        lists.refill(0, alive)                                  # the first refill prepares the rows once
        tracemalloc.start()
        try:
            assert lists.refill(1, alive)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < Xc.nbytes / 20, (m, peak, Xc.nbytes)
        live = np.flatnonzero(alive)
        dense = distances.pairwise(Xt[1:2], Xc[live])[0]
        order = np.lexsort((live, dense))[:4]
        assert lists.stream(1)[0].tolist() == live[order].tolist()
        assert np.array_equal(lists.stream(1)[1], dense[order])


def test_caliper_leaving_nobody_gives_empty_result_with_warning():
    data = make_data([0, 10, 1, 9.5], [1, 1, 0, 0])
    with pytest.warns(UserWarning, match="no pair"):
        res = match("greedy", data, distance="embedding", embedding="e", caliper=0.1, std_caliper=False)
    assert len(res.pairs) == 0 and list(res.pairs.columns) == matching.PAIR_COLUMNS
    assert res.info["n_matched"] == 0 and res.info["warnings"]
    assert (matched_weights(data.ids, res.pairs) == 0).all()


def test_bad_input():
    with pytest.raises(InputDataError, match="control group has no members"):
        match("greedy", distance="embedding", data=make_data([0, 1], [1, 1]), embedding="e")
    X = np.array([[0.0], [np.nan], [1.0]])
    with pytest.raises(InputDataError, match="NaN"):
        match("greedy", distance="embedding", data=make_data(X, [1, 0, 0]), embedding="e")
    with pytest.raises(ConfigError, match="unknown matching method"):
        match("nearest_magic", make_data([0, 1], [1, 0]))
    with pytest.raises(ConfigError, match="does not take"):
        match("greedy", distance="embedding", data=make_data([0, 1], [1, 0]), embedding="e", ratio=3)
    with pytest.raises(ConfigError, match="not available"):
        match("greedy", distance="embedding", data=make_data([0, 1], [1, 0]), embedding="gan")
    with pytest.raises(InputDataError, match="0/1"):
        make_data([0, 1], [1, 2])
    with pytest.raises(ConfigError, match="at most one"):
        match("greedy", distance="embedding", data=make_data([0, 1], [1, 0]), embedding="e", caliper=1,
              caliper_sd=1)


# ---------------------------------------------------------------- greedy constrained


def constrained_case():
    # identities A (treated, 2 photos), B (control, 2), C (control, 1 photo: not selectable),
    # D (treated, 3 photos, one with glasses), E (control, 2)
    ident = np.array(["A", "A", "B", "B", "C", "D", "D", "D", "E", "E"])
    treated = np.array([1, 1, 0, 0, 0, 1, 1, 1, 0, 0])
    gan = np.array([0.0, 5.0, 0.2, 9.0, 0.05, 3.0, 8.0, 8.5, 3.1, 20.0])
    facial = np.array([0.0, 0.0, 0.1, 0.1, 0.0, 0.0, 0.0, 0.0, 5.0, 5.0])
    vgg = np.array([0.0, 1.0, 0.0, 1.5, 0.0, 0.0, 2.0, 1.0, 0.0, 1.0])
    glasses = np.array([0, 0, 0, 0, 0, 0, 0, 1, 0, 0])
    data = make_data(gan, treated, identity=ident, covariates=pd.DataFrame({"eyeglasses": glasses}),
                     emb={"gan": gan[:, None], "facial": facial[:, None], "vgg": vgg[:, None]})
    return data


def test_greedy_constrained_known_answer():
    data = constrained_case()
    res = match("greedy_constrained", data, semantics="corrected", threshold=0.6, n_pairs=5,
                reference_gap=(0.0, 10.0))
    # (i0, i4) at 0.05 is not selectable (C has one photo); (i0, i2) at 0.2 is; then A and B are gone;
    # (i5, i8) at 0.1 violates the facial threshold (penalty 1e6) but is the only pair left
    assert pairs_of(res) == [("i0", "i2"), ("i5", "i8")]
    p = res.pairs
    assert p["treated_ref"].tolist() == ["i1", "i6"]  # i7 wears glasses: never a reference
    assert p["control_ref"].tolist() == ["i3", "i9"]
    assert p["penalised"].tolist() == [False, True]
    assert np.allclose(p["distance"], [0.2, 0.1])
    assert res.info["n_penalised"] == 1
    hard = match("greedy_constrained", data, semantics="corrected", threshold=0.6, mode="hard", n_pairs=5,
                 reference_gap=(0.0, 10.0))
    assert pairs_of(hard) == [("i0", "i2")]
    # reference gaps must lie in the window: |1 - 1.5| = 0.5 is outside [0.6, 10] -> A-B impossible
    res = match("greedy_constrained", data, semantics="corrected", threshold=0.6, n_pairs=5,
                reference_gap=(0.6, 10.0))
    assert ("i0", "i2") not in pairs_of(res)


def test_greedy_constrained_max_cost_caps_the_cost_not_the_distance():
    data = constrained_case()
    kw = {"semantics": "corrected", "threshold": 0.6, "n_pairs": 5, "reference_gap": (0.0, 10.0)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # (i5, i8) has distance 0.1 but cost 0.1 + 1e6 (penalised): a cap of 1 on the cost drops it
        capped = match("greedy_constrained", data, max_cost=1.0, **kw)
    assert pairs_of(capped) == [("i0", "i2")] and capped.info["max_cost"] == 1.0
    assert pairs_of(match("greedy_constrained", data, max_cost=2e6, **kw)) == [("i0", "i2"), ("i5", "i8")]
    with pytest.raises(ConfigError, match="'caliper' is now 'max_cost'"):
        match("greedy_constrained", data, caliper=1.0, **kw)


def test_greedy_constrained_goes_through_the_distance_step():
    from ganmatch.matching.constrained import match_greedy_constrained
    from ganmatch.matching.distance import distance_measure

    data = constrained_case()
    kw = {"semantics": "corrected", "threshold": 0.6, "n_pairs": 5, "reference_gap": (0.0, 10.0)}
    res = match("greedy_constrained", data, **kw)
    # the distance step ran (nothing discarded on an embedding distance) and its rows are what is matched on
    assert res.info["n_discarded"] == 0 and not res.units["discarded"].any() and res.info["estimand"] == "ATT"
    measure = distance_measure(data, "embedding", "gan", "euclidean", who="test")
    direct = match_greedy_constrained(data, **kw, measure=measure)
    assert direct.pairs.equals(res.pairs)
    shifted = distance_measure(data, "embedding", "gan", "euclidean", who="test")
    shifted.X = shifted.X[::-1].copy()  # other rows: other pairs, so the matcher reads the measure's rows
    assert not match_greedy_constrained(data, **kw, measure=shifted).pairs.equals(res.pairs)


@pytest.mark.parametrize("seed,mode", [(0, "penalty"), (1, "hard"), (2, "penalty"), (3, "hard"), (4,
                                                                                                  "penalty")])
def test_greedy_constrained_equals_dense(seed, mode):
    rng = np.random.default_rng(seed)
    n_id = 150 if seed == 0 else 60
    sizes = rng.integers(1, 6, n_id)
    ident = np.repeat(np.arange(n_id), sizes).astype(str)
    n = len(ident)
    centre = rng.normal(size=(n_id, 6))
    X = (centre[np.repeat(np.arange(n_id), sizes)] + 0.6 * rng.normal(size=(n, 6))).astype(np.float32)
    F = (centre[np.repeat(np.arange(n_id), sizes), :3] + 0.3 * rng.normal(size=(n, 3))).astype(np.float32)
    R = rng.normal(size=(n, 5)).astype(np.float32)
    treated = (rng.random(n) < 0.5).astype(int)
    glasses = (rng.random(n) < 0.2).astype(int)
    thr = float(np.quantile(distances.pairwise(F[treated == 1], F[treated == 0]), 0.003))
    data = make_data(X, treated, identity=ident, covariates=pd.DataFrame({"eyeglasses": glasses}),
                     emb={"gan": X, "facial": F, "vgg": R})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = match("greedy_constrained", data, semantics="corrected", threshold=thr, mode=mode, n_pairs=60,
                    k=3,
                    reference_gap=(0.05, 1.5))
    ref = dense_constrained(X, F, R, treated, ident, glasses, thr, mode, (0.05, 1.5), 60)
    got = list(zip(res.pairs.treated_id, res.pairs.control_id, res.pairs.treated_ref, res.pairs.control_ref,
                   res.pairs.penalised, strict=True))
    want = [(data.ids[a], data.ids[b], data.ids[ra], data.ids[rb], v) for a, b, ra, rb, v in ref]
    assert got == want
    assert len(got) > 5
    if mode == "penalty":
        assert res.pairs["penalised"].any() and not res.pairs["penalised"].all()
    # identities are used once
    used = np.concatenate([ident[np.isin(data.ids, res.pairs[c])] for c in ("treated_id", "control_id")])
    assert len(set(pd.Series(ident, index=data.ids).loc[res.pairs.treated_id])) == len(res.pairs)
    assert len(used) >= 2 * len(res.pairs)


def test_greedy_constrained_needs_identity():
    with pytest.raises(InputDataError, match="identit"):
        match("greedy_constrained", make_data([0, 1], [1, 0], emb={"gan": np.zeros((2, 1))}),
              constraint_embedding=None, reference_embedding=None)


# ---------------------------------------------------------------- propensity


def test_nearest_on_line_known_answers():
    lt = np.array([0.0, 1.0, 5.0])
    lc = np.array([0.9, 0.2, 4.0, 10.0])
    t, c, d = line_sets(lt, lc, np.array([0, 1, 2]), 1, False, np.inf)
    assert list(zip(t, c, strict=True)) == [(0, 1), (1, 0), (2, 2)] and np.allclose(d, [0.2, 0.1, 1.0])
    # order matters without replacement: treated 1 first takes control 0 (0.9), treated 0 then takes 1
    t, c, _ = line_sets(lt, lc, np.array([1, 0, 2]), 1, False, np.inf)
    assert list(zip(t, c, strict=True)) == [(1, 0), (0, 1), (2, 2)]
    # with replacement both can use the same control; caliper drops treated 2 (1.0 > 0.5)
    t, c, _ = line_sets(np.array([0.8, 1.0, 5.0]), lc, np.array([0, 1, 2]), 1, True, 0.5)
    assert list(zip(t, c, strict=True)) == [(0, 0), (1, 0)]
    # 2:1 without replacement goes in rounds (MatchIt): every treated unit's first match, then the second
    t, c, _ = line_sets(lt, lc, np.array([0, 1]), 2, False, np.inf)
    assert list(zip(t, c, strict=True)) == [(0, 1), (1, 0), (0, 2), (1, 3)]
    # equal differences on both sides: the lower score wins (MatchIt's outward scan)
    t, c, _ = line_sets(np.array([1.0]), np.array([1.5, 0.5]), np.array([0]), 1, False, np.inf)
    assert c.tolist() == [1]


def confounded(n=1200, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    treated = (rng.random(n) < 1 / (1 + np.exp(-(1.5 * z[:, 0] - z[:, 1])))).astype(int)
    cov = pd.DataFrame({"a": z[:, 0], "b": z[:, 1], "c": (z[:, 2] > 0).astype(int)})
    return make_data(z.astype(np.float32), treated, covariates=cov), cov, treated


def test_propensity_improves_balance_and_respects_caliper():
    from ganmatch.analysis.balance import weighted_smd

    data, cov, treated = confounded()
    ps = dict(distance="propensity", covariates=["a", "b", "c"], link="linear.logit", m_order="random",
              caliper=0.2)
    res = match("nearest", data, random_state=42, **ps)
    p = res.pairs
    assert p["control_id"].is_unique and p["treated_id"].is_unique
    assert (p["distance"] <= res.info["caliper"]).all()
    assert np.isclose(res.info["caliper"], 0.2 * res.info["logit_sd"])
    assert np.allclose(p["distance"], (p["treated_logit"] - p["control_logit"]).abs())
    w = res.units["weight"].to_numpy()
    assert np.allclose(w, matched_weights(data.ids, p))
    before = abs(weighted_smd(cov["a"], treated))
    after = abs(weighted_smd(cov["a"], treated, w))
    assert before > 0.5 and after < 0.1
    again = match("nearest", data, random_state=42, **ps)
    assert pairs_of(again) == pairs_of(res)
    rep = match("nearest", data, distance="propensity", embedding="e", penalty="l2", replace=True, ratio=2,
                m_order="largest")
    assert not rep.pairs["control_id"].is_unique
    assert np.allclose(rep.pairs.groupby("treated_id")["weight"].sum(), 1.0)
    assert rep.units["subclass"].isna().all()          # no subclasses with replacement (MatchIt)
    with pytest.raises(ConfigError, match="m_order"):
        match("nearest", data, distance="propensity", covariates=["a"], m_order="sideways")
    with pytest.raises(ConfigError, match="not columns"):
        match("nearest", data, distance="propensity", covariates=["zz"])


# ---------------------------------------------------------------- optimal


def test_optimal_known_answer_differs_from_greedy():
    # treated 0 and 2, controls 1.9 and 5: greedy takes (2, 1.9) first (total 5.1); optimal total 4.9
    data = make_data([0, 2, 1.9, 5], [1, 1, 0, 0])
    g = match("greedy", data, distance="embedding", embedding="e")
    o = match("optimal", data, distance="embedding", embedding="e")
    assert set(pairs_of(g)) == {("i1", "i2"), ("i0", "i3")}
    assert set(pairs_of(o)) == {("i0", "i2"), ("i1", "i3")}
    assert np.isclose(o.info["total_distance"], 4.9, atol=1e-5)


def test_optimal_4x4():
    # 4 x 4 in 2-D, optimum by enumerating all 24 assignments
    import itertools

    P = np.array([[0, 0], [1, 0], [0, 1], [3, 3], [0.6, 0.1], [0.2, 0.9], [1.1, 0.9], [2, 2.5]], np.float32)
    D = distances.pairwise(P[:4], P[4:]).astype(np.float64)
    best = min(itertools.permutations(range(4)), key=lambda p: sum(D[i, p[i]] for i in range(4)))
    res = match("optimal", make_data(P, [1, 1, 1, 1, 0, 0, 0, 0]), distance="embedding", embedding="e")
    assert sorted(pairs_of(res)) == sorted((f"i{i}", f"i{4 + best[i]}") for i in range(4))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3)).astype(np.float32)
    treated = np.r_[np.ones(15, int), np.zeros(25, int)]
    ti, ci, d, dense = matching.optimal_sets(X[:15], X[15:])
    ts, cs, ds, dense2 = matching.optimal_sets(X[:15], X[15:], k=2, dense_limit=0)
    assert dense == "dense" and dense2 == "sparse_knn"
    assert len(ti) == len(ts) == 15
    assert np.isclose(d.sum(), ds.sum(), rtol=1e-6)
    res = match("optimal", make_data(X, treated), distance="embedding", embedding="e")
    assert np.isclose(res.info["total_distance"], d.sum())


# ---------------------------------------------------------------- Mahalanobis


def test_mahalanobis_rows_give_the_pooled_within_group_distance():
    from ganmatch.matching.distance import mahalanobis_rows, pooled_within_cov

    rng = np.random.default_rng(1)
    Z = rng.normal(size=(300, 3)) @ np.array([[2, 0, 0], [1, 1, 0], [0, 0.5, 0.2]])
    t = (rng.random(300) < 0.4).astype(int)
    S = pooled_within_cov(Z, t)
    Zc = Z.copy()
    for g in (0, 1):
        Zc[t == g] -= Zc[t == g].mean(axis=0)
    assert np.allclose(S, np.cov(Zc, rowvar=False) * 299 / 298)      # MatchIt's pooled_cov: n - 2
    W = mahalanobis_rows(Z, S)
    dz = Z[0] - Z[1]
    assert np.isclose(np.linalg.norm(W[0] - W[1]), np.sqrt(dz @ np.linalg.inv(S) @ dz))


def test_mahalanobis_greedy_within_exact_strata():
    from ganmatch.matching.distance import distance_measure

    data, cov, treated = confounded(400, 3)
    res = match("greedy", data, distance="mahalanobis", covariates=["a", "b"], exact=["c"])
    c = cov["c"].to_numpy()
    pos = pd.Series(np.arange(len(data.ids)), index=data.ids)
    assert (c[pos[res.pairs.treated_id]] == c[pos[res.pairs.control_id]]).all()
    assert res.pairs["distance"].is_monotonic_increasing
    # without strata, on the transformed features, it is plain greedy
    plain = match("greedy", data, distance="mahalanobis", covariates=["a", "b"])
    Z = distance_measure(data, "mahalanobis", covariates=["a", "b"]).X.astype(np.float32)
    t, cc = np.flatnonzero(treated), np.flatnonzero(1 - treated)
    ref = dense_greedy(Z[t], Z[cc])
    assert pairs_of(plain) == [(data.ids[t[a]], data.ids[cc[b]]) for a, b in ref]


# ---------------------------------------------------------------- weights


def test_matched_weights():
    ids = np.array(["t1", "t2", "c1", "c2", "c3"])
    pairs = pd.DataFrame({"treated_id": ["t1", "t2"], "control_id": ["c1", "c2"], "weight": [1.0, 1.0]})
    assert matched_weights(ids, pairs).tolist() == [1, 1, 1, 1, 0]
    # 2:1 for t1, 1:1 for t2, c1 used by both (with replacement)
    pairs = pd.DataFrame({"treated_id": ["t1", "t1", "t2"], "control_id": ["c1", "c2", "c1"],
                          "weight": [0.5, 0.5, 1.0]})
    w = matched_weights(ids, pairs)
    assert w[:2].tolist() == [1, 1] and w[4] == 0
    assert np.isclose(w[2:4].sum(), 2) and np.isclose(w[2] / w[3], 3)
    with pytest.raises(InputDataError, match="not in the sample"):
        matched_weights(ids[:3], pairs)
