"""The edit stage on your own photos: skipped with one message without generator weights, run with an
NVIDIA-format pickle (built here as in tests/test_weights.py)."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import copy_workflow, snakemake
from test_photos_workflow import make_photo_folder
from test_weights import CH, _fake_official_modules, _official_like_generator, _Persistent

from ganmatch.gan.stylegan2 import make_generator

SKIP = "skipping the edit stage"


def write_official_pickle(path):
    """A 16 px generator saved the way NVIDIA's stylegan2-ada-pytorch pickles are (read by the restricted
    loader)."""
    gen = make_generator(16, z_dim=8, w_dim=8, n_mlp=2, channels=CH, seed=3)
    with pytest.MonkeyPatch.context() as m:
        _Persistent.reconstruct, easy = _fake_official_modules(m)
        record = _official_like_generator(gen, easy)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps({"G_ema": record}, protocol=3))


@pytest.mark.slow
def test_without_weights_the_edit_stage_is_skipped_with_one_message(tmp_path):
    work = copy_workflow(tmp_path)
    (work / "photos").mkdir()
    (work / "on.yaml").write_text("figures: [covariate_means, edits, transects]\n")
    proc = snakemake(work, "--configfile", "config/photos.yaml", "on.yaml", "-n")
    err = proc.stdout + proc.stderr
    assert err.count(SKIP) == 1 and "GAN stage is off" in err
    assert "rule edit_shard" not in err and "rule edit_directions" not in err


@pytest.mark.slow
def test_with_an_official_pickle_the_edit_stage_runs_on_photos(tmp_path):
    work = copy_workflow(tmp_path)
    folder = make_photo_folder(work / "my_photos")
    write_official_pickle(work / "resources/weights/g.pkl")
    overlay = {
        "folder": {"path": str(folder), "labels": str(folder / "labels.csv")},
        "project": {"activate": True, "weights": "resources/weights/g.pkl", "steps": 3, "batch_size": 16,
                    "device": "cpu"},
        "matching": {"methods": {"gan_greedy": {"method": "greedy", "distance": "embedding",
                                                "embedding": "gan"}}},
        "edit": {"min_positives": 2, "strengths": [-1.0, 0.0, 1.0], "images": {"per_group": 2},
                 "interpolation": {"methods": ["gan_greedy"], "n_pairs": 1, "n_identities": 1, "steps": 3}},
        "figures": ["edits", "edit_leakage", "interpolations"],
    }
    (work / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    proc = snakemake(work, "--configfile", "config/photos.yaml", "overlay.yaml")
    assert SKIP not in proc.stderr
    res = work / "results/photos/edits"
    directions = pd.read_parquet(res / "directions.parquet")
    assert {"male", "young", "frontal"} <= set(directions["attribute"])
    edits = pd.read_parquet(res / "edits.parquet")
    assert len(edits) > 0 and {"drift_dlib", "drift_dlib_ratio", "drift_gan"} <= set(edits.columns)
    assert (edits["drift_dlib_threshold"] == 0.6).all()  # dlib's own same-person threshold
    # leakage re-predicted on the rendered faces by the image attribute models (gender, age), beside the
    # latent models'
    assert {"image_delta_male", "image_flip_male", "image_delta_young",
            "image_delta_age"} <= set(edits.columns)
    leakage = pd.read_parquet(res / "leakage.parquet")
    assert {"model", "image"} <= set(leakage["source"])
    image = leakage[leakage["source"] == "image"]
    assert set(image["measured"]) == {"male", "young", "age"} and image["mean_change"].notna().all()
    zero = edits[edits["strength"] == 0.0]
    assert np.allclose(zero["image_delta_male"], 0.0, atol=1e-3)   # strength 0 renders the original again
    transects = pd.read_parquet(res / "transects.parquet")
    # a verification distance and a model's output
    assert {"verify_dlib", "p_male"} <= set(transects["outcome"])
    for name in ("edits", "edit_leakage", "interpolations"):
        assert (work / f"results/photos/figures/{name}.png").stat().st_size > 0
