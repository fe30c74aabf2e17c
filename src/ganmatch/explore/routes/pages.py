"""The explorer's HTML pages: overview, balance, pairs, one pair at full size, one image at full size, one
treated unit under every method, distance histograms, and the latent editor."""

from __future__ import annotations

import numpy as np
import pandas as pd
from flask import Blueprint, render_template, request
from werkzeug.exceptions import BadRequest

from ganmatch.explore import charts
from ganmatch.explore.editor import MAX_BATCH, MAX_STRENGTH
from ganmatch.explore.pairs import COVARIATE_FILTERS, PER_PAGE, filter_pairs, page_of, sort_keys
from ganmatch.explore.params import Params, known_id
from ganmatch.explore.routes.common import method_param, pair_params, pair_query
from ganmatch.explore.state import state

bp = Blueprint("pages", __name__)
REJECTED_PER_PAGE = 50
THUMBS_PER_PAGE = 36
GROUP_SHOWN = 60  # faces of each side shown per subclass (the rest: filter by image id, or export)
BALANCE_GROUPS = [
    ("smd", "mean difference"),
    ("var_ratio", "variance ratio"),
    ("ks_max", "KS statistic"),
    ("mean_treated", "treated mean"),
    ("mean_control", "control mean"),
]


@bp.get("/")
def overview():
    st = state()
    run = st.run
    p = Params(request.args, {"rpage"})
    rows, rpage, n_rpages = page_of(run.rejected, p.int("rpage", 1, 1, 10**6), REJECTED_PER_PAGE)
    reasons = (
        run.rejected.groupby(["stage", "reason"])
        .size()
        .rename("images")
        .reset_index()
        .sort_values("images", ascending=False)
        .head(20)
    )
    return render_template(
        "overview.html",
        page="overview",
        rejected=rows,
        rpage=rpage,
        n_rpages=n_rpages,
        reasons=reasons,
        summary=[m.summary() for m in run.methods.values()],
        editor_note=st.editor_note,
    )


@bp.get("/balance")
def balance():
    run = state().run
    p = Params(request.args, {"method", "sort", "order"})
    m = run.methods.get(method_param(p, run))
    columns = list(m.balance.columns) if m is not None and m.balance is not None else ["covariate"]
    sort = p.choice("sort", columns, "covariate")
    order = p.choice("order", {"asc", "desc"}, "asc")
    wide, plot, groups, mismatches = None, None, [], {}
    if m is not None and m.balance is not None:
        wide = m.balance.sort_values(sort, ascending=order == "asc", kind="stable", na_position="last")
        plot = charts.love_plot_svg(m.balance, m.threshold, m.axis_label)
        groups = [
            (s, label, [c for c in (f"{s}_before", f"{s}_after") if c in wide]) for s, label in BALANCE_GROUPS
        ]
        groups = [g for g in groups if g[2]]
        mismatches = m.mismatches(run.covariates)
    return render_template(
        "balance.html",
        page="balance",
        method=m,
        wide=wide,
        plot=plot,
        columns=columns,
        sort=sort,
        order=order,
        groups=groups,
        mismatches=mismatches,
    )


@bp.get("/pairs")
def pairs():
    st = state()
    run = st.run
    p = Params(request.args, pair_params(run))
    m = run.methods.get(method_param(p, run))
    if m is None:
        return render_template("pairs.html", page="pairs", method=None)
    q = pair_query(p, m, run)
    selected = filter_pairs(m.pairs, q)
    grouped = m.weighted and q.sort == "subclass"
    groups = []
    if grouped:  # a page of subclasses, each its treated and its controls (weights), not one row per link
        subs, page, n_pages = page_of(pd.Series(selected["subclass"].unique()), q.page, q.per_page)
        rows = selected[selected["subclass"].isin(set(subs))]
        groups = [subclass_group(k, g) for k, g in rows.groupby("subclass", sort=False)]
    else:
        rows, page, n_pages = page_of(selected, q.page, q.per_page)
    covs = [c for c in run.covariates if f"t_{c}" in m.pairs]
    return render_template(
        "pairs.html",
        page="pairs",
        method=m,
        rows=rows.to_dict("records"),
        q=q,
        n_selected=len(selected),
        page_no=page,
        n_pages=n_pages,
        covs=covs,
        mismatches=m.mismatches(covs),
        dist_cols=[c for c in m.pairs.columns if c.startswith("dist_")],
        refdist_cols=[c for c in m.pairs.columns if c.startswith("refdist_")],
        sort_keys=sort_keys(m.pairs),
        covariate_filters=COVARIATE_FILTERS,
        per_page_choices=PER_PAGE,
        grouped=grouped,
        groups=groups,
        subclasses=m.subclass_sizes if m.weighted else {},
        flagged=st.flags.keys(m.name) if st.flags is not None else set(),
    )


def subclass_group(k, rows: pd.DataFrame) -> dict:
    """One subclass of a weighted method on the pairs page: its treated and controls (each once, with the
    rank of a row that links it, for the pair view), the controls' weights, at most GROUP_SHOWN of each."""
    t = rows[["treated_id", "rank"]].drop_duplicates("treated_id")
    c = rows[["control_id", "rank", "weight"]].drop_duplicates("control_id")
    return {
        "subclass": k,
        "n_treated": len(t),
        "n_controls": len(c),
        "treated": t.head(GROUP_SHOWN).to_dict("records"),
        "controls": c.head(GROUP_SHOWN).to_dict("records"),
    }


def side(run, image_id: str, ed) -> dict:
    """One image's three views: original photo, aligned crop, GAN reconstruction (each None when absent)."""
    return {
        "id": image_id,
        "original": run.original_path(image_id) is not None,
        "reconstruction": ed is not None and image_id in ed.ids,
        "info": run.image_info(image_id),
    }


@bp.get("/pair")
def pair_view():
    st = state()
    run = st.run
    p = Params(request.args, {"method", "pair"})
    name = p.choice("method", run.methods, None)
    if name is None:
        raise BadRequest("parameter 'method' is required")
    m = run.methods[name]
    if not len(m.pairs):
        raise BadRequest(f"method {name!r} matched no pair")
    rank = p.int("pair", 1, 1, len(m.pairs))
    row = m.pairs.iloc[rank - 1].to_dict()
    covs = [c for c in run.covariates if f"t_{c}" in m.pairs]
    return render_template(
        "pair.html",
        page="pairs",
        method=m,
        rank=rank,
        row=row,
        covs=covs,
        sides=[
            ("treated", side(run, row["treated_id"], st.editor)),
            ("control", side(run, row["control_id"], st.editor)),
        ],
        dist_cols=[c for c in m.pairs.columns if c.startswith("dist_")],
        flagged=st.flags is not None and (row["treated_id"], row["control_id"]) in st.flags.keys(name),
    )


@bp.get("/view")
def image_view():
    st = state()
    run = st.run
    p = Params(request.args, {"image"})
    image = known_id(p.raw("image") or "", run.index_ids, "image")
    return render_template(
        "view.html",
        page=None,
        s=side(run, image, st.editor),
        n_rows={
            n: int(((m.pairs["treated_id"] == image) | (m.pairs["control_id"] == image)).sum())
            for n, m in run.methods.items()
        },
    )


@bp.get("/unit")
def unit():
    """One image's matches under every method, side by side (as treated, or as control when it is one)."""
    st = state()
    run = st.run
    p = Params(request.args, {"image"})
    image = known_id(p.raw("image") or "", run.index_ids, "image")
    columns = []
    for m in run.methods.values():
        as_t = m.pairs[m.pairs["treated_id"] == image]
        as_c = m.pairs[m.pairs["control_id"] == image]
        role, rows, other = (
            ("treated", as_t, "control_id") if len(as_t) or not len(as_c) else ("control", as_c, "treated_id")
        )
        columns.append(
            {
                "method": m,
                "role": role,
                "matches": [
                    {
                        "id": r[other],
                        "rank": int(r["rank"]),
                        "distance": r["distance"],
                        "weight": r.get("weight"),
                        "subclass": r.get("subclass"),
                    }
                    for r in rows.head(60).to_dict("records")
                ],
                "n": len(rows),
            }
        )
    return render_template("unit.html", page=None, image=image, columns=columns, info=run.image_info(image))


@bp.get("/distances")
def distances():
    """Each method's pair distances as a histogram with its cut-off (the largest distance it accepted): on its
    own distance (methods sharing a scale share an axis, one chart per scale), or on one embedding for all."""
    run = state().run
    p = Params(request.args, {"embedding"})
    emb = p.choice("embedding", ["own", *run.embeddings], "own")
    scales: dict[str, tuple[dict, dict]] = {}
    for name, m in run.methods.items():
        col = "distance" if emb == "own" else f"dist_{emb}"
        if col not in m.pairs or not len(m.pairs):
            continue
        scale = m.distance_label() if emb == "own" else f"distance on the {emb} embedding"
        values, cutoffs = scales.setdefault(scale, ({}, {}))
        values[name] = m.pairs[col].to_numpy(float)
        kept = m.pairs["distance"].to_numpy(float)
        cutoffs[name] = float(np.nanmax(kept)) if emb == "own" and np.isfinite(kept).any() else None
    charts_ = [(scale, charts.histograms_svg(v, c)) for scale, (v, c) in scales.items()]
    return render_template("distances.html", page="distances", charts=charts_, embedding=emb)


@bp.get("/editor")
def editor_page():
    st = state()
    run, editor = st.run, st.editor
    methods = run.methods
    p = Params(request.args, {"image", "method", "pair", "ipage"})
    if editor is None:
        return render_template("editor.html", page="editor", note=st.editor_note)
    method = p.choice("method", methods, None)
    pair = None
    if method is not None:
        n = len(methods[method].pairs)
        if n:
            rank = p.int("pair", 1, 1, n)
            pair = methods[method].pairs.iloc[rank - 1]
            if pair["treated_id"] not in editor.ids or pair["control_id"] not in editor.ids:
                pair = None
    else:
        p.int("pair", 1, 1, 10**6)
    default = pair["treated_id"] if pair is not None else editor.image_ids[0]
    image = p.raw("image") or default
    known_id(image, editor.ids, "projected image")
    pos = int(editor.ids[image])
    ids = editor.image_ids
    neighbours = {
        "prev": ids[pos - 1] if pos > 0 else None,
        "next": ids[pos + 1] if pos + 1 < len(ids) else None,
    }
    n_ipages = -(-len(ids) // THUMBS_PER_PAGE)
    ipage = p.int("ipage", pos // THUMBS_PER_PAGE + 1, 1, n_ipages)
    thumbs = list(ids[(ipage - 1) * THUMBS_PER_PAGE : ipage * THUMBS_PER_PAGE])
    directions = editor.directions
    rows = (
        []
        if directions is None
        else [
            dict(r, sd=editor.sd[str(r["direction"])], score=s)
            for r, s in zip(
                directions.table.to_dict("records"), editor.scores(editor.latent(image)).values(), strict=True
            )
        ]
    )
    for r in rows:
        cond = str(r.get("conditional_on") or "")
        r["label"] = str(r.get("attribute") or r["direction"]).split("|")[0] if cond else r["direction"]
        r["given"] = ", ".join(c for c in cond.split(",") if c)
    return render_template(
        "editor.html",
        page="editor",
        image=image,
        directions=rows,
        skipped=None if directions is None else directions.skipped.to_dict("records"),
        has_directions=directions is not None,
        max_strength=MAX_STRENGTH,
        method=method,
        pair=pair,
        rank=None if pair is None else int(pair["rank"]),
        neighbours=neighbours,
        n_images=len(ids),
        max_batch=MAX_BATCH,
        thumbs=thumbs,
        ipage=ipage,
        n_ipages=n_ipages,
        info=run.image_info(image),
    )
