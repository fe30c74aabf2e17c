"""Neighbours stage: exact kNN of one embedding, within the set and across treatment groups."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ganmatch.analysis.neighbours import neighbour_table
from ganmatch.data.dataset import with_treatment
from ganmatch.data.io import read_embedding, read_parquet, write_parquet

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


def compute_neighbours_job(inp, out, params) -> None:
    """The compute_neighbours rule: the neighbour table of one embedding."""
    attributes = read_parquet(inp.attributes) if "attributes" in inp.keys() else None
    ids, X = read_embedding(inp.embedding[0], inp.embedding[1])
    table = embedding_neighbours(read_parquet(inp.index), attributes, ids, X, params.treatment,
                                 k=params.distances["k"], metric=params.metric)
    log.info("%d neighbour rows", len(table))
    write_parquet(table, out[0])
