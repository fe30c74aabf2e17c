"""Retrieval quality of the neighbour tables (the paper's nearest-neighbour table): how often the nearest
photos show another person, and how far their attributes differ."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ganmatch.errors import InputDataError


def retrieval_quality(neighbours: pd.DataFrame, identity: pd.Series, attributes: pd.DataFrame,
                      ks=(1, 5, 10)) -> pd.DataFrame:
    """The paper's nearest-neighbour table for one embedding, one row per scope of `neighbours`.

    - err_top<k>: among queries whose identity has another photo, the fraction with no photo of their
      identity among their k nearest neighbours (retrieval top-k error; falls as k grows, as reported);
    - other_top<k>: the fraction of all top-k neighbour rows that show another identity;
    - diff_<attribute>: mean |attribute(query) - attribute(nearest neighbour)|.
    `identity` is indexed by image id; `attributes` is indexed by image id or has an image_id column.
    """
    need = {"query", "neighbour", "rank"}
    if not need <= set(neighbours.columns):
        raise InputDataError("retrieval_quality: neighbours table lacks "
                             f"{sorted(need - set(neighbours.columns))}.")
    identity = identity.astype(str)
    if "image_id" in attributes.columns:
        attributes = attributes.set_index("image_id")
    attributes = attributes.apply(pd.to_numeric, errors="coerce")
    attributes = attributes.loc[:, attributes.notna().any()]
    missing = set(neighbours["query"]) - set(identity.index)
    if missing:
        raise InputDataError(f"retrieval_quality: {len(missing)} query ids have no identity (e.g. "
                             f"{sorted(missing)[:3]}).")
    counts = identity.value_counts()
    scopes = neighbours["scope"].unique() if "scope" in neighbours else [None]
    rows = []
    for scope in scopes:
        nb = neighbours if scope is None else neighbours[neighbours["scope"] == scope]
        q_id = identity.reindex(nb["query"].to_numpy()).to_numpy()
        n_id = identity.reindex(nb["neighbour"].to_numpy()).to_numpy()
        same = pd.Series(q_id == n_id, index=nb.index)
        rank = nb["rank"].to_numpy()
        row = {"scope": scope if scope is not None else "all", "n_queries": int(nb["query"].nunique())}
        has_other = counts.reindex(q_id).to_numpy() >= 2
        for k in ks:
            top = rank <= k
            row[f"other_top{k}"] = float(1.0 - same[top].mean()) if top.any() else np.nan
            hit = pd.Series(same.to_numpy() & top).groupby(nb["query"].to_numpy()).any()
            eligible = pd.Series(has_other & top).groupby(nb["query"].to_numpy()).any()
            hit = hit[eligible[eligible].index]
            row[f"err_top{k}"] = float(1.0 - hit.mean()) if len(hit) else np.nan
        first = nb[rank == 1]
        a_q = attributes.reindex(first["query"].to_numpy()).to_numpy(np.float64)
        a_n = attributes.reindex(first["neighbour"].to_numpy()).to_numpy(np.float64)
        for j, col in enumerate(attributes.columns):
            diff = np.abs(a_q[:, j] - a_n[:, j])
            row[f"diff_{col}"] = float(np.nanmean(diff)) if np.isfinite(diff).any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def retrieval_quality_table(neighbours: dict[str, pd.DataFrame], identity: pd.Series,
                            attributes: pd.DataFrame,
                            ks=(1, 5, 10)) -> pd.DataFrame:
    """`retrieval_quality` for every embedding ({name: neighbour table}), stacked with an `embedding` column
    first."""
    frames = [retrieval_quality(nb, identity, attributes, ks=ks).assign(embedding=name) for name,
              nb in neighbours.items()]
    out = pd.concat(frames, ignore_index=True)
    return out[["embedding", *[c for c in out.columns if c != "embedding"]]]
