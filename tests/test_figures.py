"""Figure functions on small synthetic tables: files written, and the numbers drawn are the numbers given."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ganmatch.analysis.balance import balance_table, group_means
from ganmatch.errors import InputDataError
from ganmatch.matching import matched_weights, propensity_scores
from ganmatch.report import figures
from ganmatch.report.plots import method_styles

COVS = ["young", "smiling", "eyeglasses"]


def _written(tmp_path, name):
    pdf, png = tmp_path / f"{name}.pdf", tmp_path / f"{name}.png"
    return str(pdf), str(png)


def _check_files(pdf, png):
    from PIL import Image

    with open(pdf, "rb") as fh:
        assert fh.read(5) == b"%PDF-"
    with Image.open(png) as im:
        assert im.size[0] > 200 and im.size[1] > 100


@pytest.fixture(scope="module")
def sample():
    """60 images, 3 binary covariates confounded with the treatment, 2 photos per identity, 2 methods."""
    rng = np.random.default_rng(0)
    n = 60
    treated = (rng.random(n) < 0.4).astype(int)
    X = pd.DataFrame({c: (rng.random(n) < 0.3 + 0.3 * treated * (i % 2)).astype(float) for i,
                      c in enumerate(COVS)})
    ids = np.array([f"img{i:03d}" for i in range(n)])
    identity = pd.Series([f"id{i // 2:02d}" for i in range(n)], index=ids)
    t_ids, c_ids = ids[treated == 1], ids[treated == 0]
    k = min(len(t_ids), len(c_ids))
    matches = {
        "gan_greedy": pd.DataFrame({"treated_id": t_ids[:k], "control_id": c_ids[:k],
                                    "distance": np.linspace(0.5, 2, k),
                                    "weight": 1.0, "method": "gan_greedy", "embedding": "gan"}),
        "pixel_optimal": pd.DataFrame({"treated_id": t_ids[: k - 3], "control_id": c_ids[3:k],
                                       "distance": np.linspace(1, 3, k - 3), "weight": 1.0,
                                       "method": "pixel_optimal",
                                       "embedding": "pixel"}),
    }
    return {"ids": ids, "treated": treated, "X": X, "identity": identity, "matches": matches}


def _summary(sample):
    frames, means = [], []
    for name, pairs in sample["matches"].items():
        w = matched_weights(sample["ids"], pairs)
        frames.append(balance_table(sample["X"], sample["treated"], w).assign(method=name))
        means.append(group_means(sample["X"], sample["treated"], w).assign(method=name))
    return pd.concat(frames, ignore_index=True), pd.concat(means, ignore_index=True)


def test_method_styles_are_consistent_whatever_the_order():
    a = method_styles(["b", "a", "naive"])
    b = method_styles(["naive", "a", "b", "a"])
    assert a == b and a["a"]["color"] != a["b"]["color"]
    assert a["naive"]["color"] == figures.BEFORE_COLOUR
    many = method_styles([f"m{i}" for i in range(12)])  # more methods than colours still works
    assert len(many) == 13


def test_covariate_means_draws_group_means(tmp_path, sample):
    _, means = _summary(sample)
    pdf, png = _written(tmp_path, "cm")
    data = figures.covariate_means(means, pdf, png, treatment="male")
    _check_files(pdf, png)
    pd.testing.assert_frame_equal(data, means.reset_index(drop=True))


def test_covariate_means_plots_every_point(tmp_path, sample, monkeypatch):
    """Groups named "control"/"treated" (as balance.group_means writes them) are drawn, not dropped."""
    _, means = _summary(sample)
    drawn = []
    real = figures.plt.Axes.errorbar

    def spy(self, x, y, *args, **kwargs):
        drawn.append(np.asarray(y, float))
        return real(self, x, y, *args, **kwargs)

    monkeypatch.setattr(figures.plt.Axes, "errorbar", spy)
    figures.covariate_means(means, *_written(tmp_path, "cm2"), treatment="male")
    ys = np.concatenate(drawn)
    assert len(ys) == len(means) and np.isfinite(ys).all()
    assert np.allclose(np.sort(ys), np.sort(means["mean"].to_numpy()))


def test_love_plot_data_agree_with_balance_table(tmp_path, sample):
    summary, _ = _summary(sample)
    pdf, png = _written(tmp_path, "love")
    data = figures.love_plot(summary, pdf, png)
    _check_files(pdf, png)
    smd = summary[summary["stat"] == "smd"]
    assert len(data) == len(smd)
    merged = data.merge(smd, on=["covariate", "method", "sample"])
    assert np.allclose(merged["smd"], merged["value"])
    assert np.allclose(merged["abs_smd"], merged["value"].abs())
    assert set(data["method"]) == {"gan_greedy", "pixel_optimal"}
    assert (data["threshold"] == 0.1).all()


def test_love_plot_needs_smd_rows(tmp_path):
    bad = pd.DataFrame({"covariate": ["a"], "stat": ["ks_max"], "sample": ["matched"], "value": [0.1],
                        "method": ["m"]})
    with pytest.raises(InputDataError, match="smd"):
        figures.love_plot(bad, *_written(tmp_path, "bad"))


def test_propensity_overlap_uses_matched_weights(tmp_path, sample):
    att = sample["X"].assign(image_id=sample["ids"])
    treated = pd.Series(sample["treated"], index=sample["ids"])
    pdf, png = _written(tmp_path, "po")
    data = figures.propensity_overlap(att, treated, COVS, sample["matches"], pdf, png, treatment="male")
    _check_files(pdf, png)
    assert set(data["sample"]) == {"unmatched", "gan_greedy", "pixel_optimal"}
    assert (data.query("sample == 'unmatched'").shape[0]) == len(sample["ids"])
    greedy = data[data["sample"] == "gan_greedy"]
    pairs = sample["matches"]["gan_greedy"]
    assert set(greedy["image_id"]) == set(pairs["treated_id"]) | set(pairs["control_id"])
    assert data["propensity"].between(0, 1).all()
    # the same score in every panel
    score = data.drop_duplicates("image_id").set_index("image_id")["propensity"]
    assert np.allclose(greedy.set_index("image_id")["propensity"], score.loc[greedy["image_id"]])


def _propensity_study(tmp_path):
    """80 images, covariates a/b and a 4-d embedding "e" that only 70 of them have; all three drive the
    treatment."""
    from ganmatch.data.io import write_npy, write_parquet

    rng = np.random.default_rng(1)
    n = 80
    ids = np.array([f"img{i:03d}" for i in range(n)])
    X = rng.normal(size=(n, 4)).astype(np.float32)
    att = pd.DataFrame({"image_id": ids, "a": rng.normal(size=n), "b": (rng.random(n) < 0.5).astype(float)})
    male = (rng.random(n) < 1 / (1 + np.exp(-(att["a"] + 1.5 * X[:, 0] - 0.5 * att["b"])))).astype(int)
    index = pd.DataFrame({"image_id": ids, "identity": [f"id{i // 2}" for i in range(n)], "male": male})
    have = rng.permutation(n)[:70]  # the embedding's own row order
    write_npy(X[have], tmp_path / "e.npy")
    write_parquet(pd.DataFrame({"image_id": ids[have]}), tmp_path / "e.parquet")
    return index, att, [str(tmp_path / "e.npy"), str(tmp_path / "e.parquet")], ids[np.sort(have)]


def _run_script(name, monkeypatch, **sections):
    """Run workflow/scripts/<name>.py with a stand-in for Snakemake's `snakemake` object."""
    import logging
    import runpy
    from pathlib import Path
    from types import SimpleNamespace

    from ganmatch import logs

    class Named(list):
        def __init__(self, **items):
            super().__init__(items.values())
            self.__dict__.update(items)

    monkeypatch.setattr(logs, "script_logging", lambda smk: logging.getLogger("ganmatch.test"))
    smk = SimpleNamespace(rule=name, log=[], wildcards=Named(), **{k: Named(**v) for k,
                                                                   v in sections.items()})
    script = Path(__file__).resolve().parents[1] / "workflow" / "scripts" / f"{name}.py"
    runpy.run_path(str(script), init_globals={"snakemake": smk}, run_name="__main__")


def test_propensity_overlap_draws_the_scores_the_propensity_matcher_used(tmp_path, monkeypatch):
    """The figure's script shows, for every image the `propensity` method matched, the score it matched on
    (its covariates, embedding, C, sample), as the matcher wrote it, not a score of its own."""
    from ganmatch.data.io import write_parquet
    from ganmatch.stages import matching as matching_stage

    index, att, emb_files, sample_ids = _propensity_study(tmp_path)
    write_parquet(index, tmp_path / "images.parquet")
    write_parquet(att, tmp_path / "attributes.parquet")
    spec = {"method": "nearest", "distance": "propensity", "embedding": "e", "covariates": ["a", "b"],
            "penalty": "l2", "C": 0.3, "link": "linear.logit", "ratio": 2, "replace": True}
    result = matching_stage.run_method("ps", spec, index, att, emb_files, "male", seed=3)
    pairs, units = result.pairs, result.units
    write_parquet(pairs, tmp_path / "ps.parquet")
    (tmp_path / "units").mkdir()
    write_parquet(units, tmp_path / "units" / "ps.parquet")
    assert sorted(units["image_id"]) == sorted(sample_ids)  # the whole sample, matched or not
    out = {k: str(tmp_path / f"po.{k}") for k in ("pdf", "png")} | {"data": str(tmp_path / "po.parquet")}
    with pytest.warns(UserWarning, match="10 image"):  # the 10 images without the embedding are not drawn
        _run_script("figure_propensity_overlap", monkeypatch,
                    input={"index": str(tmp_path / "images.parquet"),
                           "attributes": str(tmp_path / "attributes.parquet"),
                           "units": [str(tmp_path / "units" / "ps.parquet")],
                           "scores": [str(tmp_path / "units" / "ps.parquet")]},
                    output=out, params={"treatment": "male", "covariates": ["a", "b"], "score_method": "ps",
                                        "score_spec": spec})
    _check_files(out["pdf"], out["png"])
    drawn = pd.read_parquet(out["data"])
    assert set(drawn.loc[drawn["sample"] == "unmatched", "image_id"]) == set(sample_ids)
    shown = drawn[drawn["sample"] == "ps"].set_index("image_id")["propensity"]
    used = pd.concat([pd.Series(pairs["treated_logit"].to_numpy(), index=pairs["treated_id"]),
                      pd.Series(pairs["control_logit"].to_numpy(), index=pairs["control_id"])])
    used = 1 / (1 + np.exp(-used.groupby(level=0).first()))
    assert set(shown.index) == set(used.index)
    np.testing.assert_allclose(shown.loc[used.index].to_numpy(), used.to_numpy(), rtol=1e-12, atol=1e-12)
    # the figure's former own score (covariates only, all images) is a different score: the check above bites
    own = pd.Series(propensity_scores(att[["a", "b"]], index["male"]), index=att["image_id"])
    assert not np.allclose(own.loc[used.index].to_numpy(), used.to_numpy(), atol=1e-3)


def test_propensity_spec_follows_the_configured_method():
    from ganmatch.settings.plan import propensity_spec

    methods = {"g": {"method": "greedy", "distance": "embedding", "embedding": "gan"},
               "ps": {"method": "nearest", "distance": "propensity", "embedding": "gan"},
               "ps2": {"method": "full", "distance": "propensity", "covariates": ["a"]}}
    assert propensity_spec(methods) == ("ps", methods["ps"])
    assert propensity_spec({"g": methods["g"]}) == (None, {})


def test_propensity_overlap_without_a_propensity_method_fits_the_covariates(tmp_path, monkeypatch):
    """No propensity method configured: the figure shows P(treated | covariates) for every image."""
    from ganmatch.data.io import write_parquet
    from ganmatch.stages import matching as matching_stage

    index, att, emb_files, _ = _propensity_study(tmp_path)
    write_parquet(index, tmp_path / "images.parquet")
    write_parquet(att, tmp_path / "attributes.parquet")
    result = matching_stage.run_method("g", {"method": "greedy", "distance": "embedding", "embedding": "e"},
                                       index, att, emb_files, "male")
    assert result.units["propensity"].isna().all() and result.units["distance"].isna().all()
    write_parquet(result.units, tmp_path / "g.parquet")
    out = {k: str(tmp_path / f"po.{k}") for k in ("pdf", "png")} | {"data": str(tmp_path / "po.parquet")}
    _run_script("figure_propensity_overlap", monkeypatch,
                input={"index": str(tmp_path / "images.parquet"),
                       "attributes": str(tmp_path / "attributes.parquet"),
                       "units": [str(tmp_path / "g.parquet")], "scores": []},
                output=out, params={"treatment": "male", "covariates": ["a", "b"], "score_method": "",
                                    "score_spec": {}})
    before = pd.read_parquet(out["data"]).query("sample == 'unmatched'").set_index("image_id")["propensity"]
    own = pd.Series(propensity_scores(att[["a", "b"]], index["male"]), index=att["image_id"])
    np.testing.assert_allclose(before.loc[own.index].to_numpy(), own.to_numpy())


def test_matched_pairs_grid_with_reference_images(tmp_path, sample):
    from ganmatch.data.io import write_png

    images = {}
    for i, image_id in enumerate(sample["ids"]):
        path = tmp_path / f"{image_id}.png"
        write_png(np.full((16, 16, 3), (i * 4) % 255, np.uint8), path)
        images[image_id] = str(path)
    matches = pd.concat(sample["matches"].values(), ignore_index=True)
    matches["treated_ref"] = matches["treated_id"]
    matches["control_ref"] = None  # a missing reference is drawn as an empty tile
    pdf, png = _written(tmp_path, "pairs")
    data = figures.matched_pairs(matches, images, pdf, png, n_pairs=4, treatment="male")
    _check_files(pdf, png)
    assert data.groupby("method").size().to_dict() == {"gan_greedy": 4, "pixel_optimal": 4}
    greedy = data[data["method"] == "gan_greedy"]
    assert greedy["distance"].is_monotonic_increasing
    assert greedy["distance"].iloc[0] == matches.query("method == 'gan_greedy'")["distance"].min()
    assert greedy["distance"].iloc[-1] == matches.query("method == 'gan_greedy'")["distance"].max()
    assert {"treated_ref", "control_ref"} <= set(data.columns)


def _neighbours(sample, scale):
    rng = np.random.default_rng(1)
    ids = sample["ids"]
    rows = []
    for i, q in enumerate(ids):
        partner = ids[i + 1] if i % 2 == 0 else ids[i - 1]  # the same identity
        others = rng.choice(np.setdiff1d(ids, [q, partner]), 3, replace=False)
        for rank, (nb, d) in enumerate([(partner, 0.3 * scale)] + [(o, scale * (1 + r)) for r,
                                                                   o in enumerate(others)], 1):
            rows.append({"query": q, "neighbour": nb, "distance": d, "rank": rank, "scope": "all"})
    return pd.DataFrame(rows)


def test_distance_distributions_split_by_identity(tmp_path, sample):
    nb = {"gan": _neighbours(sample, 1.0), "dlib": _neighbours(sample, 0.5)}
    pdf, png = _written(tmp_path, "dd")
    data = figures.distance_distributions(nb, sample["identity"], pdf, png, thresholds={"dlib": 0.6})
    _check_files(pdf, png)
    n = len(sample["ids"])
    counts = data.groupby(["embedding", "relation"])["count"].sum()
    assert counts[("gan", "same identity")] == n and counts[("gan", "different identity")] == 3 * n
    same = data.query("embedding == 'gan' and relation == 'same identity'")
    assert same["median"].iloc[0] == pytest.approx(0.3)
    dens = data[(data["embedding"] == "dlib") & (data["relation"] == "same identity")]
    assert np.sum(dens["density"] * (dens["bin_right"] - dens["bin_left"])) == pytest.approx(1.0)
    assert data.query("embedding == 'dlib'")["bin_right"].max() >= 0.6


def test_neighbour_quality_table_and_figure(tmp_path, sample):
    from ganmatch.analysis.retrieval import retrieval_quality, retrieval_quality_table

    nb = {"gan": _neighbours(sample, 1.0), "pixel": _neighbours(sample, 2.0)}
    att = sample["X"].assign(image_id=sample["ids"])
    table = retrieval_quality_table(nb, sample["identity"], att)
    assert list(table["embedding"]) == ["gan", "pixel"] and table.columns[0] == "embedding"
    direct = retrieval_quality(nb["gan"], sample["identity"], att)
    assert table.iloc[0]["err_top1"] == direct.iloc[0]["err_top1"] == 0.0
    pdf, png = _written(tmp_path, "nq")
    data = figures.neighbour_quality(table, pdf, png)
    _check_files(pdf, png)
    pd.testing.assert_frame_equal(data, table)
    figures.write_csv(data, tmp_path / "nq.csv")
    back = pd.read_csv(tmp_path / "nq.csv")
    assert np.allclose(back["err_top1"], table["err_top1"])


def test_projection_quality_marks_examples(tmp_path):
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "image_id": [f"i{k}" for k in range(20)],
            "status": "ok",
            "reason": "",
            "loss": rng.random(20) * 0.05,
            "psnr": 25 + 20 * rng.random(20),
            "steps": 10,
        }
    )
    originals = rng.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8)
    recons = originals.copy()
    recons[0] = 255 - recons[0]
    pdf, png = _written(tmp_path, "pq")
    data = figures.projection_quality(table, ["i0", "i1", "i2", "i3"], originals, recons, pdf, png)
    _check_files(pdf, png)
    assert data["shown"].sum() == 4
    assert data.loc[1, "psnr_rerender"] >= 99  # identical images
    assert data.loc[0, "psnr_rerender"] < 15
    assert data.loc[~data["shown"], "psnr_rerender"].isna().all()


def test_projection_examples_rerender_latents(tmp_path):
    """Latents re-rendered with the saved generator reproduce the images they were rendered from."""
    import torch

    from ganmatch.data.io import write_png
    from ganmatch.gan.project import tensor_to_uint8
    from ganmatch.gan.stylegan2 import Generator
    from ganmatch.gan.weights import save_generator
    from ganmatch.stages.figures import projection_examples

    torch.manual_seed(0)
    gen = Generator(size=16, z_dim=8, w_dim=8, n_mlp=1, channels={4: 8, 8: 8, 16: 8}).eval()
    weights = tmp_path / "g.pt"
    save_generator(gen, weights)
    latents = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    with torch.no_grad():
        images = tensor_to_uint8(gen.synthesis(torch.from_numpy(latents)))
    paths = {}
    for k, im in enumerate(images):
        paths[f"i{k}"] = str(tmp_path / f"i{k}.png")
        write_png(im, paths[f"i{k}"])
    table = pd.DataFrame(
        {
            "image_id": list(paths),
            "status": ["ok", "ok", "failed", "ok", "ok"],
            "loss": 0.01,
            "psnr": [30.0, 40.0, 0.0, 20.0, 35.0],
        }
    )
    ids, originals, recons = projection_examples(table, latents, paths, str(weights), n=3)
    assert ids == ["i3", "i4", "i1"]  # worst, middle, best PSNR; the failed image is never shown
    assert np.abs(originals.astype(int) - recons.astype(int)).max() <= 1
    # the workflow passes memory-mapped shards stacked by row position: the same rows, the same figure
    from ganmatch.analysis.embeddings import StackedRows

    stacked = StackedRows([latents[:2], latents[2:3], latents[3:]])
    assert len(stacked) == 5 and np.array_equal(stacked[[4, 0, 2]], latents[[4, 0, 2]])
    with pytest.raises(IndexError):
        stacked[[5]]
    again = projection_examples(table, stacked, paths, str(weights), n=3)
    assert again[0] == ids and np.array_equal(again[2], recons)


def test_latent_shards_check_each_array_against_its_table(tmp_path):
    from ganmatch.analysis.embeddings import latent_shards
    from ganmatch.data.io import write_npy, write_parquet

    write_parquet(pd.DataFrame({"image_id": ["a", "b"], "status": "ok"}), tmp_path / "s0.parquet")
    write_npy(np.zeros((3, 4), np.float32), tmp_path / "s0.npy")
    with pytest.raises(InputDataError, match="3 latents but .*s0.parquet has 2 rows"):
        latent_shards([str(tmp_path / "s0.parquet")], [str(tmp_path / "s0.npy")])


def test_outcomes_forest_synthetic_table(tmp_path):
    table = pd.DataFrame(
        {
            "outcome": ["outcome"] * 3 + ["smiles"] * 3,
            "kind": ["numeric"] * 3 + ["binary"] * 3,
            "method": ["gan_greedy", "naive", "propensity"] * 2,
            "embedding": ["gan", "", ""] * 2,
            "estimate": [1.1, 1.6, 1.2, 0.1, 0.2, 0.05],
            "ci_low": [0.7, 1.3, 0.8, -0.05, 0.1, -0.1],
            "ci_high": [1.5, 1.9, 1.6, 0.25, 0.3, 0.2],
            "n_pairs": pd.array([45, pd.NA, 40] * 2, dtype="Int64"),
            "n_treated": pd.array([45, 104, 40] * 2, dtype="Int64"),
            "n_control": pd.array([45, 299, 40] * 2, dtype="Int64"),
            "p_value": 0.01,
            "test": "t",
            "gamma": np.nan,
            "truth": [1.0] * 3 + [np.nan] * 3,
        }
    )
    pdf, png = _written(tmp_path, "forest")
    data = figures.outcomes_forest(table, pdf, png)
    _check_files(pdf, png)
    assert len(data) == len(table)
    assert list(data.loc[data["outcome"] == "outcome", "method"]) == ["naive", "gan_greedy", "propensity"]
    merged = data.merge(table, on=["outcome", "method"], suffixes=("", "_in"))
    assert np.allclose(merged["estimate"], merged["estimate_in"]) and np.allclose(
        merged["ci_low"], merged["ci_low_in"]
    )


def test_leakage_heatmap_colours_the_image_panel_per_column(tmp_path, monkeypatch):
    """Image-model changes mix probabilities and years of age: each column gets its own colour scale there,
    while the numbers written in the cells stay the raw changes."""
    from ganmatch.report import edit_figures

    rows = [
        dict(
            source=src,
            direction=d,
            conditional=False,
            measured=m,
            strength=2.0,
            mean_change=(8.0 if m == "age" else 0.2) * (1 if d == "male" else -0.5),
        )
        for src in ("model", "image")
        for d in ("male", "young")
        for m in ("male", "age")
    ]
    import matplotlib.axes

    shown = []
    orig = matplotlib.axes.Axes.imshow

    def spy(self, X, *a, **kw):
        shown.append((np.asarray(X), kw.get("vmax")))
        return orig(self, X, *a, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "imshow", spy)
    pdf, png = _written(tmp_path, "leakage")
    edit_figures.leakage_heatmap(pd.DataFrame(rows), pdf, png)
    _check_files(pdf, png)
    (model, _), (image, vmax) = shown
    assert np.allclose(model, [[0.2, 8.0], [-0.1, -4.0]])  # one scale for the latent models' SDs
    assert np.allclose(image, [[1.0, 1.0], [-0.5, -0.5]]) and vmax == 1.0  # per column in the image panel


# ---------------------------------------------------------------- issue 30: figures that never mislead


def _captured(monkeypatch, module=figures):
    """The figure a figure function was about to save (its file is still written)."""
    found = {}
    real = module.save_figure

    def keep(fig, pdf, png=None, **kw):
        fig.canvas.draw()
        found["fig"] = fig
        found["texts"] = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
        real(fig, pdf, png, **kw)

    monkeypatch.setattr(module, "save_figure", keep)
    return found


def _full_units():
    """A full-matching units table: 3 treated, 5 controls (one unmatched) in 2 subclasses, with weights."""
    return pd.DataFrame(
        {
            "image_id": [f"u{i}" for i in range(9)],
            "treated": [1, 1, 1, 0, 0, 0, 0, 0, 0],
            "weight": [1, 1, 1, 0.4, 0.4, 0.4, 1.5, 1.5, 0.0],
            "subclass": pd.array([1, 1, 2, 1, 1, 1, 2, 2, pd.NA], dtype="Int64"),
        }
    )


def test_outcomes_forest_counts_full_matching_as_treated_controls_and_subclasses(tmp_path, monkeypatch):
    """Full matching is 3 treated and 5 controls in 2 subclasses, not '3 pairs'; 1:1 methods stay pairs."""
    table = pd.DataFrame(
        {
            "outcome": "y",
            "kind": "numeric",
            "method": ["naive", "pairs", "full"],
            "estimate": [1.0, 0.9, 0.8],
            "ci_low": 0.5,
            "ci_high": 1.5,
            "n_pairs": pd.array([pd.NA, 4, 3], dtype="Int64"),
            "n_treated": pd.array([3, 4, 3], dtype="Int64"),
            "n_control": pd.array([6, 4, 5], dtype="Int64"),
        }
    )
    pairs_units = pd.DataFrame(
        {
            "image_id": list("abcdefghi"),
            "treated": [1] * 4 + [0] * 5,
            "weight": [1.0] * 8 + [0.0],
            "subclass": pd.array([1, 2, 3, 4, 1, 2, 3, 4, pd.NA], dtype="Int64"),
        }
    )
    seen = _captured(monkeypatch)
    data = figures.outcomes_forest(
        table, *_written(tmp_path, "forest"), units={"pairs": pairs_units, "full": _full_units()}
    )
    sizes = data.set_index("method")["sample_size"]
    assert sizes["full"] == "3 treated, 5 controls in 2 subclasses"
    assert sizes["pairs"] == "4 pairs" and sizes["naive"] == "3 + 6"
    labels = [t.get_text() for t in seen["fig"].axes[0].get_yticklabels()]
    assert any("3 treated, 5 controls in 2 subclasses" in t for t in labels)
    assert not any("full" in t and "pairs" in t for t in labels)
    # without the units tables the outcome row's own counts still say treated and controls
    again = figures.outcomes_forest(table, *_written(tmp_path, "forest2"))
    assert again.set_index("method").loc["full", "sample_size"] == "3 treated, 5 controls"


def test_matched_counts_from_units_and_pairs():
    assert figures.matched_counts(_full_units()) == {
        "n_treated": 3,
        "n_control": 5,
        "n_subclasses": 2,
        "pairs": False,
    }
    pairs = pd.DataFrame(
        {"treated_id": ["t1", "t2"], "control_id": ["c1", "c2"], "subclass": [1, 2], "weight": 1.0}
    )
    assert (
        figures.matched_counts(pairs)["pairs"]
        and figures.counts_label(figures.matched_counts(pairs)) == "2 pairs"
    )
    links = pd.DataFrame(
        {"treated_id": ["t1", "t1", "t2"], "control_id": ["c1", "c2", "c3"], "subclass": [1, 1, 2]}
    )
    assert figures.counts_label(figures.matched_counts(links)) == "2 treated, 3 controls in 2 subclasses"


def _pairs_images(tmp_path, ids):
    from ganmatch.data.io import write_png

    images = {}
    for i in ids:
        images[i] = str(tmp_path / f"{i}.png")
        write_png(np.full((8, 8, 3), 128, np.uint8), images[i])
    return images


def test_matched_pairs_labels_propensity_gaps_subclasses_and_drops_empty_reference_tiles(
    tmp_path, monkeypatch
):
    """Propensity pairs show their logit difference (not 'd = 0.00' of the subclass distance); a full-matching
    method shows treated, controls and subclasses and each link's subclass and weight; a method that never
    records reference photos gets no grey 'missing' tiles, while one that does keeps them."""
    ids = [f"i{k}" for k in range(12)]
    images = _pairs_images(tmp_path, ids)
    greedy = pd.DataFrame(
        {
            "treated_id": ids[:3],
            "control_id": ids[3:6],
            "distance": [0.5, 1.0, 1.5],
            "method": "gan_greedy",
            "treated_ref": [None] * 3,
            "control_ref": [None] * 3,
        }
    )
    constrained = greedy.assign(
        method="gan_constrained", treated_ref=ids[6:9], control_ref=[ids[9], None, ids[10]]
    )
    full = pd.DataFrame(
        {
            "treated_id": ["i0", "i0", "i1"],
            "control_id": ["i3", "i4", "i5"],
            "distance": 0.0,
            "weight": [0.5, 0.5, 1.0],
            "subclass": [1, 1, 2],
            "method": "propensity_full",
            "treated_logit": [-1.0, -1.0, 0.5],
            "control_logit": [-1.0, -1.00234, 0.75],
        }
    )
    seen = _captured(monkeypatch)
    data = figures.matched_pairs(
        pd.concat([greedy, constrained, full], ignore_index=True),
        images,
        *_written(tmp_path, "pairs"),
        n_pairs=3,
    )
    texts = "\n".join(seen["texts"])
    # the one missing control_ref of gan_constrained, nothing for gan_greedy
    assert texts.count("missing") == 1
    n_tiles = sum(ax.axison for ax in seen["fig"].axes)
    assert n_tiles == 3 * 2 + 3 * 4 + 3 * 2
    assert "|Δlogit| = 0.00234" in texts and "|Δlogit| = 0.25" in texts and "d = 0.00" not in texts
    assert (
        "2 treated, 3 controls in 2 subclasses" in " ".join(texts.split()) and "subclass 1, w = 0.5" in texts
    )
    assert "3 pairs" in texts
    shown = data[data["method"] == "propensity_full"]
    assert (shown["gap_name"] == "|Δlogit|").all() and np.allclose(sorted(shown["gap"]), [0.0, 0.00234, 0.25])


def test_covariate_means_marks_methods_with_too_few_pairs(tmp_path, sample, monkeypatch):
    """As in the love plot: hollow markers after matching and the status in the panel's title."""
    summary, means = _summary(sample)
    summary = summary.copy()
    summary["status"] = np.where(
        (summary["method"] == "pixel_optimal") & (summary["sample"] == "matched"),
        "too few pairs (9 < 10)",
        "balanced",
    )
    seen = _captured(monkeypatch)
    figures.covariate_means(means, *_written(tmp_path, "cm_flag"), treatment="male", summary=summary)
    axes = {ax.get_title().split("\n")[0]: ax for ax in seen["fig"].axes if ax.get_title()}
    flagged, fine = axes["pixel optimal"], axes["gan greedy"]
    assert "too few pairs (9 < 10)" in flagged.get_title() and "too few" not in fine.get_title()

    def matched_faces(ax):
        return [line.get_markerfacecolor() for line in ax.lines if line.get_marker() == "s"]

    assert matched_faces(flagged) and all(f == "none" for f in matched_faces(flagged))
    assert all(f != "none" for f in matched_faces(fine))


def test_distance_distributions_draw_the_matching_face_threshold_from_the_methods(
    tmp_path, sample, monkeypatch
):
    """The threshold a constrained matching applies on its face embedding is drawn (from its settings, not
    0.6)."""
    methods = {
        "gan_constrained": {
            "method": "greedy_constrained",
            "embedding": "gan",
            "constraint_embedding": "face",
            "threshold": 0.45,
        },
        "gan_greedy": {"method": "greedy", "embedding": "gan"},
    }
    matching = figures.constraint_thresholds(methods)
    assert matching == {"face": {"gan_constrained": 0.45}}
    nb = {"gan": _neighbours(sample, 1.0), "face": _neighbours(sample, 0.5)}
    seen = _captured(monkeypatch)
    data = figures.distance_distributions(
        nb, sample["identity"], *_written(tmp_path, "dd_thr"), matching=matching
    )
    face_ax = next(ax for ax in seen["fig"].axes if ax.get_title() == "embedding: face")
    gan_ax = next(ax for ax in seen["fig"].axes if ax.get_title() == "embedding: gan")
    vertical = [line.get_xdata()[0] for line in face_ax.lines if len(set(line.get_xdata())) == 1]
    assert vertical == [0.45] and not [ln for ln in gan_ax.lines if len(set(ln.get_xdata())) == 1]
    assert any(
        "matching threshold (gan constrained)" in " ".join(t.get_text().split())
        for t in face_ax.get_legend().get_texts()
    )
    assert set(data.loc[data["embedding"] == "face", "thresholds"]) == {"0.45"}


@pytest.mark.parametrize(("size", "scales"), [(32, 4), (16, 3), (8, 2), (4, 1)])
def test_projection_loss_label_names_the_multiscale_loss_it_plots(size, scales):
    """The loss axis names what the projector computes: the MSE summed over `scales` resolutions (checked on
    `multiscale_mse` itself: a constant error c gives scales * c^2), plus VGG with perceptual: vgg."""
    import torch

    from ganmatch.gan.project import multiscale_mse

    x = torch.zeros(1, 3, size, size)
    assert float(multiscale_mse(x, x + 0.5)[0]) == pytest.approx(scales * 0.25)
    label = figures.projection_loss_label(size)
    assert (f"summed over {scales} scales" in label) == (scales > 1) and "VGG" not in label
    assert "VGG16" in figures.projection_loss_label(size, "vgg")


def test_projection_quality_axis_says_what_the_loss_is(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {"image_id": [f"i{k}" for k in range(10)], "status": "ok", "loss": rng.random(10), "psnr": 30.0}
    )
    originals = rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    seen = _captured(monkeypatch)
    figures.projection_quality(table, ["i0", "i1"], originals, originals, *_written(tmp_path, "pq_label"))
    xlabels = " ".join(ax.get_xlabel().replace("\n", " ") for ax in seen["fig"].axes)
    assert "pixel MSE summed over 4 scales" in xlabels


def test_neighbour_quality_measures_attribute_mismatch_as_the_paper_table(tmp_path, sample, monkeypatch):
    """The attribute mismatch the paper's table (and paper_comparison's) reports is among all images: the
    figure draws exactly those numbers, labelled so, beside the other-group mismatch."""
    from ganmatch.analysis.retrieval import retrieval_quality_table
    from ganmatch.report.paper_comparison import neighbour_comparison

    nb = {"gan": _neighbours(sample, 1.0)}
    cross = nb["gan"].assign(scope="cross")
    cross["neighbour"] = np.roll(cross["neighbour"].to_numpy(), 7)
    nb["gan"] = pd.concat([nb["gan"], cross], ignore_index=True)
    att = sample["X"].assign(image_id=sample["ids"])
    table = retrieval_quality_table(nb, sample["identity"], att)
    seen = _captured(monkeypatch)
    figures.neighbour_quality(table, *_written(tmp_path, "nq_scope"))
    titled = {ax.get_title(): ax for ax in seen["fig"].axes}
    all_ax = next(ax for t, ax in titled.items() if "nearest among all images" in t)
    cross_ax = next(ax for t, ax in titled.items() if "nearest in the other group" in t)
    diff_cols = [c for c in table.columns if c.startswith("diff_")]
    heights = [p.get_height() for p in all_ax.patches]
    run = neighbour_comparison(table, []).query("source == 'this run'")
    assert (run["scope"] == "all").all()
    assert np.allclose(heights, run[diff_cols].to_numpy(float).ravel())
    want_cross = table.query("scope == 'cross'")[diff_cols].to_numpy(float).ravel()
    assert np.allclose([p.get_height() for p in cross_ax.patches], want_cross)
    assert not np.allclose(want_cross, run[diff_cols].to_numpy(float).ravel())
