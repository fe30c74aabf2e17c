"""The explorer's Flask app: four pages (overview, balance, pairs, editor), the run's images and figures, and
the editor's render endpoints. Read-only; every parameter goes through `params.Params`.

Files are served only from the maps the run built at start-up (image id -> aligned PNG, figure name -> PNG),
each resolved and checked to lie inside the results folder at request time, so no part of a URL is ever
joined onto a file-system path.
"""

from __future__ import annotations

import math

import numpy as np
from flask import Flask, Response, abort, render_template, request, send_file, url_for
from flask.globals import request_ctx
from werkzeug.exceptions import BadRequest, HTTPException, NotFound, RequestEntityTooLarge

from ganmatch.explore import charts
from ganmatch.explore.editor import MAX_BATCH, MAX_STRENGTH, Editor
from ganmatch.explore.pairs import (
    COVARIATE_FILTERS,
    FLAG_FILTERS,
    PER_PAGE,
    PairQuery,
    filter_pairs,
    page_of,
    sort_keys,
)
from ganmatch.explore.params import Params, known_id, parse_float
from ganmatch.explore.results import Run, inside

MAX_QUERY = 2048            # bytes of query string a request may carry
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]", "::1"]
REJECTED_PER_PAGE = 50
THUMBS_PER_PAGE = 36
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


def create_app(run: Run, editor: Editor | None = None, editor_note: str = "",
               trusted_hosts: list[str] | None = LOOPBACK_HOSTS) -> Flask:
    """The app over one loaded run; `trusted_hosts` (Host header names accepted, None = any) guards a
    loopback-bound server against DNS rebinding."""
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=1024, TRUSTED_HOSTS=trusted_hosts, JSON_SORT_KEYS=False,
                      SEND_FILE_MAX_AGE_DEFAULT=3600)
    methods = run.methods

    @app.before_request
    def limits():
        if len(request.query_string) > MAX_QUERY:
            abort(414)
        if request.content_length:
            raise RequestEntityTooLarge("this app takes no request bodies")

    @app.after_request
    def headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Cross-Origin-Resource-Policy"] = "same-origin"
        return resp

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if request.path.startswith(("/api/", "/image/", "/figure/", "/static/")) or request_ctx.url_adapter is None:
            return Response(f"{exc.code} {exc.name}: {exc.description}\n", exc.code, mimetype="text/plain")
        return render_template("error.html", run=run, error=exc, page=None), exc.code

    @app.context_processor
    def common():
        return {"run": run, "has_editor": editor is not None, "fmt": fmt, "query_url": query_url}

    def method_param(p: Params) -> str | None:
        return p.choice("method", methods, next(iter(methods), None))

    @app.get("/")
    def overview():
        p = Params(request.args, {"rpage"})
        rows, rpage, n_rpages = page_of(run.rejected, p.int("rpage", 1, 1, 10**6), REJECTED_PER_PAGE)
        reasons = (run.rejected.groupby(["stage", "reason"]).size().rename("images").reset_index()
                   .sort_values("images", ascending=False).head(20))
        return render_template("overview.html", page="overview", rejected=rows, rpage=rpage, n_rpages=n_rpages,
                               reasons=reasons, summary=[m.summary() for m in methods.values()], editor_note=editor_note)

    @app.get("/balance")
    def balance():
        p = Params(request.args, {"method", "sort", "order"})
        name = method_param(p)
        m = methods.get(name)
        columns = list(m.balance.columns) if m is not None and m.balance is not None else ["covariate"]
        sort = p.choice("sort", columns, "covariate")
        order = p.choice("order", {"asc", "desc"}, "asc")
        wide, plot = None, None
        if m is not None and m.balance is not None:
            wide = m.balance.sort_values(sort, ascending=order == "asc", kind="stable", na_position="last")
            plot = charts.love_plot_svg(m.balance, m.threshold)
        return render_template("balance.html", page="balance", method=m, wide=wide, plot=plot, columns=columns,
                               sort=sort, order=order)

    def pair_query(p: Params, pairs) -> PairQuery:
        covs = {c: p.choice(f"f_{c}", COVARIATE_FILTERS, None) for c in run.covariates if f"t_{c}" in pairs}
        return PairQuery(
            sort=p.choice("sort", sort_keys(pairs), "rank"),
            descending=p.choice("order", {"asc", "desc"}, "asc") == "desc",
            covariates={c: v for c, v in covs.items() if v},
            penalised=p.choice("penalised", FLAG_FILTERS, None),
            gap_min=p.float("gap_min", None, 0, 1e12), gap_max=p.float("gap_max", None, 0, 1e12),
            dist_max=p.float("dist_max", None, 0, 1e12),
            page=p.int("page", 1, 1, 10**6), per_page=int(p.choice("per_page", [str(n) for n in PER_PAGE], "50")))

    @app.get("/pairs")
    def pairs():
        allowed = {"method", "sort", "order", "penalised", "gap_min", "gap_max", "dist_max", "page", "per_page",
                   *(f"f_{c}" for c in run.covariates)}
        p = Params(request.args, allowed)
        name = method_param(p)
        m = methods.get(name)
        if m is None:
            return render_template("pairs.html", page="pairs", method=None)
        q = pair_query(p, m.pairs)
        selected = filter_pairs(m.pairs, q)
        rows, page, n_pages = page_of(selected, q.page, q.per_page)
        dist_cols = [c for c in m.pairs.columns if c.startswith("dist_")]
        refdist_cols = [c for c in m.pairs.columns if c.startswith("refdist_")]
        covs = [c for c in run.covariates if f"t_{c}" in m.pairs]
        return render_template("pairs.html", page="pairs", method=m, rows=rows.to_dict("records"), q=q,
                               n_selected=len(selected), page_no=page, n_pages=n_pages, covs=covs,
                               dist_cols=dist_cols, refdist_cols=refdist_cols, sort_keys=sort_keys(m.pairs),
                               covariate_filters=COVARIATE_FILTERS, per_page_choices=PER_PAGE)

    @app.get("/editor")
    def editor_page():
        p = Params(request.args, {"image", "method", "pair", "ipage"})
        if editor is None:
            return render_template("editor.html", page="editor", note=editor_note)
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
        neighbours = {"prev": ids[pos - 1] if pos > 0 else None, "next": ids[pos + 1] if pos + 1 < len(ids) else None}
        n_ipages = -(-len(ids) // THUMBS_PER_PAGE)
        ipage = p.int("ipage", pos // THUMBS_PER_PAGE + 1, 1, n_ipages)
        thumbs = list(ids[(ipage - 1) * THUMBS_PER_PAGE: ipage * THUMBS_PER_PAGE])
        directions = editor.directions
        rows = [] if directions is None else [
            dict(r, sd=editor.sd[str(r["direction"])], score=s)
            for r, s in zip(directions.table.to_dict("records"),
                            editor.scores(editor.latent(image)).values(), strict=True)]
        return render_template("editor.html", page="editor", image=image, directions=rows,
                               skipped=None if directions is None else directions.skipped.to_dict("records"),
                               has_directions=directions is not None, max_strength=MAX_STRENGTH,
                               method=method, pair=pair, rank=None if pair is None else int(pair["rank"]),
                               neighbours=neighbours, n_images=len(ids), max_batch=MAX_BATCH,
                               thumbs=thumbs, ipage=ipage, n_ipages=n_ipages,
                               has_image_file=image in run.images)

    def send_known_png(key: str, files: dict, what: str, max_age: int):
        """A PNG of the results folder looked up by id in `files` (never a path from the request)."""
        Params(request.args, set())
        known_id(key, files, what)
        path = inside(run.root, files[key])
        if path is None:
            raise NotFound(f"the {what} file is missing")
        return send_file(path, mimetype="image/png", max_age=max_age)

    @app.get("/image/<path:image_id>")
    def image(image_id: str):
        return send_known_png(image_id, run.images, "aligned image", 3600)

    @app.get("/figure/<name>.png")
    def figure(name: str):
        return send_known_png(name, run.figures, "figure", 60)

    def need_editor() -> Editor:
        if editor is None:
            raise NotFound(f"the editor is not available: {editor_note}")
        return editor

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

    def png(data: bytes) -> Response:
        resp = Response(data, mimetype="image/png")
        resp.headers["Cache-Control"] = "private, max-age=3600"
        return resp

    @app.get("/api/render")
    def api_render():
        ed = need_editor()
        p = Params(request.args, {"image", "edit"}, repeatable={"edit"})
        image_id = known_id(p.raw("image") or "", ed.ids, "projected image")
        return png(ed.render(ed.edited(image_id, strengths(p, ed))[None]))

    @app.get("/api/scores")
    def api_scores():
        ed = need_editor()
        p = Params(request.args, {"image", "edit"}, repeatable={"edit"})
        image_id = known_id(p.raw("image") or "", ed.ids, "projected image")
        return {"image": image_id, "scores": ed.scores(ed.edited(image_id, strengths(p, ed)))}

    def pair_ids(p: Params, ed: Editor) -> tuple[str, str]:
        m = methods[p.choice("method", methods, None) or abort(400, "parameter 'method' is required")]
        if not len(m.pairs):
            raise NotFound("this method matched no pair")
        row = m.pairs.iloc[p.int("pair", 1, 1, len(m.pairs)) - 1]
        for i in (row["treated_id"], row["control_id"]):
            known_id(i, ed.ids, "projected image")
        return row["treated_id"], row["control_id"]

    @app.get("/api/interpolate")
    def api_interpolate():
        ed = need_editor()
        p = Params(request.args, {"method", "pair", "t"})
        a, b = pair_ids(p, ed)
        return png(ed.render(ed.interpolated(a, b, [p.float("t", 0.5, 0.0, 1.0)])))

    @app.get("/api/strip")
    def api_strip():
        ed = need_editor()
        p = Params(request.args, {"method", "pair", "n"})
        a, b = pair_ids(p, ed)
        n = p.int("n", 7, 2, MAX_BATCH)
        return png(ed.render(ed.interpolated(a, b, np.linspace(0.0, 1.0, n))))

    @app.get("/favicon.ico")
    def favicon():
        return app.send_static_file("favicon.svg")

    return app


def fmt(value, digits: int = 3) -> str:
    """A table cell: numbers to `digits` significant places, NaN/None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "–" if not math.isfinite(value) else f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def query_url(endpoint: str, args, **changes) -> str:
    """URL of `endpoint` with the current query `args` updated by `changes` (None drops a key)."""
    params = {k: v for k, v in args.items() if v not in (None, "")}
    for k, v in changes.items():
        if v is None:
            params.pop(k, None)
        else:
            params[k] = v
    return url_for(endpoint, **params)
