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
    """Neighbour table of the images that have a treatment value (images the identity policy dropped
    leave)."""
    treated = with_treatment(index, attributes,
                             treatment).set_index("image_id")[treatment].reindex(ids).to_numpy(float)
    keep = ~np.isnan(treated)
    if not keep.all():
        log.warning("%d images without a treatment value (dropped by identities.mixed_treatment) are left "
                    "out.",
                    int((~keep).sum()))
    return neighbour_table(ids[keep], X[keep], k=k, metric=metric, treated=treated[keep].astype(int))


def matrix_neighbours(index: pd.DataFrame, attributes: pd.DataFrame | None, path: str, treatment: str,
                      k: int) -> pd.DataFrame:
    """Neighbour table of the analysed images (those with a treatment value) read from a released matrix."""
    from ganmatch.analysis.matrices import DistanceMatrix, matrix_neighbour_table, open_matrix

    rows = with_treatment(index, attributes, treatment)
    rows = rows[rows[treatment].notna()]
    D = DistanceMatrix(open_matrix(path), rows["matrix_row"].to_numpy(np.int64), path=path)
    return matrix_neighbour_table(rows["image_id"].to_numpy(str), D, k, rows[treatment].to_numpy(int))


def compute_neighbours_job(inp, out, params) -> None:
    """The compute_neighbours rule: the neighbour table of one embedding."""
    attributes = read_parquet(inp.attributes) if "attributes" in inp.keys() else None
    if getattr(params, "matrix", None):   # a released distance matrix (paper_cache): memory-mapped
        table = matrix_neighbours(read_parquet(inp.index), attributes, params.matrix, params.treatment,
                                  params.distances["k"])
        log.info("%d neighbour rows from %s", len(table), params.matrix)
        write_parquet(table, out[0])
        return
    ids, X = read_embedding(inp.embedding[0], inp.embedding[1])
    table = embedding_neighbours(read_parquet(inp.index), attributes, ids, X, params.treatment,
                                 k=params.distances["k"], metric=params.metric)
    log.info("%d neighbour rows", len(table))
    write_parquet(table, out[0])
