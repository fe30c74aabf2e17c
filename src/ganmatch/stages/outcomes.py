"""Outcome analysis stage: treatment effects before and after each matching, and face-verification bias."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ganmatch.analysis.outcomes import estimate_outcomes, reference_distances, verification_bias
from ganmatch.data.dataset import with_treatment
from ganmatch.data.io import read_named_parquets

log = logging.getLogger("ganmatch")


def analysed_images(index: pd.DataFrame, attributes: pd.DataFrame, treatment: str) -> pd.DataFrame:
    """The images that reached the attributes stage, with their treatment: the population every estimate
    refers to."""
    index = with_treatment(index, attributes, treatment)
    return index[index["image_id"].isin(attributes["image_id"])].reset_index(drop=True)


def outcome_effects(index: pd.DataFrame, attributes: pd.DataFrame, match_files: list[str],
                    outcomes: list[str],
                    treatment: str, truth: dict | None, n_boot: int, alpha: float, seed: int,
                    min_pairs: int = 10, unit_files: list[str] = ()) -> pd.DataFrame:
    """Naive and matched estimates (ATT) with bootstrap intervals, tests and Rosenbaum Gamma per outcome;
    estimates that are too small or cannot be estimated are flagged in `status` and logged."""
    images = analysed_images(index, attributes, treatment)
    table = images[["image_id", treatment, *outcomes]]
    out = estimate_outcomes(table, treatment, read_named_parquets(match_files), columns=outcomes,
                            truth=truth or {},
                            n_boot=n_boot, alpha=alpha, random_state=seed, min_pairs=min_pairs,
                            units=read_named_parquets(unit_files))
    for r in out[out["status"] != "ok"].itertuples():
        log.warning("outcome %s, method %s: %s", r.outcome, r.method, r.status)
    return out


def face_verification(index: pd.DataFrame, attributes: pd.DataFrame, ids: np.ndarray, X: np.ndarray,
                      match_files: list[str], treatment: str, threshold: float, n_boot: int, alpha: float,
                      seed: int, exclude_column: str | None = "eyeglasses",
                      unit_files: list[str] = ()) -> pd.DataFrame:
    """Distance of each photo to a same-identity reference and verification accuracy by group.

    As in the reference study, photos with eyeglasses are never used as references (when that column exists).
    """
    images = analysed_images(index, attributes, treatment).set_index("image_id")
    keep = np.isin(ids, images.index)
    ids, X = ids[keep], X[keep]
    exclude = None
    if exclude_column and exclude_column in attributes.columns:
        att = attributes.set_index("image_id")[exclude_column]
        exclude = att.index[att == 1].astype(str)
    ref = reference_distances(ids, images.loc[ids, "identity"].astype(str).to_numpy(), X, exclude=exclude,
                              random_state=seed)
    distance = ref.set_index("image_id")["distance"]
    bias = verification_bias(distance, images[treatment], threshold=threshold,
                             matches=read_named_parquets(match_files),
                             n_boot=n_boot, alpha=alpha, random_state=seed,
                             units=read_named_parquets(unit_files))
    bias.insert(0, "threshold", float(threshold))
    return bias


def estimate_outcomes_job(inp, out, params) -> None:
    """The estimate_outcomes rule: naive and matched effects on every configured outcome."""
    import json

    from ganmatch.data.io import read_parquet, write_parquet

    truth = json.loads(open(inp.truth).read()) if "truth" in inp.keys() else params.truth
    table = outcome_effects(read_parquet(inp.index), read_parquet(inp.attributes), inp.matches,
                            params.outcomes,
                            params.treatment, truth, n_boot=params.n_boot, alpha=params.alpha,
                            seed=params.seed,
                            min_pairs=params.min_pairs, unit_files=inp.units)
    log.info("outcomes:\n%s", table.to_string())
    write_parquet(table, out[0])


def verification_bias_job(inp, out, params) -> None:
    """The verification_bias rule: same-identity verification by group, before and after matching."""
    from ganmatch.data.io import read_embedding, read_parquet, write_parquet

    ids, X = read_embedding(inp.embedding[0], inp.embedding[1])
    table = face_verification(read_parquet(inp.index), read_parquet(inp.attributes), ids, X, inp.matches,
                              params.treatment, threshold=params.threshold, n_boot=params.n_boot,
                              alpha=params.alpha,
                              seed=params.seed, unit_files=inp.units)
    log.info("verification:\n%s", table.to_string())
    write_parquet(table, out[0])
