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
    row = table[
        (table.covariate == "young") & (table.group == "control") & (table["sample"] == "unmatched")
    ].iloc[0]
    assert row.reference == 0.88 and np.isclose(row.difference, 0.8 - 0.88)
    row = table[
        (table.covariate == "makeup") & (table.group == "treated") & (table["sample"] == "matched")
    ].iloc[0]
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
        pd.DataFrame(
            {
                "embedding": ["gan", "gan + face constraint"],
                "scope": "all",
                "err_top1": [0.7, 0.3],
                "err_top5": [0.6, 0.2],
                "err_top10": [0.5, 0.1],
            }
        ),
        reported["neighbour_quality"],
    )
    assert list(nn["source"]) == ["this run"] * 2 + ["paper"] * 4
    assert "gan + facial constraint" in set(nn["embedding"])
    out = paper_comparison.paper_comparison(table, nn, str(tmp_path / "f.pdf"), str(tmp_path / "f.png"))
    assert (tmp_path / "f.png").stat().st_size > 10_000 and len(out) == len(table)


def _figure(monkeypatch):
    found = {}
    real = paper_comparison.save_figure

    def keep(fig, pdf, png=None, **kw):
        fig.canvas.draw()
        found["fig"] = fig
        real(fig, pdf, png, **kw)

    monkeypatch.setattr(paper_comparison, "save_figure", keep)
    return found


def _nn():
    reported = paper_comparison.load_reference(str(ROOT / "resources/paper/reported.json"))
    run = pd.DataFrame(
        {
            "embedding": ["gan", "gan + face constraint"],
            "scope": "all",
            "err_top1": [0.2, 0.01],
            "err_top5": [0.06, 0.0],
            "err_top10": [0.02, 0.0],
            "diff_young": [0.0, 0.01],
        }
    )
    return reported, paper_comparison.neighbour_comparison(run, reported["neighbour_quality"])


def test_demo_retrieval_errors_are_not_drawn_on_the_papers_axis(tmp_path, monkeypatch):
    """Demo identities are latent clusters, the paper's are people in CelebA-HQ: separate axes, each titled
    with its data, and the demo's says it is not comparable; a CelebA-HQ run's does not."""
    reported, nn = _nn()
    table = paper_comparison.means_comparison(toy_means(), reported, "gan_constrained")
    assert paper_comparison.run_data("demo")[1] is False and paper_comparison.run_data("photos")[1] is False
    assert paper_comparison.run_data("celeba_hq")[1] is True
    seen = _figure(monkeypatch)
    label, comparable = paper_comparison.run_data("demo")
    paper_comparison.paper_comparison(
        table, nn, str(tmp_path / "f.pdf"), str(tmp_path / "f.png"), run_label=label, comparable=comparable
    )
    bar_axes = [
        ax
        for ax in seen["fig"].axes
        if ax.get_yticklabels() and any(getattr(p, "get_hatch", None) for p in ax.patches) and ax.patches
    ]
    rows = {ax.get_title(): [t.get_text() for t in ax.get_yticklabels()] for ax in bar_axes}
    assert len(rows) == 2
    run_title = next(t for t in rows if t.startswith("This run"))
    paper_title = next(t for t in rows if t.startswith("The paper"))
    assert rows[run_title] == ["gan", "gan + face constraint"]
    assert rows[paper_title] == list(nn.loc[nn["source"] == "paper", "embedding"])
    assert "not comparable" in " ".join(run_title.split()) and "simulated people" in " ".join(
        run_title.split()
    )
    assert "CelebA-HQ" in paper_title
    paper_comparison.paper_comparison(
        table,
        nn,
        str(tmp_path / "g.pdf"),
        str(tmp_path / "g.png"),
        run_label="CelebA-HQ, the paper's data",
        comparable=True,
    )
    titles = " ".join(ax.get_title() for ax in seen["fig"].axes)
    assert "not comparable" not in titles


def test_neighbour_table_says_it_measures_all_images(tmp_path):
    """The CSV's rows, the run's and the paper's, all carry scope 'all' (the paper's table, gender mismatch
    included), as the neighbour_quality figure's identity and "among all images" panels."""
    _, nn = _nn()
    assert list(nn.columns[:3]) == ["source", "embedding", "scope"] and (nn["scope"] == "all").all()


def test_method_with_too_few_pairs_is_marked_as_in_the_love_plot(tmp_path, monkeypatch):
    reported, nn = _nn()
    table = paper_comparison.means_comparison(toy_means(), reported, "gan_constrained")
    seen = _figure(monkeypatch)
    paper_comparison.paper_comparison(
        table, nn, str(tmp_path / "f.pdf"), str(tmp_path / "f.png"), flag="too few pairs (4 < 10)"
    )
    means_ax = next(ax for ax in seen["fig"].axes if ax.get_title().startswith("Group means"))
    assert "too few pairs (4 < 10): not judged" in means_ax.get_title()
    after = [line for line in means_ax.lines if line.get_marker() == "s"]
    assert len(after) == 2 and all(
        line.get_markerfacecolor() in ("white", "w", (1.0, 1.0, 1.0, 1.0)) for line in after
    )
    legend = " ".join(t.get_text() for t in means_ax.get_legend().get_texts())
    assert "[too few pairs (4 < 10): not judged]" in legend
