"""Latent linear attribute models: known directions are recovered; labels take precedence."""

import numpy as np
import pandas as pd

from ganmatch.analysis.attributes import LatentAttributeModel, attributes_table, conditional_direction


def _data(n=600, d=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    true = {"a": np.eye(d)[0], "b": np.eye(d)[1]}
    labels = pd.DataFrame({k: (X @ v > 0).astype(float) for k, v in true.items()})
    return X, labels, true


def test_directions_recover_planted_normals():
    X, labels, true = _data()
    model = LatentAttributeModel(C=10.0).fit(X, labels)
    for name, d in true.items():
        assert abs(float(model.directions_[name] @ d)) > 0.95
    assert (model.cv_table_["cv_accuracy"] > 0.9).all()


def test_conditional_direction_is_orthogonal_to_condition():
    dirs = {"a": np.array([1.0, 1.0, 0.0]) / np.sqrt(2), "b": np.array([1.0, 0.0, 0.0])}
    d = conditional_direction(dirs, "a", ["b"])
    assert abs(float(d @ dirs["b"])) < 1e-6 and np.isclose(np.linalg.norm(d), 1.0)
    assert np.allclose(d, [0, 1, 0], atol=1e-6)


def test_attributes_table_labels_take_precedence_and_predictions_fill_gaps():
    X, labels, _ = _data()
    ids = np.array([f"i{k}" for k in range(len(X))])
    index = pd.DataFrame({"image_id": ids, "split": np.where(np.arange(len(X)) < 400, "train", "test"),
                          "a": labels["a"]})
    table, cv = attributes_table(index, ids, X, ["a", "b"])
    assert (table["a"].to_numpy() == labels["a"].to_numpy()).all()
    assert set(table["a_source"]) == {"label"} and set(table["b_source"]) == {"predicted"}
    assert table["b"].isna().all()  # b has no labels at all: no model, so no value rather than a guess
    row = cv.set_index("attribute").loc["a"]
    assert row["test_accuracy"] > 0.9
