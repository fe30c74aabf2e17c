"""Balance tables for one matching method: statistics, group means and sample sizes."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ganmatch.analysis.balance import balance_table, group_means, sample_sizes, too_few_pairs
from ganmatch.data.dataset import with_treatment

log = logging.getLogger("ganmatch")


def unit_weights(units: pd.DataFrame, ids) -> np.ndarray:
    """The matching weights of `ids` from a units table (0 for images it does not weight)."""
    return units.set_index(units["image_id"].astype(str))["weight"].reindex(ids).fillna(0.0).to_numpy(np.float64)


def method_balance(index: pd.DataFrame, attributes: pd.DataFrame, units: pd.DataFrame, treatment: str,
                   covariates: list[str], threshold: float, method: str, min_pairs: int = 10) -> dict[str, pd.DataFrame]:
    """Balance of `covariates` among the images of the attributes table, unmatched vs weighted by the method's
    units table (pairs, subclasses or full matching alike); a method with fewer than `min_pairs` matched treated
    units is flagged 'too few pairs' (logged), never 'balanced'."""
    ids = attributes["image_id"].to_numpy(str)
    treated = with_treatment(index, attributes, treatment).set_index("image_id").loc[ids, treatment].to_numpy(int)
    cov = attributes[covariates].astype(float).reset_index(drop=True)
    weights = unit_weights(units, ids)
    table = balance_table(cov, treated, weights, thresholds={"smd": threshold}, min_pairs=min_pairs)
    few = too_few_pairs(int(((weights > 0) & (treated == 1)).sum()), min_pairs)
    if few:
        log.warning("method %s: %s; its balance is not judged (balance.min_pairs).", method, few)
    out = {"table": table, "means": group_means(cov, treated, weights), "sizes": sample_sizes(treated, weights)}
    for df in out.values():
        df["method"] = method
    return out


def balance_method_job(inp, out, params, method: str) -> None:
    """The balance_method rule: balance, group means and sample sizes of one method."""
    from ganmatch.data.io import read_parquet, write_parquet

    tables = method_balance(read_parquet(inp.index), read_parquet(inp.attributes), read_parquet(inp.units),
                            treatment=params.treatment, covariates=params.covariates, threshold=params.threshold,
                            min_pairs=params.min_pairs, method=method)
    log.info("balance:\n%s", tables["table"].query("stat == 'smd'").to_string())
    for key in ("table", "means", "sizes"):
        write_parquet(tables[key], out[key])


def balance_summary_job(inp, out) -> None:
    """The balance_summary rule: every method's balance table and group means, concatenated."""
    from ganmatch.data.io import read_parquet, write_parquet

    write_parquet(pd.concat([read_parquet(p) for p in inp.tables], ignore_index=True), out.table)
    write_parquet(pd.concat([read_parquet(p) for p in inp.means], ignore_index=True), out.means)
