"""Ceteris-paribus metrics of edits (target change, leakage, identity drift) and experimental transects.

Pure functions over the edit table (one row per image x direction x strength, see docs/architecture.md):
leakage is the change of every attribute's score in SDs of that score; identity drift is an embedding's
distance from the original to the edit over the embedding's same-person threshold; a transect is the
outcome's mean change along the treatment's (conditional) direction, with bootstrap intervals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def same_person_threshold(X: np.ndarray, identity, quantile: float = 0.95) -> float:
    """The `quantile` of distances between photos of the same identity: above it, two faces look like two
    people."""
    identity = pd.Series(np.asarray(identity).astype(str))
    dists = []
    for rows in identity.groupby(identity).indices.values():
        if len(rows) > 1:
            x = np.asarray(X[rows], np.float64)
            d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
            dists.append(d[np.triu_indices(len(rows), 1)])
    return float(np.quantile(np.concatenate(dists), quantile)) if dists else np.nan


def measured_attributes(edits: pd.DataFrame, prefix: str) -> list[str]:
    """Attribute names of the `<prefix><name>` columns of the edit table."""
    return [c[len(prefix):] for c in edits.columns if c.startswith(prefix)]


def leakage_table(edits: pd.DataFrame) -> pd.DataFrame:
    """Per edited direction, strength and measured attribute: the mean (and mean absolute) change and the
    share of images whose class flipped, from the latent models (`model`, change in SDs of the attribute's
    score), on real photos from the image attribute models on the rendered faces (`image`, probability points;
    age in years) and, on the demo, from the planted truth (`truth`, change in units of the attribute's
    separation)."""
    keys = ["direction", "attribute", "conditional_on", "strength"]
    parts = []
    for source, change, flip in (("model", "delta_", "flip_"), ("image", "image_delta_", "image_flip_"),
                                 ("truth", "true_delta_", "true_flip_")):
        for name in measured_attributes(edits, change):
            g = edits.groupby(keys, sort=False)
            part = pd.DataFrame({
                "mean_change": g[change + name].mean(),
                "mean_abs_change": g[change + name].apply(lambda v: float(np.abs(v).mean())),
                "share_flipped": g[flip + name].mean(),
                "n_images": g.size(),
            }).reset_index()
            part.insert(4, "measured", name)
            part.insert(5, "source", source)
            parts.append(part)
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*keys, "measured",
                                                                                  "source"])
    out["conditional"] = out["conditional_on"] != ""
    return out


def transects(edits: pd.DataFrame, direction: str, outcomes: list[str], n_boot: int = 2000,
              alpha: float = 0.05,
              random_state: int = 0, truth: dict | None = None) -> pd.DataFrame:
    """Experimental effect of moving along `direction` on each outcome evaluated on the edited latent/image.

    Per strength s: mean over images of outcome(edit s) - outcome(original) (kind `transect`). The
    experimental treatment effect (kind `experimental`, strength = the largest one) is the mean of outcome(+S)
    - outcome(-S): each face's treated version minus its control version. Bootstrap intervals resample images.
    """
    from ganmatch.analysis.outcomes import (
        paired_bootstrap_ci,  # scipy.stats: only the jobs that need it pay for it
    )

    sub = edits[edits["direction"] == direction]
    rows = []
    truth = truth or {}
    top = float(sub["strength"].abs().max()) if len(sub) else np.nan
    for name in outcomes:
        after, before = f"outcome_{name}", f"outcome_before_{name}"
        for s, g in sub.groupby("strength", sort=True):
            diff = (g[after] - g[before]).to_numpy(float)
            lo, hi = paired_bootstrap_ci(g[after], g[before], n_boot=n_boot, alpha=alpha,
                                         random_state=random_state)
            rows.append({"outcome": name, "kind": "transect", "strength": float(s),
                         "estimate": float(diff.mean()),
                         "ci_low": lo, "ci_high": hi, "n_images": len(diff)})
        wide = sub.pivot_table(index="image_id", columns="strength", values=after)
        if top in wide.columns and -top in wide.columns:
            both = wide[[top, -top]].dropna()
            diff = (both[top] - both[-top]).to_numpy(float)
            lo, hi = paired_bootstrap_ci(both[top], both[-top], n_boot=n_boot, alpha=alpha,
                                         random_state=random_state)
            rows.append({"outcome": name, "kind": "experimental", "strength": top,
                         "estimate": float(diff.mean()),
                         "ci_low": lo, "ci_high": hi, "n_images": len(diff)})
    out = pd.DataFrame(rows, columns=["outcome", "kind", "strength", "estimate", "ci_low", "ci_high",
                                      "n_images"])
    out.insert(1, "direction", direction)
    out["method"] = "edit"
    out["truth"] = out["outcome"].map(lambda c: float(truth[c]) if c in truth else np.nan)
    out.loc[out["kind"] == "transect", "truth"] = np.nan
    out["covers"] = (
        ((out["ci_low"] <= out["truth"]) & (out["truth"] <= out["ci_high"]))
        .astype("boolean")
        .mask(out["truth"].isna())
    )
    return out


def conditioned_on(direction: str) -> list[str]:
    """The attributes projected out of a direction id ('male|young,smiling' -> ['young', 'smiling'])."""
    return [a for a in direction.partition("|")[2].split(",") if a]


def change_transects(
    edits: pd.DataFrame,
    direction: str,
    columns: dict[str, str],
    n_boot: int = 2000,
    alpha: float = 0.05,
    random_state: int = 0,
) -> pd.DataFrame:
    """Mean of per-edit change columns along `direction`, per strength, with bootstrap intervals over images
    (kind `transect`, as `transects`): `columns` maps an outcome name to a column that already holds the
    change from the original (`true_delta_<a>`: planted truth; `image_delta_<a>`: image models on the rendered
    faces)."""
    from ganmatch.analysis.outcomes import paired_bootstrap_ci

    sub = edits[edits["direction"] == direction]
    rows = []
    for name, col in columns.items():
        for s, g in sub.groupby("strength", sort=True):
            change = g[col].to_numpy(float)
            lo, hi = paired_bootstrap_ci(
                change, np.zeros_like(change), n_boot=n_boot, alpha=alpha, random_state=random_state
            )
            rows.append(
                {
                    "outcome": name,
                    "kind": "transect",
                    "strength": float(s),
                    "estimate": float(change.mean()),
                    "ci_low": lo,
                    "ci_high": hi,
                    "n_images": len(change),
                }
            )
    out = pd.DataFrame(
        rows, columns=["outcome", "kind", "strength", "estimate", "ci_low", "ci_high", "n_images"]
    )
    out.insert(1, "direction", direction)
    out["method"] = "edit"
    return out


def with_observational(transect: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """The transect table plus the observational (naive and matched) estimates of the same outcomes."""
    obs = outcomes[outcomes["outcome"].isin(transect["outcome"])]
    obs = obs.assign(
        kind="observational",
        direction="",
        strength=np.nan,
        n_images=obs["n_treated"].fillna(0) + obs["n_control"].fillna(0),
    )
    cols = list(transect.columns)
    return pd.concat([transect, obs.reindex(columns=cols)], ignore_index=True)


def demo_acceptance(
    directions: pd.DataFrame,
    edits: pd.DataFrame,
    transects: pd.DataFrame,
    treated: pd.Series,
    treatment: str,
    covariates: list[str],
    outcome: str = "outcome",
) -> dict:
    """The demo's checks of the edit stage against its planted truth, as numbers.

    `min_planted_cosine` over the plain directions of the treatment and covariates; for the treatment's
    conditional edit at the largest strength, `max_covariate_shift` (largest mean |true change| of a
    covariate, in units of its separation) and `share_crossed` (images pushed towards the other group whose
    planted treatment changed sides); and the experimental effect on `outcome` with its interval and whether
    it covers the planted effect.
    """
    plain = directions[
        (directions["conditional_on"] == "") & directions["attribute"].isin([treatment, *covariates])
    ]
    cond = directions[
        (directions["attribute"] == treatment)
        & (directions["conditional_on"] != "")
        & (directions["row"] >= 0)
    ]
    out = {
        "min_planted_cosine": float(plain["planted_cosine"].min()),
        "cosines": plain.set_index("attribute")["planted_cosine"].round(3).to_dict(),
    }
    if len(cond):
        d = cond["direction"].iloc[0]
        top = edits["strength"].abs().max()
        ce = edits[(edits["direction"] == d) & (edits["strength"].abs() == top)]
        out["conditional_direction"] = d
        out["max_covariate_shift"] = float(max(ce[f"true_delta_{c}"].abs().mean() for c in covariates))
        out["max_covariate_shift_any_image"] = float(
            max(ce[f"true_delta_{c}"].abs().max() for c in covariates)
        )
        towards = ce[(ce["strength"] > 0) == (ce["image_id"].map(treated) == 0)]
        out["share_crossed"] = float(towards[f"true_flip_{treatment}"].mean())
    exp = transects[(transects["kind"] == "experimental") & (transects["outcome"] == outcome)]
    if len(exp):
        r = exp.iloc[0]
        out.update(
            effect=float(r["estimate"]),
            ci_low=float(r["ci_low"]),
            ci_high=float(r["ci_high"]),
            truth=float(r["truth"]),
            covers=bool(r["covers"]),
        )
    return out
