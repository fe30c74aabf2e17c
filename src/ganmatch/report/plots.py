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
        styles[name] = {"color": METHOD_PALETTE[i % len(METHOD_PALETTE)],
                        "marker": METHOD_MARKERS[i % len(METHOD_MARKERS)]}
    return styles


def pretty(name: str) -> str:
    """Covariate/method names for axis labels: underscores become spaces."""
    return str(name).replace("_", " ")


def wrap(name: str, width: int = 18) -> str:
    """`pretty(name)` broken into lines of at most `width` characters, so long names stay within their
    panel."""
    import textwrap

    return "\n".join(textwrap.wrap(pretty(name), width)) or pretty(name)


def shorten(text: str, width: int = 14) -> str:
    """`text` cut in the middle to at most `width` characters (ids under small image tiles)."""
    text = str(text)
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def place_above(fig, text, below, gap: float = 4.0) -> None:
    """Move figure text `text` (va bottom) `gap` pixels above the highest of the artists `below`."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    top = max(a.get_window_extent(renderer).y1 for a in below)
    x = text.get_position()[0]
    text.set_verticalalignment("bottom")
    text.set_position((x, fig.transFigure.inverted().transform((0, top + gap))[1]))


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
    return np.divide(counts, counts.sum() * np.diff(bins), out=np.zeros_like(counts, dtype=float),
                     where=total > 0)


def panel_columns(n: int, max_cols: int = 3) -> int:
    """Columns of `panel_grid` for `n` panels: at most `max_cols`, and 4 panels as 2 x 2."""
    return 2 if n == 4 else min(n, max_cols)


def panel_grid(n: int, max_cols: int = 3, panel: tuple[float, float] = (3.0, 3.0), extra_width: float = 0.0,
               **kwargs):
    """A figure with `n` panels wrapped into rows of at most `max_cols` (4 panels make 2 x 2);
    returns (fig, axes) with axes a flat list of the `n` used panels, unused ones removed.
    `extra_width` (inches) makes room for a legend beside the panels."""
    cols = panel_columns(n, max_cols)
    rows = -(-n // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(0.8 + extra_width + panel[0] * cols, 0.6 + panel[1] * rows),
                             squeeze=False,
                             layout="constrained", **kwargs)
    axes = list(grid.flat)
    for ax in axes[n:]:
        ax.remove()
    return fig, axes[:n]


# ---------------------------------------------------------------- layout checks


def _shown_texts(fig) -> list[tuple[str, object, object]]:
    """(group, Text, bbox) of every non-empty text a reader sees: titles, axis and tick labels in view,
    legend entries and titles, bar labels and annotations. Tick labels of one axis share a group."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts, seen = [], set()

    def add(group, text):
        if text is not None and id(text) not in seen and text.get_visible() and text.get_text().strip():
            seen.add(id(text))
            texts.append((group, text, text.get_window_extent(renderer)))

    for t in fig.texts:
        add("figure", t)
    if getattr(fig, "_suptitle", None) is not None:
        add("suptitle", fig._suptitle)
    for legend in fig.legends:
        for t in [*legend.get_texts(), legend.get_title()]:
            add(f"legend {id(legend)}", t)
    for ax in fig.axes:
        if not ax.get_visible() or not ax.axison:
            for t in [ax.title, ax._left_title, ax._right_title, *ax.texts]:
                add(f"axes {id(ax)}", t)
            continue
        for t in [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]:
            add(f"axes {id(ax)}", t)
        for name, axis, lim in (("x", ax.xaxis, ax.get_xlim()), ("y", ax.yaxis, ax.get_ylim())):
            low, high = min(lim), max(lim)
            for tick in axis.get_major_ticks():
                if low - 1e-9 <= tick.get_loc() <= high + 1e-9 and tick.label1.get_visible():
                    add(f"ticks {name} {id(ax)}", tick.label1)
        legend = ax.get_legend()
        if legend is not None:
            for t in [*legend.get_texts(), legend.get_title()]:
                add(f"legend {id(legend)}", t)
    return texts


def _tick_labels_collide(a, b) -> bool:
    """Two rotated tick labels of one axis collide when their parallel baselines are closer than a line of
    text."""
    import math

    angle = math.radians(a[1].get_rotation())
    (ax0, ay0), (bx0, by0) = a[2].get_points()[0], b[2].get_points()[0]
    spacing = math.hypot(ax0 - bx0, ay0 - by0)
    height = a[1].get_fontsize() * a[1].figure.dpi / 72.0
    return spacing * abs(math.sin(angle)) < 0.9 * height


def text_overlaps(fig, pad: float = 0.5) -> list[tuple[str, str]]:
    """Pairs of shown texts (see `_shown_texts`) whose boxes overlap by more than `pad` pixels.

    Rotated tick labels of one axis are compared by the distance between their baselines (their boxes overlap
    by design); unrotated ones by their boxes.
    """
    texts = _shown_texts(fig)
    found = []
    for i, a in enumerate(texts):
        for b in texts[i + 1:]:
            if a[0] == b[0] and a[0].startswith("legend"):
                continue  # legend entries are laid out by the legend itself
            if a[0] == b[0] and a[0].startswith("ticks") and a[1].get_rotation() % 180:
                if _tick_labels_collide(a, b):
                    found.append((a[1].get_text(), b[1].get_text()))
                continue
            box_a, box_b = a[2].padded(-pad), b[2].padded(-pad)
            if box_a.overlaps(box_b):
                found.append((a[1].get_text(), b[1].get_text()))
    return found


def _data_boxes(ax) -> list:
    """Display-space boxes of the data an axes draws: bars and steps (one box per bin), points, line
    vertices."""
    from matplotlib.patches import Rectangle, StepPatch
    from matplotlib.transforms import Bbox

    boxes = []
    for patch in ax.patches:
        if isinstance(patch, StepPatch):
            values, edges, baseline = patch.get_data()
            base = 0.0 if baseline is None else baseline
            for left, right, v in zip(edges[:-1], edges[1:], values, strict=True):
                if np.isfinite(v) and v != base:
                    pts = ax.transData.transform([(left, base), (right, v)])
                    boxes.append(Bbox(pts))
        elif isinstance(patch, Rectangle) and patch.get_height() and patch.get_width():
            boxes.append(patch.get_window_extent())
    points = []
    for line in ax.lines:
        xy = line.get_xydata()
        if len(xy) and not (line.get_linestyle() in ("--", ":") and len(xy) == 2):  # reference lines may pass
            points.append(line.get_transform().transform(xy))
    for coll in ax.collections:
        offsets = coll.get_offsets()
        if len(offsets):
            points.append(coll.get_offset_transform().transform(offsets))
    for xy in points:
        xy = xy[np.isfinite(xy).all(axis=1)]
        boxes.extend(Bbox([p, p]) for p in xy)
    return boxes


def legends_covering_data(fig, pad: float = 1.0) -> list[str]:
    """Titles of the axes whose data (bars, steps, points, lines) a legend box covers.

    Checks every axes against every legend of the figure (axes legends and figure legends).
    """
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]
    found = []
    for legend in legends:
        box = legend.get_window_extent(renderer).padded(-pad)
        for ax in fig.axes:
            if any(box.overlaps(data) for data in _data_boxes(ax)):
                found.append(ax.get_title() or ax.get_label() or "axes")
    return found
