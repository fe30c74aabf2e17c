"""The explorer's Flask app: the request guards and headers here, the routes in blueprints (`routes/`): pages
(overview, balance, pairs, pair and image views, one unit under every method, distances, editor), files (the
run's images and figures), api (renders, scores, flags) and export (CSV / Parquet). Read-only on the results
folder; every parameter goes through `params.Params`.

Files are served only from the maps the run built at start-up (image id -> aligned PNG, figure name -> PNG),
each resolved and checked to lie inside the results folder at request time, so no part of a URL is ever
joined onto a file-system path.
"""

from __future__ import annotations

import math
import os
import re
import secrets

import numpy as np
from flask import Flask, Response, abort, render_template, request, url_for
from flask.globals import request_ctx
from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge

from ganmatch.explore.editor import Editor
from ganmatch.explore.flags import Flags
from ganmatch.explore.renderqueue import RenderQueue
from ganmatch.explore.results import Run
from ganmatch.explore.routes import api, export, files, pages
from ganmatch.explore.state import Explorer

MAX_QUERY = 2048  # bytes of query string a request may carry
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]", "::1"]
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HOST_RE = re.compile(r"(?:\[([0-9a-f:.]+)\]|([a-z0-9.-]+))(?::\d{1,5})?")
BARE_IPV6_RE = re.compile(r"[0-9a-f:.]*:[0-9a-f:.]*")
PLAIN_PREFIXES = ("/api/", "/image/", "/original/", "/figure/", "/static/", "/export/")


def create_app(
    run: Run,
    editor: Editor | None = None,
    editor_note: str = "",
    trusted_hosts: list[str] | None = LOOPBACK_HOSTS,
    flags: Flags | None = None,
    renders: RenderQueue | None = None,
) -> Flask:
    """The app over one loaded run; `trusted_hosts` (Host header names accepted, None = any) guards a
    loopback-bound server against DNS rebinding; `flags` is the file flagged pairs go to (None: flagging
    off)."""
    app = Flask(__name__)
    # the Host check is ours (werkzeug's TRUSTED_HOSTS cuts "[::1]" at its first colon and so refuses IPv6)
    app.config.update(
        MAX_CONTENT_LENGTH=1024, TRUSTED_HOSTS=None, JSON_SORT_KEYS=False, SEND_FILE_MAX_AGE_DEFAULT=3600
    )
    trusted = None if trusted_hosts is None else {host_name(h) for h in trusted_hosts}
    app.extensions["ganmatch"] = Explorer(
        run, editor, editor_note, renders or RenderQueue(), flags, secrets.token_urlsafe(24)
    )
    for bp in (pages.bp, files.bp, api.bp, export.bp):
        app.register_blueprint(bp)

    @app.before_request
    def limits():
        if trusted is not None and host_name(request.headers.get("Host", "")) not in trusted:
            raise BadRequest("untrusted Host header (the explorer answers only to the address it serves on)")
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
        resp_headers = {"Retry-After": str(exc.retry_after)} if getattr(exc, "retry_after", None) else {}
        if request.path.startswith(PLAIN_PREFIXES) or request_ctx.url_adapter is None:
            return Response(
                f"{exc.code} {exc.name}: {exc.description}\n",
                exc.code,
                mimetype="text/plain",
                headers=resp_headers,
            )
        return render_template("error.html", run=run, error=exc, page=None), exc.code, resp_headers

    @app.context_processor
    def common():
        st = app.extensions["ganmatch"]
        return {
            "run": run,
            "has_editor": editor is not None,
            "fmt": fmt,
            "query_url": query_url,
            "has_image": lambda image_id: has_image(run, image_id),
            "flags_on": st.flags is not None,
            "flag_token": st.token,
            "large_faces": run.face_size > 64,
        }

    return app


def host_name(host: str) -> str:
    """The name in a Host header or a trusted-host entry, port dropped, IPv6 without brackets ('[::1]:80' ->
    '::1'); '' for anything that is not a plain name, address or [IPv6] with an optional port."""
    host = host.strip().lower()
    m = HOST_RE.fullmatch(host)
    if m:
        return m.group(1) or m.group(2)
    return host if BARE_IPV6_RE.fullmatch(host) else ""  # a trusted-host entry such as "::1"


def has_image(run: Run, image_id) -> bool:
    """Whether the image's aligned PNG is there now (a missing file gets the "no image" placeholder); one
    stat, as a page shows hundreds of faces (the file route still resolves and checks each path it serves)."""
    return isinstance(image_id, str) and image_id in run.images and os.path.isfile(run.images[image_id])


def fmt(value, digits: int = 3) -> str:
    """A table cell: numbers to `digits` significant places, NaN/None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return (
            "–" if not math.isfinite(value) else f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.0f}"
        )
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
