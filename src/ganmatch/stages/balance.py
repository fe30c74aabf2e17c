"""Balance tables for one matching method: statistics, group means, sample sizes and cobalt's text report."""

from __future__ import annotations

import logging

import numpy as np
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

log = logging.getLogger("ganmatch")

# what a matching result without an estimand column estimates (every matcher before issue 17)
DEFAULT_ESTIMAND = "ATT"


def table_estimand(table: pd.DataFrame) -> str:
    """The estimand a method's matching result targets: its column `estimand` (one value for the whole table)
    when present, else the ATT. The one place the balance stage learns it."""
    if "estimand" not in table.columns or len(table) == 0:
        return DEFAULT_ESTIMAND
    values = sorted(set(table["estimand"].astype(str)))
    if len(values) != 1 or values[0] not in ESTIMAND_S_D_DENOM:
        raise InputDataError(f"balance: the matching result's column 'estimand' holds {values}; expected one "
                             "of "
                             f"{', '.join(ESTIMAND_S_D_DENOM)} for the whole table. Rerun the matching job.")
    return values[0]


def unit_weights(units: pd.DataFrame, ids) -> np.ndarray:
    """The matching weights of `ids` from a units table (0 for images it does not weight)."""
    return (
        units.set_index(units["image_id"].astype(str))["weight"].reindex(ids).fillna(0.0).to_numpy(np.float64)
    )


def matching_note(units: pd.DataFrame) -> str:
    """What the matching job said about its matched sample (the units table's `note`, e.g. a ratio not met);
    ''."""
    if "note" not in units.columns:
        return ""
    notes = [n for n in dict.fromkeys(units["note"].fillna("").astype(str)) if n]
    return " ".join(notes)


def note_label(note: str) -> str:
    """The short form of a matching note for a status cell: 'gan: ratio 5 not met: ...' -> 'ratio 5 not
    met'."""
    parts = note.split(": ")
    return parts[1] if len(parts) > 2 else note


def method_balance(
    index: pd.DataFrame,
    attributes: pd.DataFrame,
    units: pd.DataFrame,
    treatment: str,
    covariates: list[str],
    threshold: float,
    method: str,
    min_pairs: int = 10,
    estimand: str = DEFAULT_ESTIMAND,
    s_d_denom: str = "auto",
    binary: str = "raw",
) -> dict[str, pd.DataFrame | str]:
    """Balance of `covariates` among the images of the attributes table, unmatched vs weighted by the method's
    units table (pairs, subclasses or full matching alike), as cobalt computes it for `estimand` (`s_d_denom`,
    `binary`: see `analysis.balance.balance_table`), and its text report ('text'); a method with fewer than
    `min_pairs` matched treated units is flagged 'too few pairs' (logged), never 'balanced'."""
    ids = attributes["image_id"].to_numpy(str)
    treated = (
        with_treatment(index, attributes, treatment).set_index("image_id").loc[ids, treatment].to_numpy(int)
    )
    cov = attributes[covariates].astype(float).reset_index(drop=True)
    weights = unit_weights(units, ids)
    s_weights = None
    # MatchIt's s.weights: the unmatched sample and the SDs are weighted too
    if "s_weight" in units.columns:
        s_weights = (
            units.set_index(units["image_id"].astype(str))["s_weight"]
            .reindex(ids)
            .fillna(0.0)
            .to_numpy(np.float64)
        )
    table = balance_table(
        cov,
        treated,
        weights,
        thresholds={"smd": threshold},
        min_pairs=min_pairs,
        estimand=estimand,
        s_d_denom=s_d_denom,
        binary=binary,
        s_weights=s_weights,
    )
    few = too_few_pairs(int(((weights > 0) & (treated == 1)).sum()), min_pairs)
    if few:
        log.warning("method %s: %s; its balance is not judged (balance.min_pairs).", method, few)
    note = matching_note(units)
    if note:  # e.g. a ratio that was not met: every matched row's status says so
        log.warning("method %s: %s", method, note)
        matched = (table["sample"] == "matched") & (table["status"] != "")
        table.loc[matched, "status"] = table.loc[matched, "status"] + "; " + note_label(note)
    out = {
        "table": table,
        "means": group_means(cov, treated, weights),
        "sizes": sample_sizes(treated, weights),
    }
    for df in out.values():
        df["method"] = method
    out["text"] = balance_text(
        table,
        out["sizes"],
        estimand,
        resolve_s_d_denom(s_d_denom, estimand),
        binary,
        title=f"Balance of method '{method}' (treatment '{treatment}'; Un = before matching, Adj = after)",
    )
    return out


def balance_method_job(inp, out, params, method: str) -> None:
    """The balance_method rule: balance, group means, sample sizes and the text report of one method."""
    from ganmatch.data.io import read_parquet, write_parquet, write_text

    units = read_parquet(inp.units)
    tables = method_balance(
        read_parquet(inp.index),
        read_parquet(inp.attributes),
        units,
        treatment=params.treatment,
        covariates=params.covariates,
        threshold=params.threshold,
        min_pairs=params.min_pairs,
        method=method,
        estimand=table_estimand(units),
        s_d_denom=params.s_d_denom,
        binary=params.binary,
    )
    log.info("balance (%s):\n%s", out.text, tables["text"])
    for key in ("table", "means", "sizes"):
        write_parquet(tables[key], out[key])
    write_text(tables["text"], out.text)


def balance_summary_job(inp, out) -> None:
    """The balance_summary rule: every method's balance table and group means, concatenated."""
    from ganmatch.data.io import read_parquet, write_parquet

    write_parquet(pd.concat([read_parquet(p) for p in inp.tables], ignore_index=True), out.table)
    write_parquet(pd.concat([read_parquet(p) for p in inp.means], ignore_index=True), out.means)
