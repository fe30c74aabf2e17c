"""Figures of the edit stage: edited images per strength, interpolation strips, leakage heatmaps, transects.

Like `ganmatch.report.figures`, each function draws from the stage's tables, writes PDF/PNG and returns the
numbers (or image paths) it drew.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ganmatch.analysis.edit_metrics import change_transects, conditioned_on
from ganmatch.data.io import read_rgb
from ganmatch.report.plots import (
    BEFORE_COLOUR,
    GROUP_COLOURS,
    group_labels,
    method_styles,
    panel_grid,
    plt,
    pretty,
    save_figure,
)


def _mosaic(paths: list[list[str]], pad: int = 2) -> np.ndarray:
    """Images (rows x columns of paths) tiled into one array with white gaps."""
    tiles = [[read_rgb(p) for p in row] for row in paths]
    h, w = tiles[0][0].shape[:2]
    out = np.full((len(tiles) * (h + pad) - pad, len(tiles[0]) * (w + pad) - pad, 3), 255, np.uint8)
    for i, row in enumerate(tiles):
        for j, img in enumerate(row):
            out[i * (h + pad) : i * (h + pad) + h, j * (w + pad) : j * (w + pad) + w] = img
    return out


def edit_grid(edits: pd.DataFrame, selection: pd.DataFrame, pdf: str, png: str | None = None,
              treatment: str = "treated", n_images: int = 4) -> pd.DataFrame:
    """One panel per direction: `n_images` faces (half from each group) as rows, strengths as columns."""
    group = selection.set_index("image_id")[treatment]
    ids = [i for g in (1, 0) for i in selection.loc[selection[treatment] == g,
                                                    "image_id"][: (n_images + 1) // 2]]
    ids = [i for i in ids if i in set(edits["image_id"])][:n_images]
    directions = list(dict.fromkeys(edits["direction"]))
    strengths = sorted(edits["strength"].unique())
    fig, axes = panel_grid(len(directions), max_cols=4, panel=(0.55 * len(strengths) + 0.4,
                                                               0.6 * len(ids) + 0.7))
    drawn = []
    for ax, d in zip(axes, directions, strict=True):
        sub = edits[(edits["direction"] == d) & edits["image_id"].isin(ids)].set_index(["image_id",
                                                                                        "strength"])
        paths = [[sub.at[(i, s), "path"] for s in strengths] for i in ids]
        ax.imshow(_mosaic(paths), interpolation="nearest")
        h = ax.get_images()[0].get_array().shape[0] / max(1, len(ids))
        w = ax.get_images()[0].get_array().shape[1] / len(strengths)
        ax.set_xticks([(j + 0.5) * w for j in range(len(strengths))], [f"{s:+g}" for s in strengths],
                      fontsize=6)
        ax.set_yticks([(k + 0.5) * h for k in range(len(ids))], ["T" if group[i] == 1 else "C" for i in ids],
                      fontsize=6)
        for tick, i in zip(ax.get_yticklabels(), ids, strict=True):
            tick.set_color(GROUP_COLOURS[int(group[i])])
        ax.tick_params(length=0)
        ax.set_title(d.replace("|", "\n| "), fontsize=7)
        drawn += [
            {"direction": d, "image_id": i, "strength": s, "path": sub.at[(i, s), "path"]}
            for i in ids
            for s in strengths
        ]
    fig.supxlabel("edit strength (SDs of the attribute score)", fontsize=8)
    names = group_labels(treatment)
    fig.suptitle(f"Edits along each direction (rows: T = {names[1]}, C = {names[0]})", fontsize=9)
    save_figure(fig, pdf, png)
    return pd.DataFrame(drawn)


def interpolation_strips(table: pd.DataFrame, pdf: str, png: str | None = None) -> pd.DataFrame:
    """One strip per row: matched treated -> control pairs per method, then two photos of one identity."""
    strips = table.drop_duplicates("strip").reset_index(drop=True)
    fig, axes = plt.subplots(
        max(1, len(strips)),
        1,
        figsize=(6.0, 0.2 + 0.75 * max(1, len(strips))),
        squeeze=False,
        layout="constrained",
    )
    for ax, (_, r) in zip(axes[:, 0], strips.iterrows(), strict=False):
        ax.imshow(read_rgb(r["path"]), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        label = (
            f"{r['method']}: {r['start_id']} (T) -> {r['end_id']} (C)"
            if r["kind"] == "matched"
            else f"same identity: {r['start_id']} -> {r['end_id']}"
        )
        ax.set_title(label, fontsize=6.5, loc="left", pad=2)
    if not len(strips):
        axes[0, 0].text(0.5, 0.5, "no strips configured", ha="center", va="center")
        axes[0, 0].set_axis_off()
    fig.suptitle("Latent interpolations", fontsize=9)
    save_figure(fig, pdf, png)
    return strips


def leakage_heatmap(leakage: pd.DataFrame, pdf: str, png: str | None = None) -> pd.DataFrame:
    """Mean change of every measured attribute (columns) when editing along each direction (rows) at the
    largest positive strength; one panel per source (latent models; planted truth on the demo; image models on
    photos), plain and conditional rows. The latent-model cells of a conditional row for the attributes
    projected out of its direction are 0 by construction: they are greyed and marked "≡0" (`by_construction`
    in the returned rows), pointing to the panels that measure them."""
    top = leakage["strength"].max()
    data = leakage[leakage["strength"] == top].copy()
    sources = list(dict.fromkeys(data["source"]))
    units = {
        "model": "change in SDs of the attribute score (latent models)",
        "image": "change re-predicted on the rendered face (image models; probability, age in years;\n"
        "colour scaled per column, the units differ)",
        "truth": "true change in units of the attribute's separation (planted, demo)",
    }
    directions = list(dict.fromkeys(data.sort_values("conditional", kind="stable")["direction"]))
    measured = list(dict.fromkeys(data["measured"]))
    # a conditional direction is orthogonal to the latent models of the attributes it projects out: their
    # change is 0 by construction, not a measurement (the planted truth or the image models measure it)
    data["by_construction"] = (data["source"] == "model").to_numpy() & np.array(
        [m in conditioned_on(str(d)) for d, m in zip(data["direction"], data["measured"], strict=True)], bool
    )
    fixed = data[data["by_construction"]]
    others = [{"truth": "planted-truth", "image": "image-model"}.get(s, s) for s in sources if s != "model"]
    fig, axes = panel_grid(
        len(sources), max_cols=2, panel=(0.75 * len(measured) + 2.2, 0.42 * len(directions) + 1.2)
    )
    for ax, source in zip(axes, sources, strict=True):
        m = data[data["source"] == source].pivot_table(
            index="direction", columns="measured", values="mean_change"
        )
        m = m.reindex(index=directions, columns=measured)
        values = m.to_numpy(float)
        mask = np.zeros(values.shape, bool)
        if source == "model":
            for d, a in zip(fixed["direction"], fixed["measured"], strict=True):
                mask[directions.index(d), measured.index(a)] = True
        shade = _column_scaled(values) if source == "image" else values.copy()
        shade[mask] = np.nan
        lim = float(np.nanmax(np.abs(shade))) if np.isfinite(shade).any() else 1.0
        lim = lim or 1.0
        im = ax.imshow(shade, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        for (i, j), v in np.ndenumerate(values):
            if mask[i, j]:
                ax.add_patch(
                    plt.Rectangle(
                        (j - 0.5, i - 0.5),
                        1,
                        1,
                        facecolor="#e0e0e0",
                        edgecolor="#9e9e9e",
                        hatch="////",
                        linewidth=0,
                    )
                )
                ax.text(
                    j,
                    i,
                    "≡0",
                    ha="center",
                    va="center",
                    fontsize=6.5,
                    color="#424242",
                    bbox={"facecolor": "#e0e0e0", "edgecolor": "none", "pad": 0.5},
                )
            elif np.isfinite(v):
                ax.text(
                    j,
                    i,
                    f"{v:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if abs(shade[i, j]) > 0.6 * lim else "black",
                )
        note = ""
        if mask.any():
            where = f"see the {' and '.join(others)} panel" if others else "not measured by these models"
            note = f"\n≡0: zero by construction (direction orthogonal to these latent models); {where}"
        ax.set_xticks(
            range(len(measured)), [pretty(c) for c in measured], rotation=40, ha="right", fontsize=7
        )
        ax.set_yticks(range(len(directions)), [d.replace("|", " | ") for d in directions], fontsize=6.5)
        ax.set_xlabel("measured attribute", fontsize=7)
        ax.set_title(units.get(source, source) + note, fontsize=7.5)
        bar = fig.colorbar(im, ax=ax, shrink=0.8)
        if source == "image":
            bar.set_label("change / column's largest |change|", fontsize=6.5)
    fig.suptitle(
        f"Leakage of each edit at strength {top:+g} SD (conditional rows: listed attributes projected out)",
        fontsize=8.5,
    )
    save_figure(fig, pdf, png)
    return data


def _column_scaled(values: np.ndarray) -> np.ndarray:
    """Each column divided by its largest |value| (columns in different units share one colour scale)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        peak = np.nanmax(np.abs(np.where(np.isfinite(values), values, np.nan)), axis=0, initial=0.0)
        return values / np.where(peak > 0, peak, 1.0)


def constant_by_construction(
    table: pd.DataFrame,
    edits: pd.DataFrame | None = None,
    n_boot: int = 2000,
    alpha: float = 0.05,
    random_state: int = 0,
) -> tuple[set[str], pd.DataFrame]:
    """The transect outcomes that are constant by construction along the table's direction (`p_<a>`, the
    latent model of an attribute projected out of it), and in their stead the planted truth (`true_delta_<a>`,
    demo) or the image models (`image_delta_<a>`, photos) from `edits` (`edit_metrics.change_transects`,
    outcome named `<a>`, `source` truth/image); rows empty when the edit table has neither."""
    line = table[table["kind"] == "transect"]
    direction = str(line["direction"].iloc[0]) if len(line) else ""
    fixed = {f"p_{a}" for a in conditioned_on(direction)} & set(line["outcome"])
    parts = []
    for source, prefix in (("truth", "true_delta_"), ("image", "image_delta_")):
        columns = {
            o[2:]: f"{prefix}{o[2:]}"
            for o in sorted(fixed)
            if edits is not None
            and f"{prefix}{o[2:]}" in edits
            and not any(o[2:] in set(p["outcome"]) for p in parts)
        }
        if columns:
            parts.append(
                change_transects(edits, direction, columns, n_boot, alpha, random_state).assign(source=source)
            )
    return fixed, pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=[*table.columns, "source"]
    )


def transects_figure(
    table: pd.DataFrame,
    pdf: str,
    png: str | None = None,
    edits: pd.DataFrame | None = None,
    n_boot: int = 2000,
    alpha: float = 0.05,
    random_state: int = 0,
) -> pd.DataFrame:
    """Per outcome, its mean change along the edit strength (95% band); last panel: the experimental effect of
    the treatment against the observational (naive and matched) estimates of the same outcomes. An outcome
    that is constant by construction (the latent model of an attribute projected out of the direction) is
    drawn as what measures it, the planted truth (demo) or the image models (photos) from `edits`
    (`constant_by_construction`), or marked as constant by construction when neither exists. Returns the table
    with `source` (model, truth, image) and `by_construction` columns, plus the rows drawn in those panels'
    stead."""
    fixed, measured = constant_by_construction(table, edits, n_boot, alpha, random_state)
    line = table[table["kind"] == "transect"]
    outcomes = list(dict.fromkeys(line["outcome"]))
    compare = table[table["kind"].isin(["experimental", "observational"])]
    compare = (
        compare[compare["outcome"].isin(table.loc[table["kind"] == "observational", "outcome"])]
        if (table["kind"] == "observational").any()
        else compare[compare["outcome"].isin(outcomes[:1])]
    )
    fig, axes = panel_grid(len(outcomes) + 1, max_cols=4, panel=(2.8, 2.4))
    direction = str(line["direction"].iloc[0]) if len(line) else ""
    what = {
        "truth": ("planted truth", "true change\n(separation units)", "#2ca02c"),
        "image": ("image models", "change re-predicted\non the faces", "#9467bd"),
    }
    for ax, name in zip(axes, outcomes, strict=False):
        sub = line[line["outcome"] == name].sort_values("strength")
        title, ylabel, colour = pretty(name), "mean change", "#1f77b4"
        if name in fixed:
            other = measured[measured["outcome"] == name[2:]].sort_values("strength")
            if len(other):
                source = str(other["source"].iloc[0])
                sub = other
                title = f"{pretty(name[2:])}: {what[source][0]}\n({pretty(name)} constant by construction)"
                ylabel, colour = what[source][1], what[source][2]
            else:
                title = (
                    f"{pretty(name)}: constant by construction\n(orthogonal to the direction; not a result)"
                )
                colour = "#9e9e9e"
        ax.fill_between(sub["strength"], sub["ci_low"], sub["ci_high"], color=colour, alpha=0.25, linewidth=0)
        ax.plot(sub["strength"], sub["estimate"], "o-", color=colour, markersize=3)
        ax.axhline(0, color="k", linewidth=0.6, linestyle=":")
        lo, hi = float(min(sub["ci_low"].min(), 0)), float(max(sub["ci_high"].max(), 0))
        if hi - lo < 0.1:  # a flat line stays flat instead of magnifying rounding noise
            mid = (hi + lo) / 2
            ax.set_ylim(mid - 0.05, mid + 0.05)
        ax.set_title(title, fontsize=7 if "\n" in title else 8)
        ax.set_xlabel("edit strength (SD)", fontsize=7)
        ax.set_ylabel(ylabel, fontsize=7)
        ax.tick_params(labelsize=6)
    ax = axes[-1]
    styles = method_styles(compare["method"])
    rows = compare.reset_index(drop=True)
    for k, r in rows.iterrows():
        y = len(rows) - 1 - k
        colour = (
            "#d62728"
            if r["kind"] == "experimental"
            else styles.get(str(r["method"]), {"color": BEFORE_COLOUR})["color"]
        )
        ax.errorbar(
            r["estimate"],
            y,
            xerr=[[r["estimate"] - r["ci_low"]], [r["ci_high"] - r["estimate"]]],
            fmt="o",
            color=colour,
            capsize=3,
            markersize=4,
        )
    ax.set_yticks(
        range(len(rows))[::-1],
        [
            f"{pretty(r['outcome'])}: {'edit (experimental)' if r['kind'] == 'experimental' else r['method']}"
            for _, r in rows.iterrows()
        ],
        fontsize=6,
    )
    truth = rows["truth"].dropna().unique() if "truth" in rows else []
    if len(truth):
        ax.axvline(
            float(truth[0]),
            color="#d62728",
            linestyle="--",
            linewidth=1,
            label=f"true effect ({float(truth[0]):g})",
        )
        ax.legend(fontsize=6, frameon=False)
    ax.axvline(0, color="k", linewidth=0.6, linestyle=":")
    ax.set_title("treatment effect: experimental vs observational", fontsize=8)
    ax.tick_params(axis="x", labelsize=6)
    fig.suptitle(f"Transects along {direction.replace('|', ' | ')}", fontsize=9)
    save_figure(fig, pdf, png)
    out = table.assign(
        source="model", by_construction=table["outcome"].isin(fixed) & (table["kind"] != "observational")
    )
    return (
        pd.concat([out, measured.assign(by_construction=False)], ignore_index=True) if len(measured) else out
    )
