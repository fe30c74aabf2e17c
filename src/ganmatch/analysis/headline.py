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
    """Per method: matched treated units, max |balance statistic| after matching, the effect estimate, its CI
    and whether it covers the truth; the naive estimate; the paper's method's penalised pairs."""
    out = []
    summary = pd.read_parquet(results / "balance/summary.parquet")
    smd = summary[summary["stat"] == "smd"].assign(value=lambda d: d["value"].abs())
    worst = smd.groupby(["method", "sample"])["value"].max()
    outcomes = pd.read_parquet(results / "outcomes.parquet")
    for r in outcomes[outcomes["outcome"] == outcome].itertuples(index=False):
        values = {"estimate": r.estimate, "ci_low": r.ci_low, "ci_high": r.ci_high,
                  "covers": float(bool(r.covers))}
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
    """The edit stage against the planted truth (`edit_metrics.demo_acceptance`): each direction's cosine with
    its planted one, the conditional edit's largest covariate shift, the share of faces crossing, the
    experimental effect."""
    from ganmatch.analysis.edit_metrics import demo_acceptance

    edits_dir = results / "edits"
    if not (edits_dir / "transects.parquet").exists():
        return []
    directions = pd.read_parquet(edits_dir / "directions.parquet")
    group = pd.read_parquet(edits_dir / "selection.parquet").set_index("image_id")[treatment]
    check = demo_acceptance(directions, pd.read_parquet(edits_dir / "edits.parquet"),
                            pd.read_parquet(edits_dir / "transects.parquet"), group, treatment, covariates)
    out = _rows("edit/cosine", check.get("cosines", {}))
    out += _rows("edit", {k: check.get(k) for k in ("max_covariate_shift", "share_crossed", "effect",
                                                    "ci_low",
                                                       "ci_high")})
    return out


def headline_numbers(results: str | os.PathLike, treatment: str, covariates: list[str]) -> pd.DataFrame:
    """(quantity, value) of a finished demo run in `results` (results/<dataset>)."""
    results = Path(results)
    rows = matching_numbers(results) + edit_numbers(results, treatment, covariates)
    return pd.DataFrame(rows, columns=["quantity", "value"])


def summarise_runs(long: pd.DataFrame, reference: dict) -> pd.DataFrame:
    """Per quantity over runs (`long`: setting, seed, quantity, value): min, median, max, the number of
    distinct values, and the value of the `reference` run ({"setting": ..., "seed": ...}); also the spread
    across settings within each seed (`kernel_spread`: max over seeds of max - min), which is 0 where the CPU
    does not matter."""
    groups = long.groupby("quantity")["value"]
    table = pd.DataFrame({"min": groups.min(), "median": groups.median(), "max": groups.max(),
                          "distinct": groups.apply(lambda v: int(v.round(12).nunique()))})
    per_seed = long.groupby(["quantity", "seed"])["value"].agg(lambda v: float(v.max() - v.min()))
    table["kernel_spread"] = per_seed.groupby("quantity").max()
    ref = long[(long["setting"] == reference["setting"]) & (long["seed"] == reference["seed"])]
    table["reference"] = ref.set_index("quantity")["value"]
    return table.reset_index()


def _array_gap(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(max |a - b|, share of entries that differ) of two arrays of one shape (inf, 1 when shapes differ)."""
    if a.shape != b.shape:
        return float("inf"), 1.0
    a, b = a.astype(np.float64), b.astype(np.float64)
    diff = np.abs(a - b)
    return float(np.nanmax(diff)) if diff.size else 0.0, float(np.mean(a != b)) if diff.size else 0.0


def stage_divergence(a: str | os.PathLike, b: str | os.PathLike) -> pd.DataFrame:
    """How far two runs of one config (e.g. under other CPU kernels) differ, stage by stage: per file group of
    results/<dataset>, the largest absolute difference and the share of entries (pixels, array entries, table
    cells, pairs) that differ. Groups: aligned photos, latents, embeddings, attributes, neighbours, matches,
    balance, outcomes, edits."""
    from PIL import Image

    a, b = Path(a), Path(b)
    rows = []

    def add(stage, files, gaps):
        gaps = list(gaps)
        if gaps:
            rows.append({"stage": stage, "files": files, "max_abs_diff": max(g[0] for g in gaps),
                         "share_differing": float(np.mean([g[1] for g in gaps]))})

    pngs = sorted(p.relative_to(a) for p in (a / "aligned").rglob("*.png"))
    add("alignment (aligned photos)", len(pngs),
        (_array_gap(np.asarray(Image.open(a / p)),
                    np.asarray(Image.open(b / p))) for p in pngs if (b / p).exists()))
    for stage, pattern in [("projection (latents)", "latents/*.npy"), ("embeddings", "embeddings/*.npy"),
                           ("edits (edited latents)", "edits/shard_*.npy")]:
        files = sorted(p.relative_to(a) for p in a.glob(pattern))
        add(stage, len(files), (_array_gap(np.load(a / p, allow_pickle=False), np.load(b / p,
                                                                                       allow_pickle=False))
                                for p in files if (b / p).exists()))
    for stage, pattern in [("attributes", "attributes*.parquet"), ("neighbours", "neighbours/*.parquet"),
                           ("matching (pairs)", "matches/*.parquet"), ("balance", "balance/*.parquet"),
                           ("outcomes", "outcomes.parquet"), ("edit tables", "edits/*.parquet")]:
        files = sorted(p.relative_to(a) for p in a.glob(pattern))
        add(stage, len(files), (_table_gap(pd.read_parquet(a / p), pd.read_parquet(b / p)) for p in files
                                if (b / p).exists()))
    return pd.DataFrame(rows)


def _table_gap(x: pd.DataFrame, y: pd.DataFrame) -> tuple[float, float]:
    """(max |difference| over numeric cells, share of cells that differ) of two tables (1 when shapes
    differ)."""
    if x.shape != y.shape or list(x.columns) != list(y.columns):
        return float("inf"), 1.0
    num = [c for c in x.columns
           if pd.api.types.is_numeric_dtype(x[c]) and not pd.api.types.is_bool_dtype(x[c])]
    gap = 0.0
    for c in num:
        d = np.abs(x[c].to_numpy(np.float64, na_value=np.nan) - y[c].to_numpy(np.float64, na_value=np.nan))
        if np.isfinite(d).any():
            gap = max(gap, float(np.nanmax(d)))
    differ = ~((x == y) | (x.isna() & y.isna()))
    return gap, float(differ.to_numpy().mean()) if differ.size else 0.0
