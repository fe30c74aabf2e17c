"""Shared plotting style and helpers for the figures: colours per group and method, saving, image tiles.

Every figure takes its colours from here, so a group or a matching method has the same colour in all of them.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ganmatch.data.io import atomic_path  # noqa: E402

GROUP_COLOURS = {0: "#d95f02", 1: "#1b9e77"}  # control, treated: the same in every figure
GROUP_CODES = {"control": 0, "treated": 1, 0: 0, 1: 1}  # group names of the balance tables -> 0/1
SAMPLE_STYLE = {"unmatched": {"marker": "o", "alpha": 0.45}, "matched": {"marker": "s", "alpha": 1.0}}
BEFORE_COLOUR = "#7f7f7f"  # the unmatched sample / naive estimate
METHOD_PALETTE = ["#1f77b4", "#9467bd", "#e7298a", "#8c564b", "#17becf", "#bcbd22", "#e6ab02", "#393b79"]
METHOD_MARKERS = ["s", "D", "^", "v", "P", "X", "<", ">"]


def save_figure(fig, pdf: str, png: str | None = None, dpi: int = 150) -> None:
    """Write a figure to PDF (and PNG) atomically, then close it."""
    with atomic_path(pdf, ".pdf") as tmp:
        fig.savefig(tmp, format="pdf", bbox_inches="tight")
    if png:
        with atomic_path(png, ".png") as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def group_labels(treatment: str) -> dict[int, str]:
    """Readable group names, e.g. male = 1 -> 'male', 0 -> 'not male' (female for the gender treatment)."""
    if treatment.lower() == "male":
        return {1: "male", 0: "female"}
    return {1: treatment, 0: f"not {treatment}"}


def method_styles(methods) -> dict[str, dict]:
    """Colour and marker per matching method, assigned in sorted name order so every figure agrees.

    "naive" (no matching) is always grey.
    """
    styles = {"naive": {"color": BEFORE_COLOUR, "marker": "o"}}
    for i, name in enumerate(sorted({str(m) for m in methods} - {"naive"})):
        styles[name] = {"color": METHOD_PALETTE[i % len(METHOD_PALETTE)], "marker": METHOD_MARKERS[i % len(METHOD_MARKERS)]}
    return styles


def pretty(name: str) -> str:
    """Covariate/method names for axis labels: underscores become spaces."""
    return str(name).replace("_", " ")


def show_image(ax, image: np.ndarray | None, title: str = "", colour: str | None = None) -> None:
    """One image tile without axes; a coloured frame marks its group; a missing image is a grey tile."""
    if image is None:
        ax.imshow(np.full((8, 8, 3), 0.85))
        ax.text(0.5, 0.5, "missing", ha="center", va="center", fontsize=6, transform=ax.transAxes)
    else:
        ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(colour is not None)
        if colour is not None:
            spine.set_edgecolor(colour)
            spine.set_linewidth(2)
    if title:
        ax.set_title(title, fontsize=7, pad=2)


def histogram(values, bins, weights=None) -> np.ndarray:
    """Weighted histogram normalised to a density (integral 1); zeros when nothing is in range."""
    values = np.asarray(values, float)
    w = np.ones(len(values)) if weights is None else np.asarray(weights, float)
    counts, _ = np.histogram(values, bins=bins, weights=w)
    total = counts.sum() * np.diff(bins)
    return np.divide(counts, counts.sum() * np.diff(bins), out=np.zeros_like(counts, dtype=float), where=total > 0)


def panel_columns(n: int, max_cols: int = 3) -> int:
    """Columns of `panel_grid` for `n` panels: at most `max_cols`, and 4 panels as 2 x 2."""
    return 2 if n == 4 else min(n, max_cols)


def panel_grid(n: int, max_cols: int = 3, panel: tuple[float, float] = (3.0, 3.0), **kwargs):
    """A figure with `n` panels wrapped into rows of at most `max_cols` (4 panels make 2 x 2);
    returns (fig, axes) with axes a flat list of the `n` used panels, unused ones removed."""
    cols = panel_columns(n, max_cols)
    rows = -(-n // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(0.8 + panel[0] * cols, 0.6 + panel[1] * rows), squeeze=False,
                             layout="constrained", **kwargs)
    axes = list(grid.flat)
    for ax in axes[n:]:
        ax.remove()
    return fig, axes[:n]
