"""Geometry of the balance page's love plot (|SMD| per covariate before and after matching), drawn as SVG by
the template: numbers here, markup there (so every label is escaped by Jinja)."""

from __future__ import annotations

import math

import pandas as pd

ROW_H = 26
LEFT = 140
WIDTH = 520
TOP = 30


def nice_axis(x: float) -> tuple[float, float]:
    """(axis end, tick step): the end a multiple of a round step (0.05 ... 1) at or above x, 2-5 ticks."""
    for step in (0.05, 0.1, 0.25, 0.5, 1.0):
        if x <= 5 * step:
            return step * max(2, math.ceil(x / step - 1e-9)), step
    step = float(math.ceil(x / 5))
    return step * math.ceil(x / step), step


def love_plot_svg(wide: pd.DataFrame, threshold: float | None) -> dict:
    """Points (x in px) for |SMD| before and after per covariate, the threshold line and axis ticks."""
    before = wide.get("abs_smd_before", pd.Series(dtype=float)).fillna(0.0)
    after = wide.get("abs_smd_after", pd.Series(dtype=float)).fillna(0.0)
    top, step = nice_axis(max([*before, *after, threshold or 0.0, 0.1]))
    span = WIDTH - LEFT - 20

    def x(v: float) -> float:
        return round(LEFT + span * min(v, top) / top, 1)

    rows = [{"label": cov, "y": TOP + ROW_H * i + ROW_H / 2, "before": x(b), "after": x(a),
             "before_value": b, "after_value": a, "balanced": threshold is None or a < threshold}
            for i, (cov, b, a) in enumerate(zip(wide["covariate"], before, after, strict=True))]
    ticks = [{"x": x(step * k), "label": f"{step * k:.2f}".rstrip("0").rstrip(".")} for k in range(round(top / step) + 1)]
    height = TOP + ROW_H * len(rows) + 30
    return {"rows": rows, "ticks": ticks, "width": WIDTH, "height": height, "left": LEFT,
            "right": LEFT + span, "top": TOP, "bottom": TOP + ROW_H * len(rows),
            "threshold": None if threshold is None else {"x": x(threshold), "value": threshold}}
