"""Unit tests of the edit stage's pure parts: directions, steps, edits, metrics, transects."""

import numpy as np
import pandas as pd
import pytest

from ganmatch.analysis import edit_metrics
from ganmatch.gan import editing
from ganmatch.settings.config import validate_config


def planted_data(n=400, w_dim=8, seed=0):
    """Latents whose attributes a, b are thresholds of the first two axes; c is rare (3 positives)."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n, w_dim)).astype(np.float32)
    W[:, 1] += 0.8 * W[:, 0]  # b's coordinate is correlated with a's: the plain direction of a leaks into b
    labels = pd.DataFrame({"a": (W[:, 0] > 0).astype(float), "b": (W[:, 1] > 0).astype(float),
                           "c": np.r_[np.ones(3), np.zeros(n - 3)]})
    return W, labels


def test_directions_table_array_and_skipped_attribute():
    W, labels = planted_data()
    table, array = editing.fit_directions(W, labels, {"a": ["b"]}, min_positives=10)
    assert list(table["direction"]) == ["a", "b", "c", "a|b"]
    skipped = table.set_index("direction").loc["c"]
    assert skipped["row"] == -1 and "3 positives" in skipped["skipped"]
    assert array.dtype == np.float32 and array.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(array, axis=1), 1.0, atol=1e-5)
    rows = table.set_index("direction")["row"]
    assert abs(array[rows["a"]][0]) > 0.9  # a's direction is its planted axis
    assert abs(float(array[rows["a|b"]] @ array[rows["b"]])) < 1e-5  # b projected out
    assert table.set_index("direction").loc["a", "cv_accuracy"] > 0.9
    # a conditional on a skipped attribute is skipped with its reason
    table2, _ = editing.fit_directions(W, labels, {"a": ["c"]}, min_positives=10)
    assert table2.iloc[-1]["skipped"] == "no direction for c"


def test_cosine_matrix_is_symmetric_with_unit_diagonal():
    W, labels = planted_data()
    table, array = editing.fit_directions(W, labels[["a", "b"]], {"a": ["b"]})
    cos = editing.cosine_matrix(table, array)
    m = cos.drop(columns="direction").to_numpy()
    np.testing.assert_allclose(np.diag(m), 1.0, atol=1e-5)
    np.testing.assert_allclose(m, m.T, atol=1e-6)


def test_edit_moves_the_score_by_strength_sds_and_bound_clips():
    W, labels = planted_data()
    table, array = editing.fit_directions(W, labels[["a", "b"]])
    scores = W.astype(np.float64) @ array.T.astype(np.float64)
    steps = editing.edit_steps(table, [-1.0, 0.0, 2.0], scores)
    edited = editing.apply_edits(W, array, steps)
    assert edited.shape == (len(W), 2, 3, 8)
    moved = (edited[:, 0, 2] - W) @ array[0]
    np.testing.assert_allclose(moved, 2 * table.loc[0, "score_sd"], rtol=1e-4)
    bounded = editing.edit_steps(table, [10.0], scores, bound=True)
    after = scores + bounded[:, :, 0]
    assert (after <= table["score_max"].to_numpy() + 1e-9).all()
    # W+: the same move on every layer
    plus = editing.apply_edits(np.repeat(W[:, None], 3, axis=1), array, steps)
    np.testing.assert_allclose(plus[:, :, :, 1], edited, atol=1e-6)


def test_interpolation_ends_are_the_latents():
    a, b = np.zeros((2, 4), np.float32), np.ones((2, 4), np.float32)
    strip = editing.interpolate(a, b, 5)
    assert strip.shape == (2, 5, 4)
    np.testing.assert_allclose(strip[:, 0], a)
    np.testing.assert_allclose(strip[:, -1], b)
    np.testing.assert_allclose(strip[:, 2], 0.5)


def test_same_person_threshold_and_transects():
    X = np.array([[0.0], [1.0], [10.0], [12.0]])
    assert edit_metrics.same_person_threshold(X, ["p", "p", "q", "q"], quantile=1.0) == pytest.approx(2.0)
    edits = pd.DataFrame({
        "image_id": np.repeat(["x", "y", "z"], 3), "direction": "t", "strength": np.tile([-2.0, 0.0, 2.0], 3),
        "outcome_before_o": 0.0, "outcome_o": np.tile([0.0, 0.0, 1.0], 3),
    })
    table = edit_metrics.transects(edits, "t", ["o"], n_boot=200, truth={"o": 1.0})
    exp = table[table["kind"] == "experimental"].iloc[0]
    assert exp["estimate"] == pytest.approx(1.0) and bool(exp["covers"])
    assert list(table.loc[table["kind"] == "transect", "estimate"]) == [0.0, 0.0, 1.0]


def test_edit_config_errors_name_the_key(tmp_path):
    import yaml

    config = yaml.safe_load(open("config/config.yaml"))
    schema = "config/schema.yaml"
    for change, key in [({"strengths": []}, "edit.strengths"),
                        ({"images": {"per_group": 0, "methods": []}}, "edit.images"),
                        ({"images": {"methods": ["nope"]}}, "edit.images.methods"),
                        ({"conditional": {"male": ["hair"]}}, "edit.conditional.male")]:
        bad = {**config, "edit": {**config["edit"], **change}}
        with pytest.raises(Exception, match=key.replace(".", r"\.")):
            validate_config(bad, schema)


def test_edit_shard_renders_every_edit_and_measures_drift(tmp_path):
    from ganmatch.gan import edits
    from ganmatch.gan.stylegan2 import make_generator
    from ganmatch.gan.weights import save_generator

    gen = make_generator(size=16, z_dim=8, w_dim=8, n_mlp=1, channels={4: 8, 8: 8, 16: 8}, seed=0)
    save_generator(gen, tmp_path / "g.pt")
    W, labels = planted_data(n=60)
    table, array = editing.fit_directions(W, labels[["a", "b"]], {"a": ["b"]}, min_positives=5)
    latent_table = pd.DataFrame({"image_id": [f"i{k}" for k in range(60)], "status": "ok"})
    latent_table.loc[1, "status"] = "failed"
    selection = pd.DataFrame({"image_id": ["i0", "i1", "i2"], "shard": 0})
    cfg = {"strengths": [-1.0, 0.0, 1.0], "bound": False, "batch_size": 4, "device": "cpu"}
    edited, out = edits.edit_shard(selection, 0, latent_table, W, table, array, str(tmp_path / "g.pt"), cfg,
                                        {"gan": {"kind": "latent"}, "pixel": {"kind": "pixel", "size": 8}},
                                        str(tmp_path / "img"))
    assert len(out) == len(edited) == 2 * 3 * 3  # i1's projection failed; 3 directions x 3 strengths
    assert all((tmp_path / "img" / i / "original.png").exists() for i in ("i0", "i2"))
    assert all(__import__("os").path.exists(p) for p in out["path"])
    zero = out[out["strength"] == 0]
    np.testing.assert_allclose(zero[["drift_gan", "drift_pixel"]].to_numpy(), 0.0, atol=1e-5)
    cond = out[(out["direction"] == "a|b") & (out["strength"] == 1)]
    np.testing.assert_allclose(cond["delta_b"], 0.0, atol=1e-4)  # b's score does not move
    assert (cond["delta_a"] > 0).all() and (cond["score_after"] > cond["score_before"]).all()


def test_an_edit_shard_without_selected_images_neither_imports_torch_nor_reads_the_generator(tmp_path):
    """At 30,000 photos most of the 300 edit shard jobs hold none of the few selected images: such a job
    writes its empty outputs without importing torch (most of its time) or reading the weights."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, pandas as pd\n"
        "from ganmatch.gan import edits\n"
        "sel = pd.DataFrame({'image_id': ['i0'], 'shard': 0})\n"
        "table = pd.DataFrame({'image_id': ['j0', 'j1'], 'status': 'ok'})\n"
        "dirs = pd.DataFrame({'row': [0], 'direction': ['a'], 'attribute': ['a'], 'conditional_on': [''],"
        " 'conditional': [False]})\n"
        "W, out = edits.edit_shard(sel, 3, table, np.zeros((2, 8), np.float32), dirs, np.ones((1, 8)),"
        " 'no-such-generator.pt', {'strengths': [1.0], 'bound': False, 'batch_size': 4, 'device': 'cpu'},"
        " {}, 'img')\n"
        "print(len(out), W.shape, 'torch' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["0", "(0,", "8)", "False"]


def test_select_images_takes_ids_groups_and_matched_pairs_of_projected_images(tmp_path):
    from ganmatch.errors import ConfigError
    from ganmatch.gan import edits

    ids = [f"i{k}" for k in range(10)]
    index = pd.DataFrame({"image_id": ids, "identity": ids, "male": [1, 0] * 5})
    shards = []
    for k, part in enumerate((ids[:5], ids[5:])):
        t = pd.DataFrame({"image_id": part, "status": "ok"})
        if k == 1:
            t.loc[0, "status"] = "failed"  # i5 has no latent
        t.to_parquet(tmp_path / f"s{k}.parquet")
        shards.append(str(tmp_path / f"s{k}.parquet"))
    pairs = pd.DataFrame({"treated_id": ["i0", "i2"], "control_id": ["i5", "i3"], "distance": [0.1, 0.2]})
    pairs.to_parquet(tmp_path / "m.parquet")
    sel = edits.select_images(
        index,
        index[["image_id"]],
        shards,
        {"m": str(tmp_path / "m.parquet")},
        "male",
        {"ids": ["i9"], "per_group": 1, "max_pairs": 2},
    )
    assert sel["image_id"].is_unique and "i5" not in set(sel["image_id"])
    assert sel.iloc[0]["image_id"] == "i9" and sel.iloc[0]["source"] == "ids"
    assert {"i0", "i2", "i3"} <= set(sel["image_id"]) and (sel["source"] == "per_group").sum() <= 2
    assert sel.set_index("image_id").loc["i9", "shard"] == 1
    with pytest.raises(ConfigError, match="edit.images.ids"):
        edits.select_images(
            index, index[["image_id"]], shards, {}, "male", {"ids": ["i5"], "per_group": 0, "max_pairs": 0}
        )


def _conditional_edits():
    """Edits of 3 images along a plain direction 'a' and the conditional 'a|b' (b projected out): the latent
    model of b cannot move along 'a|b' (delta_b = 0, p_b constant), while the planted b coordinate does."""
    rows = []
    for d, cond in (("a", ""), ("a|b", "b")):
        for k, img in enumerate("xyz"):
            for s in (-2.0, 0.0, 2.0):
                rows.append(
                    {
                        "image_id": img,
                        "direction": d,
                        "attribute": "a",
                        "conditional_on": cond,
                        "conditional": bool(cond),
                        "strength": s,
                        "delta_a": s,
                        "flip_a": s > 0,
                        "delta_b": 0.0 if cond else 0.3 * s,
                        "flip_b": False,
                        "true_delta_a": 0.4 * s,
                        "true_flip_a": s > 0,
                        "true_delta_b": (0.05 + 0.01 * k) * s,
                        "true_flip_b": False,
                        "outcome_before_p_a": 0.5,
                        "outcome_p_a": 0.5 + 0.1 * s,
                        "outcome_before_p_b": 0.3,
                        "outcome_p_b": 0.3 if cond else 0.3 + 0.05 * s,
                    }
                )
    return pd.DataFrame(rows)


def _figure_of(monkeypatch):
    from ganmatch.report import edit_figures

    found = {}
    real = edit_figures.save_figure

    def keep(fig, pdf, png=None, **kw):
        fig.canvas.draw()
        found["fig"] = fig
        real(fig, pdf, png, **kw)

    monkeypatch.setattr(edit_figures, "save_figure", keep)
    return found


def test_leakage_figure_greys_the_zeros_a_conditional_direction_has_by_construction(tmp_path, monkeypatch):
    """The latent model of b reads 0 along 'a|b' by construction: that cell is masked and marked, not coloured
    as a measured zero; the planted-truth panel shows b's real change there."""
    from ganmatch.report import edit_figures

    leakage = edit_metrics.leakage_table(_conditional_edits())
    seen = _figure_of(monkeypatch)
    data = edit_figures.leakage_heatmap(leakage, str(tmp_path / "l.pdf"), str(tmp_path / "l.png"))
    fixed = data[data["by_construction"]]
    assert list(zip(fixed["source"], fixed["direction"], fixed["measured"], strict=True)) == [
        ("model", "a|b", "b")
    ]
    model_ax, truth_ax = [ax for ax in seen["fig"].axes if ax.get_images()]
    shade = model_ax.get_images()[0].get_array()
    rows = [t.get_text() for t in model_ax.get_yticklabels()]
    cols = [t.get_text() for t in model_ax.get_xticklabels()]
    i, j = rows.index("a | b"), cols.index("b")
    assert np.ma.is_masked(shade[i, j]) or np.isnan(shade[i, j])
    assert "≡0" in [t.get_text() for t in model_ax.texts] and "by construction" in model_ax.get_title()
    assert "planted-truth" in model_ax.get_title()
    truth = truth_ax.get_images()[0].get_array()
    assert float(truth[i, j]) == pytest.approx(0.06 * 2)


def test_transects_figure_shows_the_truth_where_the_model_is_flat_by_construction(tmp_path, monkeypatch):
    from ganmatch.report import edit_figures

    edits = _conditional_edits()
    table = edit_metrics.transects(edits, "a|b", ["p_a", "p_b"], n_boot=50)
    assert np.allclose(table.loc[table["outcome"] == "p_b", "estimate"], 0.0)  # the flat panel of the issue
    seen = _figure_of(monkeypatch)
    data = edit_figures.transects_figure(
        table, str(tmp_path / "t.pdf"), str(tmp_path / "t.png"), edits=edits, n_boot=50
    )
    truth = data[data["source"] == "truth"]
    assert set(truth["outcome"]) == {"b"}
    want = edits[edits["direction"] == "a|b"].groupby("strength")["true_delta_b"].mean()
    assert np.allclose(truth.sort_values("strength")["estimate"], want.to_numpy())
    assert data.loc[data["outcome"] == "p_b", "by_construction"].all()
    assert not data.loc[data["outcome"] == "p_a", "by_construction"].any()
    titles = [ax.get_title() for ax in seen["fig"].axes]
    assert any(t.startswith("b: planted truth") for t in titles) and "p a" in titles
    drawn = next(ax for ax in seen["fig"].axes if ax.get_title().startswith("b: planted truth"))
    assert np.allclose(drawn.lines[0].get_ydata(), want.to_numpy())
    # photos: the image models measure it; neither: the panel says it is constant by construction
    photos = edits.drop(columns=[c for c in edits if c.startswith("true_")]).assign(image_delta_b=0.02)
    data = edit_figures.transects_figure(table, str(tmp_path / "t2.pdf"), None, edits=photos, n_boot=50)
    assert set(data.loc[data["source"] == "image", "outcome"]) == {"b"}
    edit_figures.transects_figure(table, str(tmp_path / "t3.pdf"), None, n_boot=50)
    assert any(
        "constant by construction" in ax.get_title() and ax.get_title().startswith("p b")
        for ax in seen["fig"].axes
    )
