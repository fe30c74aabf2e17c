"""Attributes stage: labels where present, predictions otherwise, then the identity policy on the
treatment."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ganmatch.analysis.attributes import attributes_table
from ganmatch.data.dataset import check_treatment_resolved, mixed_treatment_identities
from ganmatch.errors import InputDataError

log = logging.getLogger("ganmatch")


def apply_identity_policy(table: pd.DataFrame, index: pd.DataFrame, treatment: str,
                          policy: str = "stop") -> pd.DataFrame:
    """Resolve identities whose photos carry both treatment values (config key identities.mixed_treatment).

    stop: raise, listing them; majority: every photo takes the identity's majority value (ties leave the
    analysis); drop: their photos leave the analysis; allow: keep them (matching may then pair two photos of
    one person; the matches flag such pairs `same_identity`). The attributes table defines the analysed
    images, so dropping a row here removes the photo from matching, balance and outcomes alike.
    """
    ids = table["image_id"].astype(str).to_numpy()
    rows = index.astype({"image_id": str}).set_index("image_id").loc[ids]
    treated = (
        table[treatment].to_numpy(float) if treatment in table.columns else rows[treatment].to_numpy(float)
    )
    identity = rows["identity"].astype(str).to_numpy()
    mixed = mixed_treatment_identities(identity, treated)
    if not len(mixed):
        return table
    counts = pd.DataFrame({"identity": identity, "t": treated})[np.isin(identity, mixed)].groupby("identity")[
        "t"
    ]
    listing = ", ".join(
        f"{i} ({int(n1)} treated / {int(n - n1)} control)"
        for i, n1, n in zip(counts.sum().index[:10], counts.sum()[:10], counts.size()[:10], strict=True)
    )
    what = (
        f"{len(mixed)} identit{'y carries' if len(mixed) == 1 else 'ies carry'} both values of the "
        "treatment "
        f"'{treatment}' across their photos: {listing}{' ...' if len(mixed) > 10 else ''}"
    )
    if policy == "stop":
        raise InputDataError(
            f"{what}.\nFix the labels (or the identities), or set "
            "identities.mixed_treatment to majority, "
            "drop or allow."
        )
    in_mixed = np.isin(identity, mixed)
    if policy == "allow":
        log.warning(
            "%s; kept (identities.mixed_treatment: allow): matches may pair two photos of one person "
            "and flag "
            "them same_identity.",
            what,
        )
        return table
    if policy == "drop":
        log.warning(
            "%s; their %d photos are dropped (identities.mixed_treatment: drop).", what, int(in_mixed.sum())
        )
        return table[~in_mixed].reset_index(drop=True)
    share = pd.Series(treated).groupby(identity).transform("mean").to_numpy()
    tie = in_mixed & (share == 0.5)
    out = table.copy()
    out[treatment] = np.where(in_mixed, (share > 0.5).astype(float), treated)
    out[f"{treatment}_source"] = np.where(
        in_mixed, "identity majority", out.get(f"{treatment}_source", "label")
    )
    log.warning(
        "%s; each takes its majority value (identities.mixed_treatment: majority), %d photos of tied "
        "identities "
        "are dropped.",
        what,
        int(tie.sum()),
    )
    return out[~tie].reset_index(drop=True)


def attribute_tables(
    index: pd.DataFrame,
    ids: np.ndarray,
    X: np.ndarray,
    covariates: list[str],
    treatment: str,
    attributes: dict,
    seed: int,
    predictions: pd.DataFrame | None = None,
    mixed_treatment: str = "stop",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The attributes table (label > face-model prediction > latent model) and the CV table."""
    table, cv = attributes_table(
        index,
        ids,
        X,
        covariates,
        C=attributes["C"],
        cv_folds=attributes["cv_folds"],
        random_state=seed,
        predictions=predictions,
        treatment=treatment,
    )
    if treatment in table.columns:
        check_treatment_resolved(table[treatment], treatment)
    return apply_identity_policy(table, index, treatment, mixed_treatment), cv


def predict_attributes_job(inp, out, params) -> None:
    """The predict_attributes rule: the attributes table and the attribute models' CV table."""
    from ganmatch.data.io import read_embedding, read_parquet, write_parquet

    face = read_parquet(inp.face_attributes) if "face_attributes" in inp.keys() else None
    ids, X = read_embedding(inp.embedding[0], inp.embedding[1])
    table, cv = attribute_tables(
        read_parquet(inp.index),
        ids,
        X,
        params.covariates,
        params.treatment,
        params.attributes,
        params.seed,
        predictions=face,
        mixed_treatment=params.mixed_treatment,
    )
    log.info("attribute models:\n%s", cv.to_string())
    write_parquet(table, out.table)
    write_parquet(cv, out.cv)
