"""Every figure rendered with long names and few or many methods: no text overlaps another, no legend covers
data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ganmatch.analysis.balance import group_means
from ganmatch.report import figures
from ganmatch.report.plots import legends_covering_data, text_overlaps

# a collapsed layout is a failure
pytestmark = [pytest.mark.heavy, pytest.mark.filterwarnings("error:constrained_layout not applied")]

LONG = "a_rather_long_descriptive_attribute_name"


def _names(n: int, stem: str) -> list[str]:
    return [f"{stem}_{i}" if i % 2 else f"{stem}_{LONG}_{i}" for i in range(n)]


def _assert_clean(found):
    assert found["overlaps"] == [], "\n".join(f"{a!r} overlaps {b!r}" for a, b in found["overlaps"])
    assert found["covered"] == [], f"a legend covers the data of {found['covered']}"


@pytest.fixture
def checked(monkeypatch, tmp_path):
    """Run a figure function; return the layout problems of the figure it was about to save."""
    found = {}
    real = figures.save_figure

    def inspect(fig, pdf, png=None, **kw):
        found["overlaps"] = text_overlaps(fig)
        found["covered"] = legends_covering_data(fig)
        found["fig"] = fig
        real(fig, pdf, png, **kw)

    monkeypatch.setattr(figures, "save_figure", inspect)

    def run(fn, *args, name="fig", **kwargs):
        fn(*args, str(tmp_path / f"{name}.pdf"), str(tmp_path / f"{name}.png"), **kwargs)
        return found

    return run


def _sample(n_cov: int, n_methods: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = 200
    t = (rng.random(n) < 0.4).astype(int)
    covs = _names(n_cov, "cov")
    X = pd.DataFrame({c: (rng.random(n) < (0.97 if i == 0 else 0.3 + 0.3 * t)).astype(float)
                      for i, c in enumerate(covs)})
    ids = np.array([f"img{i:03d}" for i in range(n)])
    methods = _names(n_methods, "method")
    return rng, t, X, ids, methods


@pytest.mark.parametrize(("n_cov", "n_methods"), [(2, 1), (6, 2), (8, 7)])
def test_covariate_means_layout(checked, n_cov, n_methods):
    rng, t, X, ids, methods = _sample(n_cov, n_methods)
    means = pd.concat([group_means(X, t, (rng.random(len(t)) < 0.5).astype(float)).assign(method=m)
                       for m in methods], ignore_index=True)
    found = checked(figures.covariate_means, means, treatment="a_long_treatment_name")
    _assert_clean(found)


@pytest.mark.parametrize(("n_cov", "n_methods"), [(2, 1), (8, 7)])
def test_love_plot_layout(checked, n_cov, n_methods):
    from ganmatch.analysis.balance import balance_table

    rng, t, X, ids, methods = _sample(n_cov, n_methods)
    summary = pd.concat([balance_table(X, t, (rng.random(len(t)) < 0.5).astype(float)).assign(method=m)
                         for m in methods], ignore_index=True)
    found = checked(figures.love_plot, summary)
    _assert_clean(found)


@pytest.mark.parametrize("n_methods", [1, 7])
def test_propensity_overlap_layout(checked, n_methods):
    rng, t, X, ids, methods = _sample(3, n_methods)
    treated = pd.Series(t, index=ids)
    tid, cid = ids[t == 1], ids[t == 0]
    k = min(len(tid), len(cid))
    matches = {m: pd.DataFrame({"treated_id": tid[:k], "control_id": rng.permutation(cid)[:k],
                                "distance": 1.0,
                                "weight": 1.0}) for m in methods}
    found = checked(figures.propensity_overlap, X.assign(image_id=ids), treated, list(X.columns), matches,
                    treatment="a_long_treatment_name")
    _assert_clean(found)


def _neighbour_table(ids, rng, scale):
    rows = []
    for i, q in enumerate(ids):
        partner = ids[i + 1] if i % 2 == 0 else ids[i - 1]
        for rank, (nb, d) in enumerate([(partner, 0.3 * scale)] + [(o, scale * (1 + rng.random())) for o in
                                                                   rng.choice(ids, 3, replace=False)], 1):
            rows.append({"query": q, "neighbour": nb, "distance": d, "rank": rank, "scope": "all"})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("n_emb", [1, 2, 5])
def test_distance_distributions_layout(checked, n_emb):
    rng, t, X, ids, _ = _sample(2, 1)
    identity = pd.Series([f"id{i // 2}" for i in range(len(ids))], index=ids)
    names = _names(n_emb, "embedding")
    nb = {e: _neighbour_table(ids, rng, 1.0 + i) for i, e in enumerate(names)}
    found = checked(figures.distance_distributions, nb, identity, thresholds={names[0]: 0.6})
    _assert_clean(found)


@pytest.mark.parametrize(("n_emb", "n_cov"), [(1, 2), (3, 4), (6, 8)])
def test_neighbour_quality_layout(checked, n_emb, n_cov):
    rng = np.random.default_rng(0)
    names = _names(n_emb, "embedding")
    rows = []
    for scope in ("all", "cross"):
        for e in names:
            row = {"embedding": e, "scope": scope}
            row.update({f"err_top{k}": rng.uniform(0.3, 1.0) for k in (1, 5, 10)})
            row.update({f"diff_{c}": rng.uniform(0.5, 1.0) for c in _names(n_cov, "cov")})
            rows.append(row)
    found = checked(figures.neighbour_quality, pd.DataFrame(rows))
    _assert_clean(found)


@pytest.mark.parametrize("n_methods", [1, 7])
def test_outcomes_forest_layout(checked, n_methods):
    methods = ["naive", *_names(n_methods, "method")]
    rows = []
    for outcome in ("outcome", f"outcome_{LONG}"):
        for i, m in enumerate(methods):
            rows.append({"outcome": outcome, "kind": "numeric", "method": m, "estimate": 1.0 + 0.1 * i,
                         "ci_low": 0.5, "ci_high": 1.9, "n_pairs": 40, "n_treated": 40, "n_control": 60,
                         "truth": 1.0, "status": "ok" if i % 3 else "too few pairs (n < 10)"})
    found = checked(figures.outcomes_forest, pd.DataFrame(rows))
    _assert_clean(found)


def test_matched_pairs_layout(checked, tmp_path):
    from ganmatch.data.io import write_png

    ids = [f"img{i}" for i in range(12)]
    images = {}
    for i in ids:
        images[i] = str(tmp_path / f"{i}.png")
        write_png(np.zeros((16, 16, 3), np.uint8), images[i])
    matches = pd.concat([pd.DataFrame({"treated_id": ids[:6], "control_id": ids[6:],
                                       "distance": np.arange(6.0),
                                       "method": m}) for m in _names(3, "method")], ignore_index=True)
    found = checked(figures.matched_pairs, matches, images, n_pairs=4, treatment="a_long_treatment_name")
    _assert_clean(found)


def test_projection_quality_layout(checked):
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"image_id": [f"image_{LONG}_{k}" for k in range(20)], "status": "ok",
                          "loss": rng.random(20) * 0.05, "psnr": 25 + 20 * rng.random(20)})
    ids = list(table["image_id"][:6])
    originals = rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
    found = checked(figures.projection_quality, table, ids, originals, originals)
    _assert_clean(found)


def test_the_checks_find_overlaps_and_covered_data():
    """The checkers themselves: two titles on one spot overlap; a legend on top of bars covers them."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.bar([0, 1], [1, 1], width=1.0, label="bars")
    ax.set_xlim(-0.5, 1.5)
    ax.legend(loc="center")
    ax.set_title("a title")
    fig.text(0.5, 0.89, "a text on the title", ha="center")
    assert legends_covering_data(fig) != []
    assert any("a title" in pair for pair in text_overlaps(fig))
    plt.close(fig)


def test_matched_pairs_layout_with_weighted_and_reference_methods(checked, tmp_path):
    """Full matching's subclass/weight lines and count headers, a method with reference photos beside ones
    without."""
    from ganmatch.data.io import write_png

    ids = [f"img{i}" for i in range(12)]
    images = {}
    for i in ids:
        images[i] = str(tmp_path / f"{i}.png")
        write_png(np.zeros((16, 16, 3), np.uint8), images[i])
    plain = pd.DataFrame({"treated_id": ids[:6], "control_id": ids[6:], "distance": np.arange(6.0),
                          "method": f"method_{LONG}"})
    refs = plain.assign(method="constrained", treated_ref=ids[6:], control_ref=ids[:6])
    full = pd.DataFrame({"treated_id": ["img0"] * 3 + ["img1"] * 3, "control_id": ids[6:], "distance": 0.0,
                         "weight": [0.3333] * 3 + [1.0] * 3, "subclass": [1] * 3 + [12] * 3,
                         "treated_logit": [-1.0] * 3 + [0.5] * 3, "control_logit": np.linspace(-1, 0.6, 6),
                         "method": "propensity_full"})
    found = checked(figures.matched_pairs, pd.concat([plain, refs, full], ignore_index=True), images,
                    n_pairs=4,
                    treatment="a_long_treatment_name")
    _assert_clean(found)


@pytest.mark.parametrize("n_methods", [1, 7])
def test_outcomes_forest_layout_with_subclass_counts(checked, n_methods):
    methods = ["naive", *_names(n_methods, "method")]
    units = {m: pd.DataFrame({"image_id": [f"u{i}" for i in range(400)], "treated": [1] * 104 + [0] * 296,
                              "weight": np.r_[np.ones(104), np.full(296, 0.5)],
                              "subclass": np.arange(400) % 19})
             for m in methods[1:]}
    rows = [{"outcome": outcome, "kind": "numeric", "method": m, "estimate": 1.0 + 0.1 * i, "ci_low": 0.5,
             "ci_high": 1.9, "n_pairs": 104, "n_treated": 104, "n_control": 296, "truth": 1.0,
             "status": "ok" if i % 3 else "too few pairs (n < 10)"}
            for outcome in ("outcome", f"outcome_{LONG}") for i, m in enumerate(methods)]
    found = checked(figures.outcomes_forest, pd.DataFrame(rows), units=units)
    _assert_clean(found)
