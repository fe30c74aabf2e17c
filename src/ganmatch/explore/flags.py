"""Suspect pairs a researcher flags in the explorer, kept in a CSV file the user names (`--flags FILE`),
never in the results folder (the app stays read-only there). The whole list is rewritten atomically on every
change."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ganmatch.data.io import atomic_path
from ganmatch.errors import ConfigError

COLUMNS = ["method", "treated_id", "control_id", "flagged_at"]


class Flags:
    """The flagged (method, treated_id, control_id) rows, loaded from `path` when it exists."""

    def __init__(self, path: str | Path, results: Path):
        self.path = Path(path).resolve()
        if self.path.is_relative_to(results.resolve()):
            raise ConfigError(
                f"--flags {path}: inside the results folder {results}, which the explorer never "
                "writes to; name a file elsewhere (e.g. flags.csv in your working folder)"
            )
        if self.path.is_dir():
            raise ConfigError(f"--flags {path}: is a folder; name a CSV file to write the flagged pairs to")
        self.lock = threading.Lock()
        self.rows = pd.DataFrame(columns=COLUMNS)
        if self.path.is_file() and self.path.stat().st_size:
            try:
                table = pd.read_csv(self.path, dtype=str, keep_default_na=False)
            except (ValueError, OSError) as exc:
                raise ConfigError(
                    f"--flags {path}: not a readable CSV of flagged pairs ({exc}); "
                    "move it away or name another file"
                ) from exc
            if not set(COLUMNS[:3]) <= set(table.columns):
                raise ConfigError(f"--flags {path}: lacks the columns {COLUMNS[:3]}; name another file")
            self.rows = table.reindex(columns=COLUMNS).fillna("")

    def keys(self, method: str) -> set[tuple[str, str]]:
        """The (treated_id, control_id) pairs of `method` that are flagged."""
        r = self.rows[self.rows["method"] == method]
        return set(zip(r["treated_id"], r["control_id"], strict=True))

    def set(self, method: str, treated: str, control: str, on: bool) -> bool:
        """Flag (on) or unflag a pair and write the file; returns whether it is flagged now."""
        with self.lock:
            same = (
                (self.rows["method"] == method)
                & (self.rows["treated_id"] == treated)
                & (self.rows["control_id"] == control)
            )
            rows = self.rows[~same]
            if on:
                now = datetime.now(timezone.utc).isoformat(timespec="seconds")
                rows = pd.concat(
                    [rows, pd.DataFrame([[method, treated, control, now]], columns=COLUMNS)],
                    ignore_index=True,
                )
            with atomic_path(self.path, ".csv") as tmp:
                rows.to_csv(tmp, index=False)
            self.rows = rows.reset_index(drop=True)
        return on
