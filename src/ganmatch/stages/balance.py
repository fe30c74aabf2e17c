"""Balance tables for one matching method: statistics, group means and sample sizes."""

from __future__ import annotations

import pandas as pd

from ..balance import balance_table, group_means, sample_sizes
from ..dataset import with_treatment
from ..matching import matched_weights


def method_balance(index: pd.DataFrame, attributes: pd.DataFrame, matches: pd.DataFrame, treatment: str,
                   covariates: list[str], threshold: float, method: str) -> dict[str, pd.DataFrame]:
    """Balance of `covariates` among the images of the attributes table, unmatched vs matched."""
    ids = attributes["image_id"].to_numpy(str)
    treated = with_treatment(index, attributes, treatment).set_index("image_id").loc[ids, treatment].to_numpy(int)
    cov = attributes[covariates].astype(float).reset_index(drop=True)
    weights = matched_weights(ids, matches)
    table = balance_table(cov, treated, weights, thresholds={"smd": threshold})
    out = {"table": table, "means": group_means(cov, treated, weights), "sizes": sample_sizes(treated, weights)}
    for df in out.values():
        df["method"] = method
    return out
