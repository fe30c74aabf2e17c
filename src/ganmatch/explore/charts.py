"""Geometry of the explorer's charts (the balance page's love plot, the distance histograms), drawn as SVG by
the templates: numbers here, markup there (so every label is escaped by Jinja)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

ROW_H = 26
LEFT = 140
WIDTH = 560
TOP = 30
LINE = 16  # px per line of the axis label
HIST_W, HIST_H, HIST_BINS = 560, 120, 30


def nice_axis(x: float) -> tuple[float, float]:
    """(axis end, tick step): the end a multiple of a round step (0.05 ... 1) at or above x, 2-5 ticks."""
    for step in (0.05, 0.1, 0.25, 0.5, 1.0):
        if x <= 5 * step:
            return step * max(2, math.ceil(x / step - 1e-9)), step
    step = float(math.ceil(x / 5))
    return step * math.ceil(x / step), step


def label_lines(label: str) -> list[str]:
    """A long axis label split before its parenthesis, so each line fits the plot's width."""
    head, sep, tail = label.partition(" (")
    return [head, f"({tail}"] if sep else [label]


def love_plot_svg(wide: pd.DataFrame, threshold: float | None, axis_label: str = "") -> dict:
    """Points (x in px) for |SMD| before and after per covariate, the threshold line and axis ticks."""
    before = wide.get("abs_smd_before", pd.Series(dtype=float)).fillna(0.0)
    after = wide.get("abs_smd_after", pd.Series(dtype=float)).fillna(0.0)
    top, step = nice_axis(max([*before, *after, threshold or 0.0, 0.1]))
    span = WIDTH - LEFT - 20

    def x(v: float) -> float:
        return round(LEFT + span * min(v, top) / top, 1)

    rows = [
        {
            "label": cov,
            "y": TOP + ROW_H * i + ROW_H / 2,
            "before": x(b),
            "after": x(a),
            "before_value": b,
            "after_value": a,
            "balanced": threshold is None or a < threshold,
        }
        for i, (cov, b, a) in enumerate(zip(wide["covariate"], before, after, strict=True))
    ]
    ticks = [
        {"x": x(step * k), "label": f"{step * k:.2f}".rstrip("0").rstrip(".")}
        for k in range(round(top / step) + 1)
    ]
    bottom = TOP + ROW_H * len(rows)
    lines = label_lines(axis_label) if axis_label else []
    label = [{"y": bottom + 32 + LINE * i, "text": t} for i, t in enumerate(lines)]
    height = bottom + 32 + LINE * max(len(lines) - 1, 0) + 10  # the last line's descenders inside the SVG
    return {
        "rows": rows,
        "ticks": ticks,
        "width": WIDTH,
        "height": height,
        "left": LEFT,
        "label": label,
        "right": LEFT + span,
        "top": TOP,
        "bottom": TOP + ROW_H * len(rows),
        "threshold": None if threshold is None else {"x": x(threshold), "value": threshold},
    }


def histograms_svg(values: dict[str, np.ndarray], cutoffs: dict[str, float | None]) -> dict:
    """One histogram per method on a shared axis (bins over all methods' values), each with its cut-off."""
    finite = {k: np.asarray(v, float)[np.isfinite(np.asarray(v, float))] for k, v in values.items()}
    every = (
        np.concatenate([*finite.values(), [c for c in cutoffs.values() if c is not None]]) if finite else []
    )
    hi = float(np.max(every)) if len(every) else 1.0
    lo = min(0.0, float(np.min(every))) if len(every) else 0.0
    hi = hi if hi > lo else lo + 1.0
    edges = np.linspace(lo, hi, HIST_BINS + 1)
    span = HIST_W - 60

    def x(v: float) -> float:
        return round(40 + span * (v - lo) / (hi - lo), 1)

    panels = []
    for name, v in finite.items():
        counts, _ = np.histogram(v, edges)
        top = max(int(counts.max()) if len(counts) else 0, 1)
        bars = [
            {
                "x": x(a),
                "w": max(round(x(b) - x(a) - 1, 1), 0.5),
                "h": round(HIST_H * c / top, 1),
                "y": round(20 + HIST_H - HIST_H * c / top, 1),
                "n": int(c),
                "lo": a,
                "hi": b,
            }
            for a, b, c in zip(edges[:-1], edges[1:], counts, strict=True)
            if c
        ]
        cut = cutoffs.get(name)
        panels.append(
            {
                "name": name,
                "n": len(v),
                "bars": bars,
                "max": top,
                "cutoff": None if cut is None else {"x": x(cut), "value": cut},
            }
        )
    ticks = [{"x": x(t), "label": f"{t:.3g}"} for t in np.linspace(lo, hi, 6)]
    return {"panels": panels, "ticks": ticks, "width": HIST_W, "height": HIST_H + 50, "base": 20 + HIST_H}
