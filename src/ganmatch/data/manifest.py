"""sha256 manifests of a folder: what a reproducible world is checked against, on any machine."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def folder_manifest(folder: str | os.PathLike) -> dict[str, str]:
    """{path relative to `folder` (POSIX): sha256} for every regular file below it, sorted by path."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    return {p.relative_to(folder).as_posix(): file_sha256(p) for p in files}


def format_manifest(manifest: dict[str, str]) -> str:
    """sha256sum's format (`<hash>  <path>` per line), so `sha256sum -c` checks it too."""
    return "".join(f"{digest}  {path}\n" for path, digest in sorted(manifest.items()))


def parse_manifest(text: str) -> dict[str, str]:
    """Read `format_manifest`'s text back; blank and # lines are skipped."""
    out = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            digest, path = line.split(maxsplit=1)
            out[path.strip().lstrip("*")] = digest
    return out


def manifest_differences(want: dict[str, str], got: dict[str, str]) -> list[str]:
    """One line per file that is missing, extra or different, for an assertion message."""
    lines = [f"missing: {p}" for p in sorted(set(want) - set(got))]
    lines += [f"extra: {p}" for p in sorted(set(got) - set(want))]
    lines += [f"differs: {p}" for p in sorted(set(want) & set(got)) if want[p] != got[p]]
    return lines
