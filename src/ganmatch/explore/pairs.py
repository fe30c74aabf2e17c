"""Filter, sort and page a method's matched pairs (pure functions over the enriched pairs table)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

COVARIATE_FILTERS = {
    "same": "treated and control agree",
    "differ": "treated and control differ",
    "1": "both 1",
    "0": "both 0",
}
FLAG_FILTERS = {"yes": "yes", "no": "no"}
PER_PAGE = (25, 50, 100, 200)


@dataclass
class PairQuery:
    """What the pairs page asks for; every field already validated against the method's columns."""

    sort: str = "rank"
    descending: bool = False
    covariates: dict[str, str] = field(default_factory=dict)
    penalised: str | None = None
    gap_min: float | None = None
    gap_max: float | None = None
    dist_max: float | None = None
    same_identity: str | None = None
    image: str | None = None  # every row with this image id on either side (or as a reference)
    page: int = 1
    per_page: int = 50


def sort_keys(pairs: pd.DataFrame) -> list[str]:
    """Columns the pairs page may sort by."""
    keys = ["rank", "distance", "reference_gap", "treated_logit", "control_logit", "subclass", "weight"]
    keys += [c for c in pairs.columns if c.startswith(("dist_", "refdist_"))]
    return [k for k in keys if k in pairs.columns]


def filter_pairs(pairs: pd.DataFrame, q: PairQuery) -> pd.DataFrame:
    """Rows of `pairs` that pass every filter of `q`, sorted as asked (ties keep rank order)."""
    keep = np.ones(len(pairs), bool)
    for cov, how in q.covariates.items():
        t, c = pairs[f"t_{cov}"].to_numpy(float), pairs[f"c_{cov}"].to_numpy(float)
        keep &= {"same": t == c, "differ": t != c, "1": (t == 1) & (c == 1), "0": (t == 0) & (c == 0)}[how]
    if q.penalised is not None and "penalised" in pairs:
        flag = pairs["penalised"].fillna(False).to_numpy(bool)
        keep &= flag if q.penalised == "yes" else ~flag
    if "reference_gap" in pairs:
        gap = pairs["reference_gap"].to_numpy(float)
        if q.gap_min is not None:
            keep &= gap >= q.gap_min
        if q.gap_max is not None:
            keep &= gap <= q.gap_max
    if q.dist_max is not None:
        keep &= pairs["distance"].to_numpy(float) <= q.dist_max
    if q.same_identity is not None and "same_identity" in pairs:
        same = pairs["same_identity"].fillna(False).to_numpy(bool)
        keep &= same if q.same_identity == "yes" else ~same
    if q.image is not None:
        cols = [c for c in ("treated_id", "control_id", "treated_ref", "control_ref") if c in pairs]
        keep &= np.logical_or.reduce([pairs[c].to_numpy() == q.image for c in cols])
    out = pairs[keep]
    if q.sort != "rank" or q.descending:
        out = out.sort_values(
            [q.sort, "rank"], ascending=[not q.descending, True], kind="stable", na_position="last"
        )
    return out


def page_of(rows: pd.DataFrame, page: int, per_page: int) -> tuple[pd.DataFrame, int, int]:
    """(the rows of page `page`, clamped to the last page; that page number; the number of pages)."""
    n_pages = max(1, -(-len(rows) // per_page))
    page = min(max(1, page), n_pages)
    return rows.iloc[(page - 1) * per_page : page * per_page], page, n_pages
