"""The numbers a run's conclusions rest on, as one long table: what the README quotes for the demo and what
`benchmarks/reproducibility.py` compares across CPUs, thread counts and seeds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd


def _rows(prefix: str, values: dict) -> list[tuple[str, float]]:
    return [(f"{prefix}/{k}", float(v)) for k, v in values.items() if v is not None and not pd.isna(v)]


def matching_numbers(results: Path, outcome: str = "outcome") -> list[tuple[str, float]]:
    """Per method: matched treated units, max |balance statistic| after matching, the effect estimate, its CI and
    whether it covers the truth; the naive estimate; the paper's method's penalised pairs."""
    out = []
    summary = pd.read_parquet(results / "balance/summary.parquet")
    smd = summary[summary["stat"] == "smd"].assign(value=lambda d: d["value"].abs())
    worst = smd.groupby(["method", "sample"])["value"].max()
    outcomes = pd.read_parquet(results / "outcomes.parquet")
    for r in outcomes[outcomes["outcome"] == outcome].itertuples(index=False):
        values = {"estimate": r.estimate, "ci_low": r.ci_low, "ci_high": r.ci_high, "covers": float(bool(r.covers))}
        if r.method == "naive":
            values["max_diff"] = worst.xs("unmatched", level="sample").max()
        else:
            values.update(pairs=r.n_pairs, max_diff=worst.get((r.method, "matched"), np.nan))
        out += _rows(r.method, values)
    constrained = results / "matches/gan_constrained.parquet"
    if constrained.exists():
        out += _rows("gan_constrained", {"penalised": pd.read_parquet(constrained)["penalised"].sum()})
    return out


def edit_numbers(results: Path, treatment: str, covariates: list[str]) -> list[tuple[str, float]]:
    """The edit stage against the planted truth (`edit_metrics.demo_acceptance`): each direction's cosine with its
    planted one, the conditional edit's largest covariate shift, the share of faces crossing, the experimental effect."""
    from ganmatch.analysis.edit_metrics import demo_acceptance

    edits_dir = results / "edits"
    if not (edits_dir / "transects.parquet").exists():
        return []
    directions = pd.read_parquet(edits_dir / "directions.parquet")
    group = pd.read_parquet(edits_dir / "selection.parquet").set_index("image_id")[treatment]
    check = demo_acceptance(directions, pd.read_parquet(edits_dir / "edits.parquet"),
                            pd.read_parquet(edits_dir / "transects.parquet"), group, treatment, covariates)
    out = _rows("edit/cosine", check.get("cosines", {}))
    out += _rows("edit", {k: check.get(k) for k in ("max_covariate_shift", "share_crossed", "effect", "ci_low",
                                                       "ci_high")})
    return out


def headline_numbers(results: str | os.PathLike, treatment: str, covariates: list[str]) -> pd.DataFrame:
    """(quantity, value) of a finished demo run in `results` (results/<dataset>)."""
    results = Path(results)
    rows = matching_numbers(results) + edit_numbers(results, treatment, covariates)
    return pd.DataFrame(rows, columns=["quantity", "value"])


def summarise_runs(long: pd.DataFrame, reference: dict) -> pd.DataFrame:
    """Per quantity over runs (`long`: setting, seed, quantity, value): min, median, max, the number of distinct
    values, and the value of the `reference` run ({"setting": ..., "seed": ...}); also the spread across
    settings within each seed (`kernel_spread`: max over seeds of max - min), which is 0 where the CPU does not matter."""
    groups = long.groupby("quantity")["value"]
    table = pd.DataFrame({"min": groups.min(), "median": groups.median(), "max": groups.max(),
                          "distinct": groups.apply(lambda v: int(v.round(12).nunique()))})
    per_seed = long.groupby(["quantity", "seed"])["value"].agg(lambda v: float(v.max() - v.min()))
    table["kernel_spread"] = per_seed.groupby("quantity").max()
    ref = long[(long["setting"] == reference["setting"]) & (long["seed"] == reference["seed"])]
    table["reference"] = ref.set_index("quantity")["value"]
    return table.reset_index()
