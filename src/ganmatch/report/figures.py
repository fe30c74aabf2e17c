"""The paper's figures, drawn from the pipeline's tables; each writes PDF/PNG and returns the numbers it drew.

Every figure function is pure apart from writing its two image files (and, for image grids, reading image
files): it takes DataFrames/arrays and output paths and returns a tidy DataFrame of what is on the plot,
which the workflow writes next to the figure. Colours per group and method come from `ganmatch.report.plots`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter

from ganmatch.analysis.balance import difference_axis_label
from ganmatch.errors import InputDataError
from ganmatch.report.plots import (
    BEFORE_COLOUR,
    GROUP_CODES,
    GROUP_COLOURS,
    SAMPLE_STYLE,
    group_labels,
    histogram,
    method_styles,
    panel_columns,
    panel_grid,
    place_above,
    plt,
    pretty,
    save_figure,
    shorten,
    show_image,
    wrap,
)

RELATION_COLOURS = {"same identity": "#2c7fb8", "different identity": "#969696"}
EMBEDDING_PALETTE = ["#66c2a5", "#fc8d62", "#8da0cb", "#e78ac3", "#a6d854", "#ffd92f"]


def write_csv(df: pd.DataFrame, path: str) -> None:
    """Write a figure's numbers as CSV atomically (for tables readers open in a spreadsheet)."""
    from ganmatch.data.io import atomic_path

    with atomic_path(path, ".csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")


def _need(df: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputDataError(f"{what}: table lacks column(s) {missing}.")


# ---------------------------------------------------------------- balance


def covariate_means(means: pd.DataFrame, pdf: str, png: str | None = None, treatment: str = "treated",
                    summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """Covariate means per group, before (unmatched) and after (matched) matching, with 95% intervals.

    One panel per matching method, as in the paper's main figure; `means` is balance.group_means output (group
    "control"/"treated" or 0/1) with a `method` column; its intervals for proportions are Wilson intervals, so
    they stay inside the [0, 1] axis. A method the balance table (`summary`) marks "too few pairs" is marked
    as in the love plot: hollow markers after matching and the status in its panel's title.
    """
    _need(means, ["covariate", "group", "sample", "mean", "ci_low", "ci_high", "method"], "covariate_means")
    flags = method_flags(summary[summary["stat"] == "smd"]) if summary is not None else {}
    labels = group_labels(treatment)
    code = means["group"].map(GROUP_CODES)
    methods = list(dict.fromkeys(means["method"]))
    covs = list(dict.fromkeys(means["covariate"]))
    fig, axes = panel_grid(len(methods), panel=(0.4 + 1.0 * len(covs), 3.4), extra_width=2.5, sharey=True)
    x = np.arange(len(covs))
    offsets = dict(zip([("unmatched", 0), ("unmatched", 1), ("matched", 0), ("matched", 1)], (-0.27, -0.09,
                                                                                              0.09, 0.27),
                       strict=True))
    for ax, method in zip(axes, methods, strict=True):
        sub = means[means["method"] == method]
        flag = flags.get(method, "")
        for (sample, group), dx in offsets.items():
            rows = (
                sub[(sub["sample"] == sample) & (code[sub.index] == group)]
                .set_index("covariate")
                .reindex(covs)
            )
            y = rows["mean"].to_numpy(float)
            err = np.vstack([y - rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float) - y])
            hollow = {"markerfacecolor": "none"} if flag and sample == "matched" else {}
            ax.errorbar(
                x + dx,
                y,
                yerr=np.maximum(np.nan_to_num(err), 0),
                linestyle="none",
                capsize=2,
                color=GROUP_COLOURS[group],
                label=f"{labels[group]}, {'before' if sample == 'unmatched' else 'after'} matching",
                **SAMPLE_STYLE[sample],
                **hollow,
            )
        ax.set_xticks(x, [wrap(c, 12) for c in covs], fontsize=8)
        ax.set_title(
            wrap(method, 40) + (f"\n[{wrap(flag, 40)}: not judged]" if flag else ""),
            fontsize=10,
            color="#b2182b" if flag else "black",
        )
        ax.set_ylim(-0.05, 1.05)
        ax.grid(axis="y", alpha=0.3)
    cols = panel_columns(len(axes))
    for ax in axes[::cols]:
        ax.set_ylabel("mean of covariate\n(fraction with attribute)")
    axes[cols - 1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    fig.suptitle(
        "Covariate means per group before and after matching\n(95% intervals; Wilson for proportions)",
        fontsize=10,
    )
    save_figure(fig, pdf, png)
    return means.reset_index(drop=True)


def love_plot(
    summary: pd.DataFrame, pdf: str, png: str | None = None, threshold: float | None = None
) -> pd.DataFrame:
    """|Mean difference| per covariate before and after matching, one marker per method, with the balance
    threshold line; the x axis says whether the differences are standardised (by which SD) or raw
    (`difference_axis_label`).

    `summary` is balance/summary.parquet (long, with `method`); `threshold` defaults to the table's `smd`
    threshold. Returns covariate, method, sample, smd, abs_smd, threshold.
    """
    _need(summary, ["covariate", "stat", "sample", "value", "method"], "love_plot")
    smd = summary[summary["stat"] == "smd"]
    if smd.empty:
        raise InputDataError("love_plot: the balance table has no 'smd' rows.")
    if threshold is None:
        thr = smd["threshold"].dropna() if "threshold" in smd else pd.Series(dtype=float)
        threshold = float(thr.iloc[0]) if len(thr) else 0.1
    data = pd.DataFrame(
        {
            "covariate": smd["covariate"].to_numpy(),
            "method": smd["method"].to_numpy(),
            "sample": smd["sample"].to_numpy(),
            "smd": smd["value"].to_numpy(float),
        }
    )
    data["abs_smd"] = data["smd"].abs()
    data["threshold"] = float(threshold)
    data["status"] = smd["status"].to_numpy() if "status" in smd else ""
    before = data[data["sample"] == "unmatched"].groupby("covariate", sort=False)["abs_smd"].max()
    covs = list(before.sort_values().index) + [
        c for c in dict.fromkeys(data["covariate"]) if c not in before.index
    ]
    y = {c: i for i, c in enumerate(covs)}
    methods = list(dict.fromkeys(data["method"]))
    styles = method_styles(methods)
    fig, ax = plt.subplots(figsize=(6.2, 1.2 + 0.42 * len(covs)))
    ax.axvline(
        threshold,
        color="k",
        linestyle="--",
        linewidth=1,
        label=f"|difference| = {threshold:g} (balance threshold)",
    )
    b = data[data["sample"] == "unmatched"].drop_duplicates(["covariate", "abs_smd"])
    ax.scatter(
        b["abs_smd"],
        b["covariate"].map(y),
        s=40,
        facecolors="none",
        edgecolors=BEFORE_COLOUR,
        linewidths=1.5,
        label="before matching",
        zorder=3,
    )
    span = 0.5 / max(1, len(methods))
    flags = method_flags(smd)
    for k, method in enumerate(methods):
        a = data[(data["sample"] == "matched") & (data["method"] == method)]
        dy = (k - (len(methods) - 1) / 2) * span if len(methods) > 1 else 0.0
        flag = flags.get(method, "")
        colour = styles[method]["color"]
        ax.scatter(
            a["abs_smd"],
            a["covariate"].map(y) + dy,
            s=36,
            marker=styles[method]["marker"],
            zorder=4,
            facecolors="none" if flag else colour,
            edgecolors=colour,
            label=f"after matching: {pretty(method)}" + (f" [{flag}: not judged]" if flag else ""),
        )
    ax.set_yticks(range(len(covs)), [pretty(c) for c in covs])
    ax.set_ylim(-0.6, len(covs) - 0.4)
    ax.set_xlim(
        left=0,
        right=max(float(np.nanmax(data["abs_smd"].replace(np.inf, np.nan).to_numpy(), initial=0)), threshold)
        * 1.1
        + 0.02,
    )
    ax.set_xlabel(difference_axis_label(smd))
    ax.set_title("Covariate balance before and after matching (love plot)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    save_figure(fig, pdf, png)
    return data


def method_flags(smd: pd.DataFrame) -> dict[str, str]:
    """method -> its matched sample's 'too few pairs (...)' status, for methods the balance stage did not
    judge."""
    if "status" not in smd:
        return {}
    few = smd[(smd["sample"] == "matched") & smd["status"].astype(str).str.startswith("too few pairs")]
    return dict(zip(few["method"], few["status"], strict=True))


_method_flags = method_flags  # the name tests of the balance stage use


def sample_weights(ids, table: pd.DataFrame) -> np.ndarray:
    """Matching weights of `ids` from a units table (image_id, weight) or, failing that, a pairs table."""
    if {"image_id", "weight"} <= set(table.columns):
        return (
            table.set_index(table["image_id"].astype(str))["weight"].reindex(ids).fillna(0.0).to_numpy(float)
        )
    from ganmatch.matching import matched_weights

    return matched_weights(ids, table)


def propensity_overlap(
    attributes: pd.DataFrame,
    treated: pd.Series,
    covariates: list[str],
    matches: Mapping[str, pd.DataFrame],
    pdf: str,
    png: str | None = None,
    treatment: str = "treated",
    bins: int = 20,
    scores: pd.Series | None = None,
    score_label: str = "P(treated | covariates), logistic regression",
) -> pd.DataFrame:
    """Propensity-score distributions of the two groups before matching and after each method (mirrored).

    The score is `scores` (propensity by image_id; the workflow passes the ones its `propensity` method
    matched on, as it wrote them to matches/units/<name>.parquet; images without one are not drawn), else
    fitted here on the `covariates` (`matching.propensity_scores`). Every panel shows the same score
    (described by `score_label` in the title); matched samples are weighted by each method's units table (its
    `weight` per image_id; a pairs table is weighted as in the ATT, `matching.matched_weights`). Returns
    image_id, group, propensity, sample, weight (rows with weight > 0 and a score).
    """
    _need(attributes, ["image_id", *([] if scores is not None else covariates)], "propensity_overlap")
    ids = attributes["image_id"].astype(str).to_numpy()
    treated = treated.copy()
    treated.index = treated.index.astype(str)
    t = treated.reindex(ids).to_numpy()
    if pd.isna(t).any():
        raise InputDataError("propensity_overlap: some attribute rows have no treatment value in the index.")
    t = t.astype(int)
    if scores is None:
        from ganmatch.matching import propensity_scores

        score = propensity_scores(attributes[covariates], t)
    else:
        scores = pd.Series(np.asarray(scores, float), index=scores.index.astype(str))
        if scores.index.has_duplicates:
            raise InputDataError("propensity_overlap: the propensity scores name some image more than once.")
        score = scores.reindex(ids).to_numpy()
        if np.isnan(score).all():
            raise InputDataError("propensity_overlap: no attribute row has a propensity score.")
    scored = ~np.isnan(score)
    n_unscored = int((~scored).sum())
    if n_unscored:
        warnings.warn(
            f"propensity_overlap: {n_unscored} image(s) have no propensity score and are not drawn.",
            stacklevel=2,
        )
    samples = [("unmatched", "before matching", np.ones(len(ids)), BEFORE_COLOUR)]
    styles = method_styles(matches)
    samples += [
        (m, wrap(f"after matching: {m}", 36), sample_weights(ids, p), styles[m]["color"])
        for m, p in matches.items()
    ]
    labels = group_labels(treatment)
    edges = np.linspace(0, 1, bins + 1)
    fig, axes = panel_grid(len(samples), panel=(3.0, 2.9), sharey=True)
    rows = []
    for ax, (name, title, w, colour) in zip(axes, samples, strict=True):
        for g, sign in ((1, 1), (0, -1)):
            sel = (t == g) & (w > 0) & scored
            dens = histogram(score[sel], edges, w[sel])
            ax.bar(
                edges[:-1],
                sign * dens,
                width=np.diff(edges),
                align="edge",
                color=GROUP_COLOURS[g],
                alpha=0.8,
                label=f"{labels[g]} (n = {int(sel.sum())})",
            )
            rows.append(
                pd.DataFrame(
                    {
                        "image_id": ids[sel],
                        "group": "treated" if g else "control",
                        "propensity": score[sel],
                        "sample": name,
                        "weight": w[sel],
                    }
                )
            )
        ax.axhline(0, color="k", linewidth=0.8)
        ax.set_xlim(-0.03, 1.03)  # a margin keeps neighbouring panels' 1.0 and 0.0 labels apart
        ax.set_title(title, fontsize=9, color=colour)
        ax.set_xlabel("propensity score")
        # below: never on bars
        ax.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    for ax in axes[:: panel_columns(len(axes))]:
        ax.set_ylabel(f"density ({wrap(labels[1], 24)} up,\n{wrap(labels[0], 24)} down)")
    axes[0].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{abs(v):g}"))  # shared by every panel
    unscored = f"\n({n_unscored} image(s) without a score not drawn)" if n_unscored else ""
    fig.suptitle(f"Propensity-score overlap by group\nscore = {score_label}{unscored}", fontsize=10)
    save_figure(fig, pdf, png)
    return pd.concat(rows, ignore_index=True)


# ---------------------------------------------------------------- matched samples


def matched_counts(table: pd.DataFrame) -> dict:
    """Treated, controls and subclasses of a method's matched sample, and whether it is 1:1 pairs.

    `table` is the method's units table (image_id, treated, weight, subclass: MatchIt's per-unit output) or,
    lacking one, its pairs table (treated_id, control_id, subclass, weight). The sample is 1:1 pairs when
    every subclass holds one treated and one control image, all with weight 1; full matching,
    subclassification and k:1 or with-replacement matching are not, and are counted as treated, controls and
    subclasses.
    """
    if {"treated", "weight"} <= set(table.columns):
        m = table[table["weight"].to_numpy(float) > 0]
        t = m["treated"].to_numpy(int) == 1
        n_t, n_c = int(t.sum()), int((~t).sum())
        sub = m["subclass"].dropna() if "subclass" in m else pd.Series(dtype=object)
        n_sub = int(sub.nunique())
        unit_weights = bool(np.allclose(m["weight"].to_numpy(float), 1.0))
        pairs = unit_weights and n_t == n_c and (n_sub == n_t or "subclass" not in m)
    else:
        _need(table, ["treated_id", "control_id"], "matched_counts")
        n_t, n_c = int(table["treated_id"].nunique()), int(table["control_id"].nunique())
        n_sub = int(table["subclass"].nunique()) if "subclass" in table else 0
        pairs = len(table) == n_t == n_c
    return {"n_treated": n_t, "n_control": n_c, "n_subclasses": n_sub, "pairs": bool(pairs)}


def counts_label(counts: dict) -> str:
    """'57 pairs' for 1:1 matching, else '104 treated, 299 controls in 19 subclasses' (MatchIt's sample
    sizes)."""
    if counts["pairs"]:
        return f"{counts['n_treated']} pairs"
    label = f"{counts['n_treated']} treated, {counts['n_control']} controls"
    return label + (f" in {counts['n_subclasses']} subclasses" if counts.get("n_subclasses") else "")


# ---------------------------------------------------------------- matches


def spread_positions(values: np.ndarray, n: int) -> np.ndarray:
    """Positions of `n` items spread evenly over the sorted `values` (best, ..., median, ..., worst)."""
    order = np.argsort(values, kind="stable")
    if len(order) <= n:
        return order
    return order[np.unique(np.round(np.linspace(0, len(order) - 1, n)).astype(int))]


def _load(images: Mapping, image_id) -> np.ndarray | None:
    from ganmatch.data.io import read_rgb

    if image_id is None or (isinstance(image_id, float) and np.isnan(image_id)):
        return None
    value = images.get(str(image_id))
    if value is None:
        return None
    return read_rgb(value) if isinstance(value, str) else np.asarray(value)


def _pair_gap(sub: pd.DataFrame) -> tuple[np.ndarray, str]:
    """The gap a pair is labelled with: |logit difference| for propensity pairs (whose `distance` may be the
    subclass's, 0 within a full-matching subclass), else the matching distance; name '' when the method's
    pairs carry no meaningful distance (all NaN), so the label shows none."""
    if {"treated_logit", "control_logit"} <= set(sub.columns) and sub["treated_logit"].notna().any():
        return (sub["treated_logit"] - sub["control_logit"]).abs().to_numpy(float), "|Δlogit|"
    d = sub["distance"].to_numpy(float)
    return d, ("d" if np.isfinite(d).any() else "")


def _pair_label(gap_name: str, gap: float, rank: int, total: int, row, pairs: bool) -> str:
    """Text under a pair: its gap and rank, and for a weighted method the subclass and weight of the
    control."""
    head = f"{gap_name} = {gap:.3g} " if gap_name and np.isfinite(gap) else ""
    text = f"{head}(#{rank}/{total}{'' if pairs else ' links'})"
    if not pairs and pd.notna(row.get("subclass")):
        weight = f", w = {row['weight']:.3g}" if pd.notna(row.get("weight")) else ""
        subclass = row["subclass"]
        if isinstance(subclass, (float, np.floating)) and float(subclass).is_integer():
            subclass = int(subclass)
        text += f"\nsubclass {subclass}{weight}"
    return text


def matched_pairs(
    matches: pd.DataFrame,
    images: Mapping,
    pdf: str,
    png: str | None = None,
    n_pairs: int = 6,
    treatment: str = "treated",
) -> pd.DataFrame:
    """A grid of matched treated/control images (and their reference photos for the methods that record them
    in treated_ref/control_ref), `n_pairs` per method spread from the closest to the farthest pair.

    Each pair is labelled with its gap (propensity methods: |logit difference|; else the matching distance;
    none when the distance is NaN) and rank; each method's header gives its sample (`counts_label`: pairs, or
    treated, controls and subclasses for full matching and other weighted methods, whose rows are
    treated-control links within a subclass, labelled with the subclass and the control's weight). `images`
    maps image_id -> image path or uint8 array. Returns the pairs shown with their gap, its name and rank.
    """
    _need(matches, ["treated_id", "control_id", "distance", "method"], "matched_pairs")
    labels = group_labels(treatment)
    role_label = {
        "treated_ref": wrap(f"{labels[1]} ref.", 10),
        "treated_id": wrap(labels[1], 10),
        "control_id": wrap(labels[0], 10),
        "control_ref": wrap(f"{labels[0]} ref.", 10),
    }
    role_colour = {
        "treated_ref": None,
        "treated_id": GROUP_COLOURS[1],
        "control_id": GROUP_COLOURS[0],
        "control_ref": None,
    }
    methods = list(dict.fromkeys(matches["method"]))
    shown, roles, counts = [], {}, {}
    for method in methods:
        sub = matches[matches["method"] == method].reset_index(drop=True)
        refs = any(c in sub and sub[c].notna().any() for c in ("treated_ref", "control_ref"))
        # reference tiles only for a method that records reference photos (a missing one is an empty tile)
        roles[method] = (
            ["treated_ref", "treated_id", "control_id", "control_ref"]
            if refs
            else ["treated_id", "control_id"]
        )
        counts[method] = matched_counts(sub)
        gap, gap_name = _pair_gap(sub)
        order = np.where(np.isfinite(gap), gap, np.inf)
        rank = pd.Series(order).rank(method="first").astype(int)
        pos = spread_positions(order, n_pairs)
        pick = sub.loc[pos].assign(
            gap=gap[pos],
            gap_name=gap_name,
            distance_rank=rank[pos].to_numpy(),
            n_pairs_total=len(sub),
            row=np.arange(len(pos)),
        )
        shown.append(pick)
    data = pd.concat(shown, ignore_index=True) if shown else matches.head(0)
    n_rows = max(1, int(data.groupby("method").size().max()) if len(data) else 1)
    widths = []
    for m, method in enumerate(methods):
        widths += [1] * len(roles[method]) + ([0.35] if m < len(methods) - 1 else [])  # a gap between methods
    col0 = np.cumsum([0] + [len(roles[m]) + 1 for m in methods])
    weighted = any(not c["pairs"] for c in counts.values())
    fig, axes = plt.subplots(
        n_rows,
        max(1, len(widths)),
        figsize=(0.95 * len(widths) + 0.4, (1.3 if weighted else 1.15) * n_rows + 0.7),
        squeeze=False,
        gridspec_kw={"width_ratios": widths or [1]},
    )
    for ax in axes.flat:
        ax.axis("off")
    for m, method in enumerate(methods):
        sub = data[data["method"] == method]
        for _, row in sub.iterrows():
            for j, role in enumerate(roles[method]):
                ax = axes[int(row["row"])][col0[m] + j]
                ax.axis("on")
                title = role_label[role] if int(row["row"]) == 0 else ""
                show_image(ax, _load(images, row.get(role)), title, role_colour[role])
            d_ax = axes[int(row["row"])][col0[m] + roles[method].index("treated_id")]
            d_ax.set_xlabel(
                _pair_label(
                    row["gap_name"],
                    float(row["gap"]),
                    int(row["distance_rank"]),
                    int(row["n_pairs_total"]),
                    row,
                    counts[method]["pairs"],
                ),
                fontsize=6.5,
                labelpad=2,
                linespacing=1.1,
            )
            d_ax.xaxis.set_label_coords(1.0 + 0.05, -0.04)
    fig.subplots_adjust(hspace=0.6 if weighted else 0.45, wspace=0.08)
    # method names above their columns' titles, the figure title above the method names (never on each other)
    titles = [ax.title for ax in axes[0]]
    names = []
    for m, method in enumerate(methods):
        left, right = axes[0][col0[m]], axes[0][col0[m] + len(roles[method]) - 1]
        x = (left.get_position().x0 + right.get_position().x1) / 2
        width = 10 * len(roles[method])
        names.append(
            fig.text(
                x,
                1.0,
                wrap(method, width) + "\n" + wrap(counts_label(counts[method]), width + 4),
                ha="center",
                fontsize=8,
                fontweight="bold",
                linespacing=1.15,
            )
        )
        place_above(fig, names[-1], titles)
    gaps = sorted({g for g in data["gap_name"] if g}) if len(data) else []
    key = {"d": "d: matching distance", "|Δlogit|": "|Δlogit|: propensity-score (logit) difference"}
    note = "; ".join([key[g] for g in gaps] + ["#rank among the method's pairs"])
    if weighted:
        note += "\nweighted methods: treated-control links within a subclass, w: the control's weight"
    title = fig.suptitle(f"Matched pairs, closest to farthest\n({note})", fontsize=9)
    place_above(fig, title, names + titles)
    save_figure(fig, pdf, png)
    cols = [
        "method",
        "row",
        "treated_id",
        "control_id",
        "distance",
        "gap",
        "gap_name",
        "distance_rank",
        "n_pairs_total",
    ]
    cols += [c for c in ("subclass", "weight", "treated_ref", "control_ref") if c in data.columns]
    return data[cols].reset_index(drop=True)


# ---------------------------------------------------------------- embeddings


def constraint_thresholds(methods: Mapping[str, Mapping]) -> dict[str, dict[str, float]]:
    """embedding -> {method: threshold} of the matching methods that constrain pairs by a distance on that
    embedding (greedy_constrained: `constraint_embedding` and its `threshold`, e.g. the face recogniser's
    0.6)."""
    out: dict[str, dict[str, float]] = {}
    for name, spec in methods.items():
        if spec.get("constraint_embedding") and spec.get("threshold") is not None:
            out.setdefault(str(spec["constraint_embedding"]), {})[str(name)] = float(spec["threshold"])
    return out


def _threshold_lines(
    name: str, thresholds: Mapping[str, float], matching: Mapping[str, Mapping[str, float]]
) -> list[tuple[float, str]]:
    """(value, label) of the lines on one embedding's panel: its verification threshold and the thresholds the
    matching methods apply on it (one line per value, naming every use)."""
    uses: dict[float, list[str]] = {}
    if name in thresholds:
        uses.setdefault(float(thresholds[name]), []).append("same-person threshold")
    for method, value in (matching.get(name) or {}).items():
        uses.setdefault(float(value), []).append(f"matching threshold ({method})")
    return [(v, wrap(f"{v:g}: " + ", ".join(u), 44)) for v, u in uses.items()]


def distance_distributions(
    neighbours: Mapping[str, pd.DataFrame],
    identity: pd.Series,
    pdf: str,
    png: str | None = None,
    thresholds: Mapping[str, float] | None = None,
    bins: int = 40,
    matching: Mapping[str, Mapping[str, float]] | None = None,
) -> pd.DataFrame:
    """Per embedding, the distribution of distances between an image and its k nearest neighbours (scope
    "all"), split into same identity and different identity; a threshold line per embedding in `thresholds`
    (verification, e.g. dlib's 0.6) and in `matching` (embedding -> {method: threshold},
    `constraint_thresholds`: the face threshold a constrained matching applies). Returns the histograms:
    embedding, relation, bin_left, bin_right, count, density, n, median, and `thresholds` (the lines drawn on
    that panel, e.g. "0.6").
    """
    thresholds = dict(thresholds or {})
    matching = dict(matching or {})
    identity = identity.copy()
    identity.index = identity.index.astype(str)
    names = list(neighbours)
    fig, axes = plt.subplots(
        1, len(names), figsize=(0.6 + 3.6 * len(names), 3.4), squeeze=False, layout="constrained"
    )
    rows = []
    for ax, name in zip(axes[0], names, strict=True):
        nb = neighbours[name]
        _need(nb, ["query", "neighbour", "distance"], f"distance_distributions ({name})")
        if "scope" in nb:
            nb = nb[nb["scope"] == "all"]
        same = (
            identity.reindex(nb["query"].astype(str)).to_numpy()
            == identity.reindex(nb["neighbour"].astype(str)).to_numpy()
        )
        d = nb["distance"].to_numpy(float)
        edges = np.linspace(0, float(np.nanmax(d, initial=1.0)) * 1.02 + 1e-9, bins + 1)
        lines = _threshold_lines(name, thresholds, matching)
        if lines:
            edges = np.linspace(0, max(edges[-1], max(v for v, _ in lines) * 1.1), bins + 1)
        for relation, mask in (("same identity", same), ("different identity", ~same)):
            counts, _ = np.histogram(d[mask], edges)
            dens = histogram(d[mask], edges)
            ax.stairs(
                dens,
                edges,
                fill=True,
                alpha=0.45,
                color=RELATION_COLOURS[relation],
                label=f"{relation} (n = {int(mask.sum())})",
            )
            ax.stairs(dens, edges, color=RELATION_COLOURS[relation])
            rows.append(
                pd.DataFrame(
                    {
                        "embedding": name,
                        "relation": relation,
                        "bin_left": edges[:-1],
                        "bin_right": edges[1:],
                        "count": counts,
                        "density": dens,
                        "n": int(mask.sum()),
                        "median": float(np.median(d[mask])) if mask.any() else np.nan,
                        "thresholds": ", ".join(f"{v:g}" for v, _ in lines),
                    }
                )
            )
        for (value, label), style in zip(lines, ("--", ":", "-."), strict=False):
            ax.axvline(value, color="k", linestyle=style, linewidth=1.2, label=label)
        ax.set_title(wrap(f"embedding: {name}", 40), fontsize=9)
        ax.set_xlabel("distance (embedding units)")
        # below: never on bars
        ax.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    axes[0][0].set_ylabel("density")
    fig.suptitle(
        "Distance from each image to its k nearest neighbours:\nsame vs different identity", fontsize=10
    )
    save_figure(fig, pdf, png)
    return pd.concat(rows, ignore_index=True)


def neighbour_quality(table: pd.DataFrame, pdf: str, png: str | None = None) -> pd.DataFrame:
    """The paper's nearest-neighbour table as a figure: identity retrieval error at top-k and the attribute
    mismatch between an image and its nearest neighbour, both among all images (scope "all", as the paper's
    table and the `paper_comparison` figure's table measure them), and the attribute mismatch to the nearest
    image of the other group (scope "cross": what matching across groups sees). `table` is
    `retrieval.retrieval_quality_table` output; it is returned unchanged.
    """
    _need(table, ["embedding", "scope"], "neighbour_quality")
    embeddings = list(dict.fromkeys(table["embedding"]))
    colours = {e: EMBEDDING_PALETTE[i % len(EMBEDDING_PALETTE)] for i, e in enumerate(embeddings)}
    err_cols = [c for c in table.columns if c.startswith("err_top")]
    diff_cols = [c for c in table.columns if c.startswith("diff_")]
    scope_all = table[table["scope"] == "all"].set_index("embedding")
    cross = table[table["scope"] == "cross"].set_index("embedding")
    panels = [
        (
            err_cols,
            scope_all,
            "Same person\namong the nearest?",
            "identity retrieval error (fraction)",
            "neighbours searched (among all images)",
        ),
        (
            diff_cols,
            scope_all,
            "Attribute mismatch,\nnearest among all images\n(as the paper's table)",
            "mean |attribute difference| (0-1)",
            "attribute",
        ),
    ]
    if len(cross):
        panels.append(
            (
                diff_cols,
                cross,
                "Attribute mismatch,\nnearest in the other group\n(what matching sees)",
                "",
                "attribute",
            )
        )  # the same quantity as the panel before: one y label
    ratios = [max(2, len(err_cols))] + [max(2, len(diff_cols))] * (len(panels) - 1)
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(4.5 + max(2.5, 1.0 * len(diff_cols)) * (len(panels) - 1), 3.8),
        layout="constrained",
        gridspec_kw={"width_ratios": ratios},
    )
    width = 0.8 / max(1, len(embeddings))
    # values on the bars only while they fit (upright above each bar); the numbers are in the CSV beside the
    # figure
    label_bars = len(embeddings) <= 4
    for ax, (cols, rows, title, ylabel, xlabel) in zip(axes, panels, strict=True):
        for i, emb in enumerate(embeddings):
            if emb not in rows.index:
                continue
            dx = (i - (len(embeddings) - 1) / 2) * width
            bars = ax.bar(
                np.arange(len(cols)) + dx,
                rows.loc[emb, cols].to_numpy(float),
                width,
                color=colours[emb],
                label=wrap(emb, 30),
            )
            if label_bars:
                ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1, rotation=90)
        ticks = (
            [f"top-{c[len('err_top') :]}" for c in cols]
            if cols is err_cols
            else [wrap(c[len("diff_") :], 12) for c in cols]
        )
        ax.set_xticks(range(len(cols)), ticks, fontsize=8)
        ax.set_ylabel(ylabel)
        ax.set_xlabel(xlabel)
        ax.set_ylim(0, 1.15)  # room for the values above bars near 1
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.set_yticks(np.linspace(0, 1, 6))
    axes[-1].legend(
        title="embedding",
        fontsize=8,
        title_fontsize=8,
        frameon=False,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
    )
    fig.suptitle("Nearest-neighbour quality per embedding", fontsize=10)
    save_figure(fig, pdf, png)
    return table.reset_index(drop=True)


# ---------------------------------------------------------------- projection


def projection_loss_label(size: int, perceptual: str | None = None) -> str:
    """What the projection's `loss` column holds (`gan.project.LatentProjector._loss`): the pixel MSE on the
    [-1, 1] scale summed over the image and its 2x average-pooled copies (`multiscale_mse`: up to 3 halvings
    while the side is at least 8 px), plus the VGG feature distance with `perceptual: vgg`."""
    scales, side = 1, int(size)
    while scales < 4 and side >= 8:
        side //= 2
        scales += 1
    sides = ", ".join(f"1/{2**k}" if k else "full" for k in range(scales))
    label = (
        f"projection loss: pixel MSE summed over {scales} scales ({sides}; values in [-1, 1])"
        if scales > 1
        else "projection loss: pixel MSE (values in [-1, 1])"
    )
    return label + (" + VGG16 feature distance" if perceptual == "vgg" else "")


def projection_quality(
    table: pd.DataFrame,
    ids: list[str],
    originals: np.ndarray,
    reconstructions: np.ndarray,
    pdf: str,
    png: str | None = None,
    bins: int = 30,
    loss_label: str | None = None,
) -> pd.DataFrame:
    """Originals over their GAN reconstructions for a few images, and histograms of projection loss and PSNR.
    The loss axis says what the loss is (`loss_label`, default `projection_loss_label` of the images' size).

    Returns the latent table (image_id, status, loss, psnr, ...) with `shown` and, for shown images,
    `psnr_rerender` (PSNR of the re-rendered latent against the aligned original, dB).
    """
    _need(table, ["image_id", "loss", "psnr"], "projection_quality")
    n = len(ids)
    mse = ((originals.astype(float) - reconstructions.astype(float)) ** 2).reshape(n, -1).mean(axis=1)
    rerender = 10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))
    data = table.reset_index(drop=True).copy()
    data["image_id"] = data["image_id"].astype(str)
    data["shown"] = data["image_id"].isin(ids)
    data["psnr_rerender"] = data["image_id"].map(dict(zip(ids, rerender, strict=True))).astype(float)
    fig = plt.figure(figsize=(max(6.5, 0.95 * n + 0.8), 5.2))
    grid = fig.add_gridspec(3, 1, height_ratios=[1, 1, 1.5], hspace=0.35)
    top = grid[0:2].subgridspec(2, max(1, n), hspace=0.25, wspace=0.06)
    for j in range(n):
        show_image(fig.add_subplot(top[0, j]), originals[j], shorten(ids[j], 11), None)
        show_image(fig.add_subplot(top[1, j]), reconstructions[j], f"{rerender[j]:.1f} dB", None)
    fig.axes[0].set_ylabel("original", fontsize=8)
    fig.axes[1].set_ylabel("GAN recon.", fontsize=8)
    for ax in fig.axes[:2]:
        ax.set_yticks([])
    bottom = grid[2].subgridspec(1, 2, wspace=0.3)
    ok = data[data["status"] == "ok"] if "status" in data else data
    if loss_label is None:
        loss_label = projection_loss_label(reconstructions.shape[1] if n else 0)
    for k, (col, label) in enumerate(
        (("loss", wrap(loss_label, 48)), ("psnr", "PSNR of reconstruction (dB)"))
    ):
        ax = fig.add_subplot(bottom[0, k])
        ax.hist(ok[col].to_numpy(float), bins=bins, color="#4c72b0", alpha=0.85)
        for v in data.loc[data["shown"], col]:
            ax.axvline(v, color="k", linewidth=0.6, alpha=0.5)
        ax.set_xlabel(label, fontsize=8)
        ax.set_ylabel("images")
    fig.suptitle(
        f"Projection quality ({len(ok)} images; ticks on the histograms: the examples shown)", fontsize=10
    )
    save_figure(fig, pdf, png)
    return data


# ---------------------------------------------------------------- outcomes


def outcomes_forest(
    outcomes: pd.DataFrame, pdf: str, png: str | None = None, units: Mapping[str, pd.DataFrame] | None = None
) -> pd.DataFrame:
    """Forest plot: per outcome, one row per method (naive first) with its estimate and 95% interval; the true
    effect is marked where the table has one (the demo). Each row names its sample: pairs for 1:1 matching,
    else treated and controls (and subclasses, from the method's units table in `units`, name -> table) for
    full matching and other weighted methods. Returns the rows drawn, with the `sample_size` label shown.
    """
    _need(outcomes, ["outcome", "method", "estimate", "ci_low", "ci_high"], "outcomes_forest")
    counts = {str(m): matched_counts(t) for m, t in (units or {}).items()}
    names = list(dict.fromkeys(outcomes["outcome"]))
    styles = method_styles(outcomes["method"])
    n_rows = int(outcomes.groupby("outcome").size().max())
    fig, axes = plt.subplots(
        1,
        len(names),
        figsize=(1.0 + 5.0 * len(names), 1.3 + 0.45 * n_rows),
        squeeze=False,
        layout="constrained",
    )
    drawn = []
    for ax, name in zip(axes[0], names, strict=True):
        sub = outcomes[outcomes["outcome"] == name].copy()
        sub["_order"] = (sub["method"] != "naive").astype(int)
        sub = sub.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)
        sub["row"] = np.arange(len(sub))
        y = len(sub) - 1 - sub["row"].to_numpy()
        ticks = []
        for yi, (_, r) in zip(y, sub.iterrows(), strict=True):
            st = styles[str(r["method"])]
            flagged = str(r.get("status", "ok")) not in ("ok", "nan", "<NA>")
            ax.errorbar(
                r["estimate"],
                yi,
                xerr=[[r["estimate"] - r["ci_low"]], [r["ci_high"] - r["estimate"]]],
                fmt=st["marker"],
                color=st["color"],
                capsize=3,
                markersize=6,
                markerfacecolor="none" if flagged else st["color"],
            )
            ticks.append(_forest_label(r, counts.get(str(r["method"]))))
        ax.axvline(0, color="k", linewidth=0.8, linestyle=":")
        truth = sub["truth"].dropna().unique() if "truth" in sub else []
        if len(truth):
            ax.axvline(
                float(truth[0]),
                color="#d62728",
                linestyle="--",
                linewidth=1.2,
                label=f"true effect ({float(truth[0]):g})",
            )
            ax.legend(fontsize=7, frameon=False, loc="lower right")
        ax.set_yticks(y, ticks)
        ax.set_ylim(-0.7, len(sub) - 0.3)
        kind = str(sub["kind"].iloc[0]) if "kind" in sub else "numeric"
        unit = "difference in proportion" if kind == "binary" else "difference in mean (outcome units)"
        ax.set_xlabel(f"{wrap(name, 50)}:\ntreated - control, {unit}")
        ax.grid(axis="x", alpha=0.3)
        drawn.append(
            sub.assign(sample_size=[_sample_size(r, counts.get(str(r["method"]))) for _, r in sub.iterrows()])
        )
    fig.suptitle("Treatment effect estimates with 95% intervals", fontsize=10)
    save_figure(fig, pdf, png)
    return pd.concat(drawn, ignore_index=True)


def _sample_size(row, counts: dict | None = None) -> str:
    """The sample of a forest-plot row: 'N + M' unmatched, pairs, or treated/controls (in subclasses)."""
    if row["method"] == "naive":
        return f"{row['n_treated']} + {row['n_control']}" if pd.notna(row.get("n_treated")) else "?"
    if counts is not None:
        return counts_label(counts)
    n_t, n_c, n_p = (row.get(c) for c in ("n_treated", "n_control", "n_pairs"))
    if pd.notna(n_t) and pd.notna(n_c) and not (n_t == n_c and (pd.isna(n_p) or n_p == n_t)):
        return counts_label({"n_treated": int(n_t), "n_control": int(n_c), "pairs": False})
    return f"{n_p} pairs" if pd.notna(n_p) else "?"


def _forest_label(row, counts: dict | None = None) -> str:
    """Row label of the forest plot: method and sample size (`_sample_size`)."""
    n = _sample_size(row, counts)
    if row["method"] == "naive":
        return f"naive, unmatched (n = {n})"
    status = str(row.get("status", "ok"))
    flag = f"\n[{status}]" if status not in ("ok", "nan", "<NA>") else ""
    return (
        f"{pretty(row['method'])}\n(n = {n}){flag}"
        if len(n) > 16
        else f"{pretty(row['method'])} (n = {n}){flag}"
    )
