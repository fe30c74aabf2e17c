"""`ganmatch explore`: a local, read-only web app over a run's results folder (overview, balance, matched
pairs, latent editor). `load_run` reads the folder, `create_app` builds the Flask app, `serve` runs it."""

from ganmatch.explore.app import create_app
from ganmatch.explore.editor import load_editor
from ganmatch.explore.results import load_run

__all__ = ["create_app", "load_editor", "load_run"]
