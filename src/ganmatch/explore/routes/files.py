"""The run's files: aligned faces, original photos and figures, looked up by id in maps built at start-up
(never a path taken from the request), each resolved and checked at request time."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, current_app, request, send_file
from werkzeug.exceptions import NotFound

from ganmatch.explore.params import Params, known_id
from ganmatch.explore.results import PHOTO_TYPES, inside
from ganmatch.explore.state import state

bp = Blueprint("files", __name__)


def send_known_png(key: str, files: dict, what: str, max_age: int):
    """A PNG of the results folder looked up by id in `files` (never a path from the request)."""
    Params(request.args, set())
    known_id(key, files, what)
    path = inside(state().run.root, files[key])
    if path is None:
        raise NotFound(f"the {what} file is missing")
    return send_file(path, mimetype="image/png", max_age=max_age)


@bp.get("/image/<path:image_id>")
def image(image_id: str):
    return send_known_png(image_id, state().run.images, "aligned image", 3600)


@bp.get("/original/<path:image_id>")
def original(image_id: str):
    """The image's original photo (inside the project the results folder belongs to, an image type)."""
    Params(request.args, set())
    run = state().run
    known_id(image_id, run.index_ids, "image")
    path: Path | None = run.original_path(image_id)
    if path is None:
        raise NotFound("the original photo is not in this project (or not an image file)")
    return send_file(path, mimetype=PHOTO_TYPES[path.suffix.lower()], max_age=3600)


@bp.get("/figure/<name>.png")
def figure(name: str):
    return send_known_png(name, state().run.figures, "figure", 60)


@bp.get("/favicon.ico")
def favicon():
    return current_app.send_static_file("favicon.svg")
