"""Balance tables for one matching method: statistics, group means, sample sizes and cobalt's text report."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from ganmatch.analysis.balance import (
    ESTIMAND_S_D_DENOM,
    balance_table,
    group_means,
    resolve_s_d_denom,
    sample_sizes,
    too_few_pairs,
)
from ganmatch.analysis.balance_text import balance_text
from ganmatch.data.dataset import with_treatment
from ganmatch.errors import InputDataError
from ganmatch.matching import matched_weights

log = logging.getLogger("ganmatch")

DEFAULT_ESTIMAND = "ATT"  # what every matcher estimated before matching results carried their estimand


def match_info_path(matches: str | Path) -> Path:
    """The info JSON of a method's matches: matches/<name>.json beside matches/<name>.parquet."""
    return Path(matches).with_suffix(".json")


def matches_estimand(matches: str | Path) -> str:
    """The estimand a method's matches target: key `estimand` of their info JSON when the file and key exist,
    else the ATT. The one place the balance stage learns it."""
    path = match_info_path(matches)
    if not path.exists():
        return DEFAULT_ESTIMAND
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputDataError(f"{path}: not readable JSON ({err}); rerun the matching job that writes it.") from err
    estimand = info["estimand"] if isinstance(info, dict) and "estimand" in info else DEFAULT_ESTIMAND
    if estimand not in ESTIMAND_S_D_DENOM:
        raise InputDataError(f"{path}: key 'estimand' is '{estimand}', not one of {', '.join(ESTIMAND_S_D_DENOM)}.")
    return estimand


def method_balance(index: pd.DataFrame, attributes: pd.DataFrame, matches: pd.DataFrame, treatment: str,
                   covariates: list[str], threshold: float, method: str, min_pairs: int = 10,
                   estimand: str = DEFAULT_ESTIMAND, s_d_denom: str = "auto",
                   binary: str = "raw") -> dict[str, pd.DataFrame | str]:
    """Balance of `covariates` among the images of the attributes table, unmatched vs matched, as cobalt computes
    it for `estimand` (`s_d_denom`, `binary`: see `analysis.balance.balance_table`), and its text report ('text');
    a method with fewer than `min_pairs` matched treated units is flagged 'too few pairs' (logged), never 'balanced'."""
    ids = attributes["image_id"].to_numpy(str)
    treated = with_treatment(index, attributes, treatment).set_index("image_id").loc[ids, treatment].to_numpy(int)
    cov = attributes[covariates].astype(float).reset_index(drop=True)
    weights = matched_weights(ids, matches)
    table = balance_table(cov, treated, weights, thresholds={"smd": threshold}, min_pairs=min_pairs,
                          estimand=estimand, s_d_denom=s_d_denom, binary=binary)
    few = too_few_pairs(int(((weights > 0) & (treated == 1)).sum()), min_pairs)
    if few:
        log.warning("method %s: %s; its balance is not judged (balance.min_pairs).", method, few)
    out = {"table": table, "means": group_means(cov, treated, weights), "sizes": sample_sizes(treated, weights)}
    for df in out.values():
        df["method"] = method
    out["text"] = balance_text(table, out["sizes"], estimand, resolve_s_d_denom(s_d_denom, estimand), binary,
                               title=f"Balance of method '{method}' (treatment '{treatment}'; Un = before matching, "
                                     "Adj = after)")
    return out


def balance_method_job(inp, out, params, method: str) -> None:
    """The balance_method rule: balance, group means, sample sizes and the text report of one method."""
    from ganmatch.data.io import read_parquet, write_parquet, write_text

    tables = method_balance(read_parquet(inp.index), read_parquet(inp.attributes), read_parquet(inp.matches),
                            treatment=params.treatment, covariates=params.covariates, threshold=params.threshold,
                            min_pairs=params.min_pairs, method=method, estimand=matches_estimand(inp.matches),
                            s_d_denom=params.s_d_denom, binary=params.binary)
    log.info("balance (%s):\n%s", out.text, tables["text"])
    for key in ("table", "means", "sizes"):
        write_parquet(tables[key], out[key])
    write_text(tables["text"], out.text)


def balance_summary_job(inp, out) -> None:
    """The balance_summary rule: every method's balance table and group means, concatenated."""
    from ganmatch.data.io import read_parquet, write_parquet

    write_parquet(pd.concat([read_parquet(p) for p in inp.tables], ignore_index=True), out.table)
    write_parquet(pd.concat([read_parquet(p) for p in inp.means], ignore_index=True), out.means)
