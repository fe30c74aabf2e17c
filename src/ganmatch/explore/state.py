"""What every blueprint of the explorer reads: the loaded run, the editor, the render queue and the flags
file, kept on the Flask app (`state()` inside a request)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from ganmatch.explore.editor import Editor
from ganmatch.explore.flags import Flags
from ganmatch.explore.renderqueue import RenderQueue
from ganmatch.explore.results import Run


@dataclass
class Explorer:
    """One served run: its tables, the editor (None when off, with `editor_note` saying why), the queue its
    renders wait in, the flags file (None unless --flags) and the token a flag request must carry."""

    run: Run
    editor: Editor | None
    editor_note: str
    renders: RenderQueue
    flags: Flags | None
    token: str


def state() -> Explorer:
    return current_app.extensions["ganmatch"]
