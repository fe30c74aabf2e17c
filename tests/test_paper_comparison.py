"""The paper_comparison figure's numbers: means beside the reference, and nearest neighbours under the paper's
matching cost (GAN distance + face penalty) against a dense computation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers import ROOT

from ganmatch.analysis import distances
from ganmatch.errors import InputDataError
from ganmatch.report import paper_comparison


def toy_means():
    rows = []
    for method in ("gan_constrained", "propensity"):
        for sample in ("unmatched", "matched"):
            for group in ("control", "treated"):
                for cov, m in (("young", 0.8 if group == "control" else 0.6), ("makeup", 0.5)):
                    rows.append({"covariate": cov, "group": group, "sample": sample, "mean": m, "se": 0.01,
                                 "ci_low": m - 0.02, "ci_high": m + 0.02, "n": 50, "method": method})
    return pd.DataFrame(rows)


def test_means_sit_beside_the_reported_numbers():
    reported = paper_comparison.load_reference(str(ROOT / "resources/paper/reported.json"))
    assert "arXiv:2103.13455" in reported["source"]
    assert reported["group_means"]["unmatched"]["makeup"] == [0.72, 0.00]
    assert reported["greedy_constrained"] == {"pairs": 1200, "within_threshold": 301,
                                              "distance_range_without_threshold": [97, 119]}
    table = paper_comparison.means_comparison(toy_means(), reported, "gan_constrained")
    row = table[(table.covariate == "young") & (table.group == "control") & (table["sample"] == "unmatched")].iloc[0]
    assert row.reference == 0.88 and np.isclose(row.difference, 0.8 - 0.88)
    row = table[(table.covariate == "makeup") & (table.group == "treated") & (table["sample"] == "matched")].iloc[0]
    assert row.reference == 0.03
    assert list(table.columns) == paper_comparison.MEANS_COLUMNS and len(table) == 8
    with pytest.raises(InputDataError, match="paper_comparison.method"):
        paper_comparison.means_comparison(toy_means(), reported, "nope")


def test_demo_truth_is_a_reference(tmp_path):
    from ganmatch.simulate import demo

    path = tmp_path / "truth.json"
    path.write_text(json.dumps({"outcome": 1.0, "covariate_means": demo.planted_group_means()}))
    ref = paper_comparison.load_reference(str(path))
    before = ref["group_means"]["unmatched"]
    assert before["makeup"][0] > before["makeup"][1] and before["eyeglasses"][0] < before["eyeglasses"][1]
    assert ref["group_means"]["matched"]["young"][0] == ref["group_means"]["matched"]["young"][1]


def test_constrained_neighbours_equal_the_dense_cost_order():
    rng = np.random.default_rng(0)
    n, k = 120, 6
    ident = np.repeat(np.arange(40), 3)
    X = rng.normal(size=(n, 5)).astype(np.float32)
    F = (rng.normal(size=(40, 4))[ident] + 0.15 * rng.normal(size=(n, 4))).astype(np.float32)
    thr = 0.4
    ids = np.array([f"i{j}" for j in range(n)])
    got = paper_comparison.constrained_neighbours(ids, X, F, thr, k)
    D = distances.pairwise(X, X).astype(np.float64)
    cost = D + 1e6 * (distances.pairwise(F, F) > thr)
    np.fill_diagonal(cost, np.inf)
    want = np.lexsort((np.broadcast_to(np.arange(n), cost.shape), cost), axis=1)[:, :k]
    assert got["neighbour"].to_numpy().reshape(n, k).tolist() == ids[want].tolist()
    assert (got["rank"].to_numpy().reshape(n, k) == np.arange(1, k + 1)).all()
    assert np.allclose(got["distance"].to_numpy().reshape(n, k), np.take_along_axis(D, want, 1))


def test_figure_is_drawn(tmp_path):
    reported = paper_comparison.load_reference(str(ROOT / "resources/paper/reported.json"))
    table = paper_comparison.means_comparison(toy_means(), reported, "gan_constrained")
    nn = paper_comparison.neighbour_comparison(
        pd.DataFrame({"embedding": ["gan", "gan + face constraint"], "scope": "all", "err_top1": [0.7, 0.3],
                      "err_top5": [0.6, 0.2], "err_top10": [0.5, 0.1]}), reported["neighbour_quality"])
    assert list(nn["source"]) == ["this run"] * 2 + ["paper"] * 4
    assert "gan + facial constraint" in set(nn["embedding"])
    out = paper_comparison.paper_comparison(table, nn, str(tmp_path / "f.pdf"), str(tmp_path / "f.png"))
    assert (tmp_path / "f.png").stat().st_size > 10_000 and len(out) == len(table)
