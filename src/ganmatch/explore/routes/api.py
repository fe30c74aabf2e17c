"""The editor's renders (through the bounded render queue), scores, and flagging a pair (the one request that
writes: to the --flags file, never the results folder, and only with the page's token)."""

from __future__ import annotations

import hmac

import numpy as np
from flask import Blueprint, Response, abort, request
from werkzeug.exceptions import BadRequest, Forbidden, NotFound

from ganmatch.explore.editor import MAX_BATCH, MAX_STRENGTH, Editor
from ganmatch.explore.params import Params, known_id, parse_float
from ganmatch.explore.state import state

bp = Blueprint("api", __name__)


def need_editor() -> Editor:
    st = state()
    if st.editor is None:
        raise NotFound(f"the editor is not available: {st.editor_note}")
    return st.editor


def strengths(p: Params, ed: Editor) -> dict[str, float]:
    vectors = ed.directions.vectors if ed.directions is not None else {}
    out = {}
    values = p.getlist("edit")
    if len(values) > max(1, len(vectors)):
        raise BadRequest(f"at most {len(vectors)} edits per request")
    for item in values:
        name, sep, value = item.rpartition(":")
        if not sep or name not in vectors:
            raise BadRequest("parameter 'edit' must be <direction>:<strength> with a direction of this run")
        if name in out:
            raise BadRequest(f"direction {name[:60]!r} given twice")
        out[name] = parse_float(value, "edit", -MAX_STRENGTH, MAX_STRENGTH)
    return out


def png(latents: np.ndarray) -> Response:
    """The rendered PNG: from the cache at once, else through the render queue (503 when it is full)."""
    ed = need_editor()
    data = ed.cached(latents)
    if data is None:
        data = state().renders.call(lambda: ed.render(latents))
    resp = Response(data, mimetype="image/png")
    resp.headers["Cache-Control"] = "private, max-age=3600"
    return resp


@bp.get("/api/render")
def api_render():
    ed = need_editor()
    p = Params(request.args, {"image", "edit"}, repeatable={"edit"})
    image_id = known_id(p.raw("image") or "", ed.ids, "projected image")
    return png(ed.edited(image_id, strengths(p, ed))[None])


@bp.get("/api/scores")
def api_scores():
    ed = need_editor()
    p = Params(request.args, {"image", "edit"}, repeatable={"edit"})
    image_id = known_id(p.raw("image") or "", ed.ids, "projected image")
    return {"image": image_id, "scores": ed.scores(ed.edited(image_id, strengths(p, ed)))}


def pair_row(p: Params):
    methods = state().run.methods
    m = methods[p.choice("method", methods, None) or abort(400, "parameter 'method' is required")]
    if not len(m.pairs):
        raise NotFound("this method matched no pair")
    return m, m.pairs.iloc[p.int("pair", 1, 1, len(m.pairs)) - 1]


def pair_ids(p: Params, ed: Editor) -> tuple[str, str]:
    _, row = pair_row(p)
    for i in (row["treated_id"], row["control_id"]):
        known_id(i, ed.ids, "projected image")
    return row["treated_id"], row["control_id"]


@bp.get("/api/interpolate")
def api_interpolate():
    ed = need_editor()
    p = Params(request.args, {"method", "pair", "t"})
    a, b = pair_ids(p, ed)
    return png(ed.interpolated(a, b, [p.float("t", 0.5, 0.0, 1.0)]))


@bp.get("/api/strip")
def api_strip():
    ed = need_editor()
    p = Params(request.args, {"method", "pair", "n"})
    a, b = pair_ids(p, ed)
    n = p.int("n", 7, 2, MAX_BATCH)
    return png(ed.interpolated(a, b, np.linspace(0.0, 1.0, n)))


@bp.post("/api/flag")
def api_flag():
    """Flag (on=1) or unflag (on=0) a pair into the --flags file. Needs the page's token in the
    X-Ganmatch-Token header: a custom header another site's page cannot send without CORS approval."""
    st = state()
    if st.flags is None:
        raise NotFound("flagging is off: start the explorer with --flags FILE to record suspect pairs")
    if not hmac.compare_digest(request.headers.get("X-Ganmatch-Token", ""), st.token):
        raise Forbidden("missing or wrong X-Ganmatch-Token (flags are set from the explorer's own pages)")
    p = Params(request.args, {"method", "pair", "on"})
    m, row = pair_row(p)
    on = p.choice("on", {"0", "1"}, "1") == "1"
    return {
        "method": m.name,
        "treated_id": row["treated_id"],
        "control_id": row["control_id"],
        "flagged": st.flags.set(m.name, row["treated_id"], row["control_id"], on),
        "n_flagged": len(st.flags.rows),
    }
