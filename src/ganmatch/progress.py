"""Progress lines for long jobs: done / total, rate and ETA in the job log at a steady interval.

At 30,000 images alignment, projection, embeddings and the face models run for minutes to hours; a log that
holds only a start and an end line cannot tell a slow job from a hung one. `Progress` logs at most one line
every `every` seconds (and always the last one); `map_in_chunks` runs a per-image function in chunks so that
stages without their own loop report progress and hold only one chunk of decoded images at a time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

EVERY_S = 30.0
"""Seconds between two progress lines of one job: often enough to see a job move, rarely enough to keep
logs short."""

CHUNK = 256
"""Images per chunk in `map_in_chunks`: ~50 MB of 256 px crops, many chunks per shard of thousands of
images."""


def format_duration(seconds: float) -> str:
    """A short human duration: 42s, 3m05s, 2h07m."""
    if not np.isfinite(seconds):
        return "?"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """Counts finished items of a job and logs `what: done/total (pct), rate, ETA` at a steady interval.

    `update(n)` after each item or batch; a line is logged when `every` seconds passed since the last one,
    and when the count reaches `total`. `every` defaults to `EVERY_S` (read at call time); `clock` is
    injectable so tests need not sleep.
    """

    def __init__(
        self,
        total: int,
        what: str,
        unit: str = "images",
        every: float | None = None,
        log: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total, self.what, self.unit = int(total), what, unit
        self.every = EVERY_S if every is None else float(every)
        self.log = log or logging.getLogger("ganmatch")
        self.clock = clock
        self.done = 0
        self.start = self.last = clock()
        self.lines: list[str] = []
        self.log.info("%s: %d %s to do", what, self.total, unit)

    def line(self) -> str:
        """The current progress line (without logging it)."""
        elapsed = self.clock() - self.start
        rate = self.done / elapsed if elapsed > 0 else float("nan")
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        text = f"{self.what}: {self.done}/{self.total} {self.unit} ({pct:.0f}%), "
        text += f"{rate:.2f} {self.unit}/s, " if np.isfinite(rate) else ""
        finished = self.done >= self.total
        return text + (f"took {format_duration(elapsed)}" if finished else f"ETA {format_duration(left)}")

    def update(self, n: int = 1) -> None:
        """Count `n` more finished items; log a line if the interval passed or the job is complete."""
        self.done += int(n)
        now = self.clock()
        if self.done >= self.total or now - self.last >= self.every:
            self.last = now
            text = self.line()
            self.lines.append(text)
            self.log.info("%s", text)


def map_in_chunks(
    fn: Callable[[Sequence], np.ndarray | pd.DataFrame],
    items: Sequence,
    progress: Progress,
    chunk: int | None = None,
):
    """`fn(items)` computed on consecutive chunks, concatenated in order (arrays or DataFrames), with
    progress.

    `fn` must treat items independently (a per-image embedder or face model); the result equals `fn(items)`.
    `chunk` defaults to `CHUNK` (read at call time).
    """
    chunk = chunk or CHUNK
    parts = []
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        parts.append(fn(part))
        progress.update(len(part))
    if not parts:
        return fn(items)
    if isinstance(parts[0], pd.DataFrame):
        return pd.concat(parts, ignore_index=True)
    return np.concatenate(parts)
