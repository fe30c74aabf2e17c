"""Face attributes of the aligned real photos: the shipped gender/age models, head pose, quality proxies.

One row per accepted (status "ok") face of the aligned shard tables. Besides the raw predictions
(`ganmatch.faces.face_attributes.ATTRIBUTE_COLUMNS`, each with its confidence where the model gives one), the
table carries binary proxies in the form `ganmatch.analysis.attributes.attributes_table` reads as predictions:
`<name>_prob` for `male`, `young` and `frontal`, and `<name>_confidence` for the two model-based ones. They
are noisy proxies; dataset labels, where present, take precedence in the attributes table.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ganmatch.analysis.embeddings import aligned_images
from ganmatch.faces.align import LANDMARK_COLUMNS

log = logging.getLogger("ganmatch")

PROXIES = ("male", "young", "frontal")
"""Covariates (and treatments) that the face models can fill when the labels lack them."""


def proxy_columns(pred: pd.DataFrame, young_prob: np.ndarray, frontal_within: float) -> pd.DataFrame:
    """`<name>_prob` / `<name>_confidence` for the PROXIES from the raw predictions.

    male: the gender model's probability; young: P(age below the threshold) from the age distribution (both
    averaged over the face and its mirror image); frontal: |yaw| within `frontal_within` degrees, a geometric
    measurement (probability 0 or 1, so it has no model confidence column). Pitch is left out: from five
    landmarks it mixes head tilt with the face's proportions (see `ganmatch.faces.face_attributes`).
    """
    male = pred["gender_male_prob"].to_numpy(np.float64)
    young = np.asarray(young_prob, np.float64)
    frontal = (pred["yaw"].abs() <= frontal_within).to_numpy(np.float64)
    frontal[pred["yaw"].isna().to_numpy()] = np.nan
    return pd.DataFrame({
        "male_prob": male, "male_confidence": np.maximum(male, 1 - male),
        "young_prob": young, "young_confidence": np.maximum(young, 1 - young),
        "frontal_prob": frontal,
    })


def race_columns(paths: list, weights: str, races: int = 7) -> pd.DataFrame:
    """FairFace's race, race_prob, black_prob (+ black_confidence, the form the attributes stage reads) per
    face."""
    from ganmatch.faces.fairface import predict_race

    table = predict_race(paths, weights=weights, races=races)
    table["black_confidence"] = np.maximum(table["black_prob"], 1 - table["black_prob"])
    return table.reset_index(drop=True)


def face_attribute_table(shard_tables: Sequence[str], params: dict) -> pd.DataFrame:
    """Face attributes of every accepted face in the aligned shard tables (image_id first).

    `params`: the face_attributes block, `young_below` (years) and `frontal_within` (degrees); with
    `fairface_weights` also FairFace's race columns (`race_columns`). Pose and face size use the landmarks
    found in the original photo; gender, age, race and quality use the aligned crop.
    """
    from ganmatch.faces.face_attributes import ATTRIBUTE_COLUMNS, predict_face_attributes

    ok = aligned_images(shard_tables)
    paths = ok["aligned_path"].tolist()
    raw = ok[list(LANDMARK_COLUMNS)].to_numpy(np.float64).reshape(-1, 5, 2)
    if len(ok) == 0:
        pred = pd.DataFrame({c: np.zeros(0) for c in ATTRIBUTE_COLUMNS})
        young = np.zeros(0)
    else:
        from ganmatch.progress import Progress, map_in_chunks

        years = float(params["young_below"])
        pred = map_in_chunks(
            lambda rows: predict_face_attributes([paths[i] for i in rows], raw_landmarks5=raw[rows],
                                                 age_below=years),
            np.arange(len(paths)), Progress(len(paths), "face attributes"))
        young = pred.pop("age_below_prob").to_numpy()
    proxies = proxy_columns(pred, young, float(params["frontal_within"]))
    parts = [ok[["image_id"]].reset_index(drop=True), pred, proxies]
    if params["fairface_weights"]:
        parts.append(race_columns(paths, params["fairface_weights"], int(params["fairface_races"])))
    out = pd.concat(parts, axis=1)
    out["image_id"] = out["image_id"].astype(str)
    return out


def predict_face_attributes_job(inp, out, params) -> None:
    """The predict_face_attributes rule: the face models on every accepted face."""
    from ganmatch.data.io import write_parquet

    table = face_attribute_table(inp.tables, params.face_attributes)
    log.info("face attributes of %d faces:\n%s", len(table), table.describe().T.to_string())
    write_parquet(table, out[0])
