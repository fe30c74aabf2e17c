"""Neighbours stage: exact kNN of one embedding, within the set and across treatment groups."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..dataset import with_treatment
from ..distances import neighbour_table

log = logging.getLogger("ganmatch")


def embedding_neighbours(index: pd.DataFrame, attributes: pd.DataFrame | None, ids: np.ndarray, X: np.ndarray,
                         treatment: str, k: int, metric: str = "euclidean") -> pd.DataFrame:
    """Neighbour table of the images that have a treatment value (images the identity policy dropped leave)."""
    treated = with_treatment(index, attributes, treatment).set_index("image_id")[treatment].reindex(ids).to_numpy(float)
    keep = ~np.isnan(treated)
    if not keep.all():
        log.warning("%d images without a treatment value (dropped by identities.mixed_treatment) are left out.",
                    int((~keep).sum()))
    return neighbour_table(ids[keep], X[keep], k=k, metric=metric, treated=treated[keep].astype(int))
