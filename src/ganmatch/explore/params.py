"""Strict parsing of request parameters: every id, name and number a request carries is checked here.

A route declares the parameters it accepts; an unknown, repeated, over-long, malformed or out-of-range one
is a 400 with a message naming it, never an exception deeper in the app.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping

from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest

MAX_VALUE_LENGTH = 200
INT_RE = re.compile(r"[+-]?\d{1,9}")
FLOAT_RE = re.compile(r"[+-]?(\d{1,20}(\.\d{0,30})?|\.\d{1,30})([eE][+-]?\d{1,3})?")


class Params:
    """The query of one request, restricted to `allowed` names (`repeatable` ones may occur several times)."""

    def __init__(self, args: MultiDict, allowed: Collection[str], repeatable: Collection[str] = ()):
        for key in args:
            if key not in allowed:
                raise BadRequest(f"unknown parameter {key[:40]!r}; this page takes {sorted(allowed)}")
            values = args.getlist(key)
            if len(values) > 1 and key not in repeatable:
                raise BadRequest(f"parameter {key!r} given {len(values)} times")
            if any(len(v) > MAX_VALUE_LENGTH for v in values):
                raise BadRequest(f"parameter {key!r} is longer than {MAX_VALUE_LENGTH} characters")
        self.args = args

    def raw(self, name: str) -> str | None:
        value = self.args.get(name)
        return None if value in (None, "") else value

    def int(self, name: str, default: int, lo: int, hi: int) -> int:
        """An integer in [lo, hi]."""
        value = self.raw(name)
        if value is None:
            return default
        if not INT_RE.fullmatch(value) or not lo <= int(value) <= hi:
            raise BadRequest(f"parameter {name!r} must be an integer from {lo} to {hi}")
        return int(value)

    def float(self, name: str, default: float | None, lo: float, hi: float) -> float | None:
        """A finite number in [lo, hi]."""
        value = self.raw(name)
        return default if value is None else parse_float(value, name, lo, hi)

    def choice(self, name: str, choices: Collection[str], default: str | None) -> str | None:
        """One of `choices` (ids, method names, sort keys: never used as a path)."""
        value = self.raw(name)
        if value is None:
            return default
        if value not in choices:
            shown = sorted(choices)[:20]
            raise BadRequest(
                f"parameter {name!r}: unknown value {value[:60]!r}; expected one of {shown}"
                f"{' ...' if len(choices) > 20 else ''}"
            )
        return value

    def getlist(self, name: str) -> list[str]:
        return self.args.getlist(name)


def parse_float(value: str, name: str, lo: float, hi: float) -> float:
    """A decimal number in [lo, hi] (no nan, inf, hex or other float() spellings)."""
    if not FLOAT_RE.fullmatch(value):
        raise BadRequest(f"parameter {name!r} must be a number from {lo:g} to {hi:g}")
    x = float(value)
    if not math.isfinite(x) or not lo <= x <= hi:
        raise BadRequest(f"parameter {name!r} must be a number from {lo:g} to {hi:g}")
    return x


def known_id(value: str, known: Mapping | Collection, what: str) -> str:
    """`value` if it is one of the run's ids, else a 404 naming nothing but the kind of id."""
    from werkzeug.exceptions import NotFound

    if len(value) > MAX_VALUE_LENGTH or value not in known:
        raise NotFound(f"no {what} with that id in this results folder")
    return value
