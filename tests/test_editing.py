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
    pd.DataFrame({"treated_id": ["i0", "i2"], "control_id": ["i5", "i3"], "distance": [0.1, 0.2]}).to_parquet(tmp_path / "m.parquet")
    sel = edits.select_images(index, index[["image_id"]], shards, {"m": str(tmp_path / "m.parquet")}, "male",
                                   {"ids": ["i9"], "per_group": 1, "max_pairs": 2})
    assert sel["image_id"].is_unique and "i5" not in set(sel["image_id"])
    assert sel.iloc[0]["image_id"] == "i9" and sel.iloc[0]["source"] == "ids"
    assert {"i0", "i2", "i3"} <= set(sel["image_id"]) and (sel["source"] == "per_group").sum() <= 2
    assert sel.set_index("image_id").loc["i9", "shard"] == 1
    with pytest.raises(ConfigError, match="edit.images.ids"):
        edits.select_images(index, index[["image_id"]], shards, {}, "male", {"ids": ["i5"], "per_group": 0, "max_pairs": 0})
