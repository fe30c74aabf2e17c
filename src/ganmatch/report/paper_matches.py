"""ganmatch's matches beside the reference study's released precomputed matches, pair for pair: which pairs
are the same at the same place of the matching order, which are the same anywhere, and whether the references
agree."""

from __future__ import annotations

import numpy as np
import pandas as pd

PAIR_COLUMNS = [
    "method",
    "order",
    "released_treated",
    "released_control",
    "released_treated_ref",
    "released_control_ref",
    "released_distance",
    "treated_id",
    "control_id",
    "treated_ref",
    "control_ref",
    "distance",
    "same_pair",
    "pair_anywhere",
    "same_refs",
]


def _ids(ids: np.ndarray, pos: np.ndarray) -> np.ndarray:
    pos = np.asarray(pos, np.int64)
    return np.where(pos >= 0, ids[np.clip(pos, 0, len(ids) - 1)], "")


def compare_matches(method: str, ours: pd.DataFrame, released: pd.DataFrame, ids: np.ndarray) -> pd.DataFrame:
    """One row per matching position (the longer of the two lists): the released pair (image ids; `released`
    from `ganmatch.data.paper_cache.released_matches`, positions into `ids`) beside ours at the same position.
    `same_pair`: the same (treated, control) at this position; `pair_anywhere`: the released pair is among
    ours; `same_refs`: the same pair with the same reference photos (NA where the release has no
    references)."""
    ids = np.asarray(ids).astype(str)
    n = max(len(ours), len(released))
    rel = released.reindex(range(n))
    mine = ours.reset_index(drop=True).reindex(range(n))
    out = pd.DataFrame({"method": method, "order": np.arange(1, n + 1)})
    for col, src in (
        ("released_treated", "treated_pos"),
        ("released_control", "control_pos"),
        ("released_treated_ref", "treated_ref"),
        ("released_control_ref", "control_ref"),
    ):
        out[col] = _ids(ids, rel[src].fillna(-1).to_numpy(np.int64))
    out["released_distance"] = rel["distance"].to_numpy(np.float64)
    for col in ("treated_id", "control_id", "treated_ref", "control_ref"):
        out[col] = mine[col].fillna("").astype(str).to_numpy() if col in mine else ""
    out["distance"] = mine["distance"].to_numpy(np.float64) if "distance" in mine else np.nan
    has_rel = out["released_treated"] != ""
    out["same_pair"] = (
        has_rel
        & (out["released_treated"] == out["treated_id"])
        & (out["released_control"] == out["control_id"])
    )
    ours_set = set(zip(out["treated_id"], out["control_id"], strict=True))
    out["pair_anywhere"] = has_rel & np.array(
        [p in ours_set for p in zip(out["released_treated"], out["released_control"], strict=True)]
    )
    known = out["released_treated_ref"] != ""
    same = (
        out["same_pair"]
        & (out["released_treated_ref"] == out["treated_ref"])
        & (out["released_control_ref"] == out["control_ref"])
    )
    out["same_refs"] = pd.array(np.where(known, same, False), dtype="boolean")
    out.loc[~known, "same_refs"] = pd.NA
    return out[PAIR_COLUMNS]


def summarise(pairs: pd.DataFrame, released_files: dict[str, str]) -> pd.DataFrame:
    """Per method: released and own pair counts, pairs identical at the same position (and their share of the
    released pairs), released pairs found anywhere in ours, identical references, and the first position where
    the two lists differ (0: none)."""
    rows = []
    for method, g in pairs.groupby("method", sort=False):
        n_rel = int((g["released_treated"] != "").sum())
        n_ours = int((g["treated_id"] != "").sum())
        diff = g.loc[~g["same_pair"], "order"]
        refs = g["same_refs"].dropna()
        rows.append(
            {
                "method": method,
                "released_file": released_files.get(method, ""),
                "n_released": n_rel,
                "n_ours": n_ours,
                "n_same_position": int(g["same_pair"].sum()),
                "share_same_position": float(g["same_pair"].sum() / n_rel) if n_rel else np.nan,
                "n_pair_anywhere": int(g["pair_anywhere"].sum()),
                "n_same_refs": int(refs.sum()) if len(refs) else -1,
                "first_difference": int(diff.iloc[0]) if len(diff) else 0,
            }
        )
    return pd.DataFrame(rows)


def headline(summary: pd.DataFrame) -> str:
    """One sentence per method, e.g. 'gan_constrained: 1200 of 1200 released pairs identical, in the same
    order'."""
    lines = []
    for r in summary.itertuples():
        same = f"{r.n_same_position} of {r.n_released} released pairs identical at the same position"
        anywhere = f"{r.n_pair_anywhere} found anywhere among our {r.n_ours}"
        refs = f"; references identical for {r.n_same_refs}" if r.n_same_refs >= 0 else ""
        first = (
            f"; the lists first differ at pair {r.first_difference}"
            if r.first_difference
            else "; the lists are identical"
        )
        lines.append(f"{r.method}: {same}, {anywhere}{refs}{first}.")
    return "\n".join(lines)


def summary_markdown(summary: pd.DataFrame) -> str:
    """The comparison as a Markdown table with the headline above it."""
    cols = [
        "method",
        "n_released",
        "n_ours",
        "n_same_position",
        "share_same_position",
        "n_pair_anywhere",
        "n_same_refs",
        "first_difference",
        "released_file",
    ]
    lines = [
        "# ganmatch's matches beside the reference study's released matches",
        "",
        headline(summary),
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for r in summary[cols].itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r) + " |")
    return "\n".join(lines) + "\n"
