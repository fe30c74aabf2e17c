"""greedy_constrained with `semantics: reference`: hand-made answers for each of the reference study's rules
and quirks, and the heap version against the dense re-expression on random cases up to N = 3,000."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from ganmatch.analysis import distances
from ganmatch.errors import ConfigError
from ganmatch.matching import MatchData, match
from ganmatch.matching.reference_rules import dense_reference_pairs, reference_pairs, selectable

pytestmark = pytest.mark.heavy  # loads real models, trains, projects or renders (not in make test-fast)


def data_of(X, F, R, treated, ident, glasses):
    n = len(treated)
    return MatchData(ids=np.array([f"i{j}" for j in range(n)]), treated=np.asarray(treated),
                     embeddings={"gan": np.asarray(X, np.float32).reshape(n, -1),
                                 "facial": np.asarray(F, np.float32).reshape(n, -1),
                                 "vgg": np.asarray(R, np.float32).reshape(n, -1)},
                     identity=np.asarray(ident).astype(str),
                     covariates=pd.DataFrame({"eyeglasses": np.asarray(glasses)}))


def run(data, **kw):
    kw = {"threshold": 0.6, "reference_gap": (1e-2, 1e6), "n_pairs": 10, **kw}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return match("greedy_constrained", data, semantics="reference", **kw)


def pairs_of(res):
    return list(zip(res.pairs.treated_id, res.pairs.control_id, strict=True))


def rows(res):
    p = res.pairs
    return list(zip(p.treated_id, p.control_id, p.treated_ref, p.control_ref, p.penalised, strict=True))


# ---------------------------------------------------------------- rule 1: who is selectable


def test_selectable_rules_for_every_glasses_pattern():
    # identities: 0 one photo; 1 two photos no glasses; 2 two photos, one eligible; 3 three photos, one
    # eligible; 4 two photos, none eligible; 5 three photos, two eligible; 6 two photos, one constant row
    codes = np.array([0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 5, 5, 6, 6])
    glasses = np.array([0, 0, 0, 1, 0, 1, 0, 1, 1, 1, 1, 0, 0, 0, 0])
    constant = np.zeros(len(codes), bool)
    constant[14] = True
    got = selectable(codes, glasses == 0, constant)
    want = [0, 1, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0]
    assert got.astype(int).tolist() == want


def test_constant_rows_are_dropped():
    # in the reference embedding i0 sits at the centre of the six others (unit axis points): its row of
    # distances is constant, which drops it, and its identity A is left with one live photo: i1 goes too
    R = np.array([[0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float32)
    X = np.array([0.0, 0.1, 0.5, 0.6, 2.0, 2.5, 9.0])
    ident = ["A", "A", "B", "B", "C", "C", "D"]
    treated = [1, 1, 0, 0, 1, 1, 0]
    data = data_of(X, np.zeros(7), R, treated, ident, np.zeros(7, int))
    res = run(data, reference_gap=(0.0, 1e6), constraint_embedding=None)
    assert res.info["n_constant_rows"] == 1
    assert res.info["n_selectable_treated"] == 2 and res.info["n_selectable_control"] == 2
    # i1-i2 (0.4) would be first; of the selectable, i3-i4 (1.4); references i2 and i5, gap 0, allowed here
    assert rows(res) == [("i4", "i3", "i5", "i2", False)]


# ---------------------------------------------------------------- rules 2-4 on one hand-made case


def quirk_case():
    """Treated A(i0,i1), D(i6,i7); controls B(i2,i3), E(i4,i5), G(i8, i9: glasses, the only eligible is
    i8)."""
    ident = ["A", "A", "B", "B", "E", "E", "D", "D", "G", "G"]
    treated = [1, 1, 0, 0, 0, 0, 1, 1, 0, 0]
    X = [0.0, 50.0, 0.1, 60.0, 0.3, 70.0, 10.0, 80.0, 0.05, 0.02]
    F = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 5.0, 5.0, 0.0, 0.0]
    # reference distances: |R(i0)-R(i1)| = 1.0; |R(i2)-R(i3)| = 1.0 -> gap 0 < 1e-2: A-B is skipped
    R = [0.0, 1.0, 0.0, 1.0, 0.0, 3.0, 0.0, 2.0, 0.0, 0.5]
    glasses = [0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    return data_of(X, F, R, treated, ident, glasses)


def test_reference_quirks_known_answer():
    data = quirk_case()
    res = run(data, n_pairs=10)
    # i8 is G's only eligible photo: not selectable; i9 is (its glasses do not matter for being matched);
    # i9-i0 (0.02) first: references among all other photos, i8 and i1, gap |0.5 - 1| = 0.5 -> match G-A.
    assert rows(res)[0] == ("i0", "i9", "i1", "i8", False)
    # then only D is left among the treated, and every D pair violates the facial threshold: i6-i4 is the
    # closest (9.7 + 1e6), with references i7 and i5 (gap |2 - 3| = 1)
    assert rows(res)[1] == ("i6", "i4", "i7", "i5", True)
    assert res.info["iterations"] == 2 and res.info["n_skipped"] == 0


def test_skipped_pair_uses_up_an_iteration_and_is_demoted_not_forbidden():
    data = quirk_case()
    X = data.embeddings["gan"].copy()
    X[9] = 100.0                      # G's i9 no longer the closest
    data.embeddings["gan"] = X
    res = run(data, n_pairs=1)        # one iteration: A-B (0.1) is picked, skipped (gap 0): no pair
    assert len(res.pairs) == 0 and res.info["skipped"] == [("i0", "i2", 0.0)] and res.info["iterations"] == 1
    res = run(data, n_pairs=10)
    # 2nd iteration: i0-i4 (0.3, gap |1-3| = 2) matches; then D (penalised, 1e6 + d) is dearer than the
    # demoted A-B (1e5), but A is gone, so D-B matches with its penalty
    assert [r[:2] for r in rows(res)] == [("i0", "i4"), ("i6", "i2")]
    assert res.info["iterations"] == 3
    # a demoted pair whose identities are alive comes back before any penalised pair: with a lower skip
    # cost it is re-picked at once, and the loop (whose state no longer changes) ends
    res = run(data, n_pairs=10, skip_cost=0.2)
    assert len(res.pairs) == 0 and res.info["iterations"] == 10 and res.info["n_skipped"] == 1


def test_corrected_semantics_differs_where_documented():
    data = quirk_case()
    X = data.embeddings["gan"].copy()
    X[9] = 100.0
    data.embeddings["gan"] = X
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = match("greedy_constrained", data, semantics="corrected", threshold=0.6, n_pairs=1,
                    reference_gap=(1e-2, 1e6))
    # corrected: A-B has no admissible references and is passed over without using up the budget
    assert pairs_of(res) == [("i0", "i4")] and res.info["semantics"] == "corrected"
    assert len(run(data, n_pairs=1).pairs) == 0


def test_reference_settings_that_do_not_exist_there_are_refused():
    data = quirk_case()
    for kw in ({"mode": "hard"}, {"max_cost": 1.0}, {"min_photos": 3}, {"reference_embedding": None}):
        with pytest.raises(ConfigError, match="semantics 'reference'"):
            run(data, **kw)
    with pytest.raises(ConfigError, match="semantics must be"):
        match("greedy_constrained", data, semantics="paper")
    with pytest.raises(ConfigError, match="threshold 600.0 is outside the scale"):
        run(data, threshold=600.0)


# ---------------------------------------------------------------- heap == dense on random cases


def random_case(seed: int, n_id: int, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 6, n_id)
    codes = np.repeat(np.arange(n_id), sizes)
    n = len(codes)
    centre = rng.normal(size=(n_id, 6))
    X = ((centre[codes] + 0.6 * rng.normal(size=(n, 6))) * scale).astype(np.float32)
    X[7] = X[3]                                        # exact ties
    F = (centre[codes, :3] + 0.3 * rng.normal(size=(n, 3))).astype(np.float32)
    R = np.round(rng.normal(size=(n, 2)), 1).astype(np.float32)   # coarse: many gaps of exactly 0
    treated = (rng.random(n) < 0.45).astype(np.int64)
    glasses = (rng.random(n) < 0.3).astype(int)
    thr = float(np.quantile(distances.pairwise(F[treated == 1], F[treated == 0], force=True), 0.004))
    return X, F, R, treated, codes, glasses, thr


CASES = [  # (seed, identities, n_pairs, extra settings)
    (0, 120, 80, {}),
    (1, 200, 120, {"skip_cost": 1e7}),            # demoted below the penalised pairs
    (2, 150, 100, {"penalty": 0.8}),              # penalised pairs compete with plain ones
    (3, 150, 100, {"constraint": False}),
    (4, 100, 60, {"scale": 1e-7, "skip_cost": 1e7}),   # tiny distances: D + 1e6 merges costs (float64 ties)
    (5, 1000, 150, {"k": 3}),                     # N ~ 3,000, short lists: refills
]


@pytest.mark.parametrize("seed,n_id,n_pairs,extra", CASES)
def test_heap_equals_dense_reference(seed, n_id, n_pairs, extra):
    extra = dict(extra)
    X, F, R, treated, codes, glasses, thr = random_case(seed, n_id, extra.pop("scale", 1.0))
    if not extra.pop("constraint", True):
        F = None
    k = extra.pop("k", 4)
    kw = {"threshold": thr, "gap": (1e-2, 1e6), "n_pairs": n_pairs, **extra}
    got = reference_pairs(X, F, R, treated, codes, glasses == 0, k=k, **kw)
    want = dense_reference_pairs(X, F, R, treated, codes, glasses == 0, **kw)
    assert got.pairs == want.pairs
    assert got.skipped == want.skipped
    assert got.iterations == want.iterations and got.n_selectable == want.n_selectable
    assert len(got.pairs) > 5 and got.skipped
    if seed == 0:
        # the non-penalised pairs ran out and a demoted pair came back: the rest of the budget is spent on it
        assert got.iterations == n_pairs and len(got.pairs) + len(got.skipped) < n_pairs
    if extra.get("skip_cost") == 1e7 or "penalty" in extra:
        assert any(p.penalised for p in got.pairs)


def test_match_entry_point_runs_the_heap_rules():
    X, F, R, treated, codes, glasses, thr = random_case(6, 80)
    data = data_of(X, F, R, treated, codes, glasses)
    res = run(data, threshold=thr, n_pairs=40, k=5)
    want = dense_reference_pairs(X, F, R, treated, codes, glasses == 0, threshold=thr, n_pairs=40)
    ids = data.ids
    assert rows(res) == [
        (ids[p.treated], ids[p.control], ids[p.treated_ref], ids[p.control_ref], bool(p.penalised))
        for p in want.pairs
    ]
    assert np.allclose(res.pairs["distance"], [p.distance for p in want.pairs])
    assert res.info["semantics"] == "reference" and res.info["iterations"] == want.iterations


def test_config_refuses_reference_settings_at_start_up():
    import yaml
    from helpers import ROOT

    from ganmatch.settings.config import load_schema, validate_config

    schema = load_schema(ROOT / "config/schema.yaml")
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    spec = {"method": "greedy_constrained", "embedding": "gan", "constraint_embedding": None,
            "reference_embedding": "pixel", "semantics": "reference"}
    config["matching"]["methods"]["paper"] = dict(spec)
    validate_config(config, schema)
    config["matching"]["methods"]["paper"] = {**spec, "mode": "hard"}
    with pytest.raises(ConfigError, match=r"matching.methods.paper.mode"):
        validate_config(config, schema)
    config["matching"]["methods"]["paper"] = {**spec, "semantics": "paper"}
    with pytest.raises(ConfigError, match=r"semantics"):
        validate_config(config, schema)
    config["matching"]["methods"]["paper"] = {**spec, "mode": "hard", "semantics": "corrected"}
    validate_config(config, schema)


def test_missing_reference_distances_or_identities_are_named():
    from ganmatch.errors import InputDataError
    from ganmatch.stages.matching import check_constrained_inputs

    ids = np.array(["a", "b", "c"])
    emb = {"gan": (ids, np.zeros((3, 2))), "vgg": (ids[:2], np.zeros((2, 2)))}
    spec = {"method": "greedy_constrained", "embedding": "gan", "reference_embedding": "vgg"}
    index = pd.DataFrame({"image_id": ids, "identity": ["p", "p", "q"]})
    with pytest.raises(InputDataError, match=r"matching.methods.paper.reference_embedding.*1 image"):
        check_constrained_inputs("paper", spec, index, emb, ids)
    with pytest.raises(InputDataError, match="no 'identity' column"):
        check_constrained_inputs("paper", spec, index.drop(columns="identity"), emb, ids)
    emb["vgg"] = (ids, np.zeros((3, 2)))
    check_constrained_inputs("paper", spec, index, emb, ids)


# ---------------------------------------------------------------- the reference study's propensity matching


def test_propensity_reference_setting_matches_the_reference_loop():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    n = 600
    Z = rng.normal(size=(n, 8)).astype(np.float32)
    treated = (rng.random(n) < 1 / (1 + np.exp(-(Z[:, 0] * 1.5 - 0.6)))).astype(int)
    # the treated group is the smaller one, as men in CelebA-HQ
    assert treated.sum() < n - treated.sum()
    data = MatchData(ids=np.array([f"i{j}" for j in range(n)]), treated=treated, embeddings={"gan_mean": Z})
    res = match("nearest", data, distance="propensity", embedding="gan_mean", standardize=False, max_iter=100,
                penalty="l2", C=1.0, link="logit", caliper=0.1, std_caliper=False, m_order="reference",
                random_state=42)
    # the reference: sklearn defaults on the raw features, the smaller group in np.random.seed(42) order,
    # each taking the first remaining control (index order) with the smallest |p difference| if within 0.1
    p = LogisticRegression(random_state=42).fit(Z, treated).predict_proba(Z)[:, 1]
    t_pos, c_pos = np.flatnonzero(treated == 1), list(np.flatnonzero(treated == 0))
    np.random.seed(42)
    want = []
    for i in np.random.permutation(len(t_pos)):
        d = np.abs(p[t_pos[i]] - p[c_pos])
        if d.min() <= 0.1:
            j = int(np.argmin(d))
            want.append((f"i{t_pos[i]}", f"i{c_pos.pop(j)}"))
    assert pairs_of(res) == want and 0 < len(want) < treated.sum()
    assert res.info["link"] == "logit"
    scores = res.units.set_index("image_id")["propensity"]
    assert np.allclose(scores.to_numpy(), p)


def test_references_come_from_all_photos_glasses_included():
    # A: a0, a1 (treated); H: h0, h1 (glasses), h2 (controls). h0-a0 is the closest pair; the closest
    # reference gap is with h1 (|1.5 - 1| = 0.5 against |3 - 1| = 2 for h2): the reference takes h1 despite
    # its glasses, the corrected reading only the glasses-free h2
    ident = ["A", "A", "H", "H", "H"]
    data = data_of([0.0, 50.0, 0.1, 60.0, 70.0], [0.0, 0.0, 0.1, 0.1, 5.0], [0.0, 1.0, 0.0, 1.5, 3.0],
                   [1, 1, 0, 0, 0], ident, [0, 0, 0, 1, 0])
    assert rows(run(data, n_pairs=1)) == [("i0", "i2", "i1", "i3", False)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = match("greedy_constrained", data, semantics="corrected", threshold=0.6, n_pairs=1,
                    reference_gap=(1e-2, 1e6))
    assert rows(res) == [("i0", "i2", "i1", "i4", False)]


def test_ties_go_row_major_over_controls_then_treated():
    # (i4, i2) and (i6, i0) both cost 1: the reference's argmin runs over the controls first (i4 < i6),
    # the corrected reading over the treated first (i0 < i2)
    ident = ["A", "A", "B", "B", "C", "C", "D", "D"]
    X = [0.0, 100.0, 10.0, 200.0, 11.0, 300.0, -1.0, 400.0]
    F = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    R = [0.0, 1.0, 0.0, 2.0, 0.0, 3.0, 0.0, 5.0]
    data = data_of(X, F, R, [1, 1, 1, 1, 0, 0, 0, 0], ident, np.zeros(8, int))
    assert pairs_of(run(data, n_pairs=2)) == [("i2", "i4"), ("i0", "i6")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = match("greedy_constrained", data, semantics="corrected", threshold=0.6, n_pairs=2,
                    reference_gap=(1e-2, 1e6))
    assert pairs_of(res) == [("i0", "i6"), ("i2", "i4")]
