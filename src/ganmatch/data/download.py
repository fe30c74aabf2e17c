"""Resumable, verified HTTP downloads and safe archive extraction for untrusted files.

A download goes to `<dest>.part`, resumes with an HTTP Range request after a dropped connection,
is checked against its sha256/md5 (or a hash recorded in a lock file on first download), and only then
is renamed onto `<dest>`: nothing downloaded is used before its checksum matches. When every mirror
fails, the error says which URL to fetch by hand and where to put it.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import posixpath
import stat
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from ganmatch.errors import DownloadError

log = logging.getLogger("ganmatch.data.download")

USER_AGENT = "ganmatch-downloader/0.1 (+https://github.com/; research pipeline)"
HASH_ALGOS = ("sha256", "md5")


class _Retryable(Exception):
    """A transient failure (connection dropped, timeout, 5xx): try again, resuming the .part file."""


class _Fatal(Exception):
    """A failure that retrying the same URL will not fix (404, 403): go to the next mirror."""


# ---------------------------------------------------------------- hashing


def file_hash(path: str | os.PathLike, algo: str = "sha256", chunk_size: int = 1 << 20) -> str:
    """Hex digest of a file, read in chunks so multi-GB weights never sit in memory."""
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def verify_file(path: str | os.PathLike, sha256: str | None = None, md5: str | None = None) -> None:
    """Raise DownloadError unless `path` exists and matches every checksum given (hex, any case)."""
    path = Path(path)
    if not path.is_file():
        raise DownloadError(f"{path} does not exist; cannot verify its checksum.")
    for algo, expected in (("sha256", sha256), ("md5", md5)):
        if expected:
            got = file_hash(path, algo)
            if got.lower() != expected.strip().lower():
                raise DownloadError(f"checksum mismatch for {path}: {algo} is {got}, expected "
                                    f"{expected.lower()}.")


# -------------------------------------------------------------- lock file (hashes recorded on first download)


def _lock_key(dest: Path, lock: Path) -> str:
    """Key of `dest` in the lock file: its path relative to the lock file's folder, POSIX style."""
    try:
        return Path(os.path.relpath(dest.resolve(), lock.resolve().parent)).as_posix()
    except ValueError:  # different drive on Windows
        return dest.resolve().as_posix()


def read_lock(lock: str | os.PathLike) -> dict[str, dict]:
    """The lock file as {relative path: {"sha256", "size", "url"}}; empty when it does not exist."""
    lock = Path(lock)
    if not lock.exists():
        return {}
    try:
        return json.loads(lock.read_text())
    except json.JSONDecodeError as err:
        raise DownloadError(f"lock file {lock} is not valid JSON ({err}); fix or delete it.") from err


@contextlib.contextmanager
def _locked(lock: Path):
    """Serialise read-modify-write of the lock file between parallel jobs (POSIX flock)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock.with_name(lock.name + ".flock"), "a+") as fh:
        try:
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows: best effort
            pass
        yield


def record_hash(lock: str | os.PathLike, dest: str | os.PathLike, sha256: str, url: str = "") -> None:
    """Record `dest`'s sha256 in the lock file (atomic write), so later runs verify against it."""
    lock, dest = Path(lock), Path(dest)
    with _locked(lock):
        entries = read_lock(lock)
        entries[_lock_key(dest, lock)] = {"sha256": sha256, "size": dest.stat().st_size, "url": url}
        tmp = lock.with_name(f".{lock.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, lock)


def locked_hash(lock: str | os.PathLike | None, dest: str | os.PathLike) -> str | None:
    """The sha256 recorded for `dest` in `lock`, or None."""
    if lock is None:
        return None
    entry = read_lock(lock).get(_lock_key(Path(dest), Path(lock)))
    return entry.get("sha256") if entry else None


# ---------------------------------------------------------------- download


def manual_hint(urls: list[str], dest: Path, sha256: str | None, md5: str | None,
                lock: Path | None = None) -> str:
    """The sentence that tells a user how to get the file by hand."""
    if sha256:
        check = f"sha256 {sha256}"
    elif md5:
        check = f"md5 {md5}"
    elif lock is not None:
        check = f"checksum unknown; its sha256 will be recorded in {lock} and checked on later runs"
    else:
        check = "checksum unknown"
    alt = f" (mirrors: {', '.join(urls[1:])})" if len(urls) > 1 else ""
    return f"Download {urls[0]}{alt} by hand and put it at {dest} ({check})."


def _host(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts.netloc or url


def _content_range_start(value: str | None) -> int | None:
    """Start offset of a `Content-Range: bytes start-end/total` header."""
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


def _fetch_once(url: str, part: Path, timeout: float, chunk_size: int, progress: bool) -> None:
    """Fetch `url` into `part`, continuing from its current size; raise _Retryable/_Fatal on failure."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) URLs from config
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the .part already holds the whole file (or more): verify decides
            return
        if err.code in (408, 425, 429) or err.code >= 500:
            raise _Retryable(f"HTTP {err.code} {err.reason} from {_host(url)}") from err
        raise _Fatal(f"HTTP {err.code} {err.reason} for {url}") from err
    except (TimeoutError, urllib.error.URLError, ConnectionError, http.client.HTTPException, OSError) as err:
        reason = getattr(err, "reason", err)
        raise _Retryable(f"could not reach {_host(url)} ({reason})") from err

    with response:
        start = _content_range_start(response.headers.get("Content-Range"))
        # a range we did not ask for: drop the .part, retry from 0
        if response.status == 206 and start != have:
            part.unlink(missing_ok=True)
            raise _Retryable(f"{_host(url)} answered bytes from {start}, not from {have}")
        if have and response.status == 206:
            mode, done = "ab", have
        else:  # the server ignored Range (200) or answered a different range: start again
            mode, done = "wb", 0
            if have:
                log.info("%s ignored the Range request; restarting %s from 0", _host(url), part.name)
        length = response.headers.get("Content-Length")
        expected_end = done + int(length) if length and length.isdigit() else None
        bar = _progress_bar(part.name, expected_end, done) if progress else None
        try:
            with open(part, mode) as fh:
                while True:
                    block = response.read(chunk_size)
                    if not block:
                        break
                    fh.write(block)
                    done += len(block)
                    if bar is not None:
                        bar.update(len(block))
        except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as err:
            raise _Retryable(f"connection to {_host(url)} dropped after {done} bytes ({err!r})") from err
        finally:
            if bar is not None:
                bar.close()
    if expected_end is not None and done < expected_end:
        raise _Retryable(f"connection to {_host(url)} closed after {done} of {expected_end} bytes")


def _progress_bar(name: str, total: int | None, initial: int):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=name, file=sys.stderr,
                leave=False)


def _refuse_web_page(part: Path, dest: Path) -> None:
    """A server that answers with a web page (a sign-in or "too large to scan" page of a file host) has not
    sent the file: refuse it before its hash could be recorded as the file's."""
    if dest.suffix.lower() in (".html", ".htm", ".txt", ".csv", ".tsv", ".json"):
        return
    with open(part, "rb") as fh:
        head = fh.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        raise DownloadError(f"{dest}: the server sent a web page instead of the file (a file host's sign-in "
                            "or "
                            "confirmation page); download it by hand and put it there.")


def _check_part(part: Path, sha256: str | None, md5: str | None, check: Callable[[Path], None] | None,
                dest: Path | None = None) -> None:
    if dest is not None:
        _refuse_web_page(part, dest)
    verify_file(part, sha256=sha256, md5=md5)
    if check is not None:
        check(part)


def download(
    url: str | list[str],
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    lock: str | os.PathLike | None = None,
    check: Callable[[Path], None] | None = None,
    retries: int = 3,
    timeout: float = 30,
    backoff: float = 1.0,
    chunk_size: int = 1 << 20,
    progress: bool = True,
) -> Path:
    """Download `url` (or the first working mirror of a list) to `dest`, verified, and return `dest`.

    Writes `<dest>.part`, resumes it with a Range request after a dropped connection (or restarts when
    the server ignores Range), retries each mirror `retries` times with exponential `backoff` seconds,
    verifies sha256/md5 (and the optional `check(path)` hook, which raises DownloadError) and only then
    moves the file onto `dest`. A corrupt download is deleted. With neither checksum given, a `lock` JSON
    file records the sha256 on first download and later runs verify against it ("sha256: null").
    An existing `dest` that matches its checksum is returned without touching the network.
    """
    urls = [url] if isinstance(url, str) else list(url)
    if not urls:
        raise DownloadError(f"no URL given for {dest}.")
    dest = Path(dest)
    lock = Path(lock) if lock is not None else None
    recorded = None if (sha256 or md5) else locked_hash(lock, dest)
    want_sha = sha256 or recorded
    hint = manual_hint(urls, dest, want_sha, md5, lock)

    if dest.exists():
        try:  # the `check` hook runs even without a checksum: a present file that fails it is fetched again
            _check_part(dest, want_sha, md5, check)
        except DownloadError as err:
            log.warning("%s exists but fails verification (%s); downloading it again", dest, err)
            dest.unlink()
        else:
            if not (want_sha or md5):
                if lock is not None:
                    record_hash(lock, dest, file_hash(dest), url="(present before first download)")
                log.info("%s exists and has no known checksum; using it as is", dest)
            return dest

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    errors: list[str] = []
    for i, u in enumerate(urls):
        if i:  # a .part from another mirror may be a different file: do not splice them
            part.unlink(missing_ok=True)
        for attempt in range(max(1, retries)):
            try:
                _fetch_once(u, part, timeout, chunk_size, progress)
            except _Fatal as err:
                errors.append(str(err))
                break
            except _Retryable as err:
                errors.append(f"attempt {attempt + 1}: {err}")
                log.warning("download of %s failed (%s)", u, err)
                if attempt + 1 < retries and backoff > 0:
                    time.sleep(backoff * 2**attempt)
                continue
            try:
                _check_part(part, want_sha, md5, check, dest=dest)
            except DownloadError as err:
                part.unlink(missing_ok=True)
                errors.append(f"{u}: {err}")
                log.warning("download of %s refused: %s", u, err)
                break
            if lock is not None and not (sha256 or md5) and not recorded:
                os.replace(part, dest)
                record_hash(lock, dest, file_hash(dest), url=u)
            else:
                os.replace(part, dest)
            return dest
    if not part.exists() or not part.stat().st_size:
        part.unlink(missing_ok=True)
    last = errors[-1] if errors else "unknown error"
    kept = f" The partial file {part} is kept; a rerun resumes it." if part.exists() else ""
    raise DownloadError(f"could not download {dest.name}: {last}.{kept} {hint}")


def download_entry(entry: dict, *, lock: str | os.PathLike | None = None, **kwargs) -> Path:
    """`download` for one config entry `{"urls" | "url", "path", "sha256"?, "md5"?}` (sha256 null -> lock)."""
    urls = entry.get("urls") or entry.get("url")
    if not urls or not entry.get("path"):
        raise DownloadError(f"download entry {entry!r} needs 'urls' (or 'url') and 'path'.")
    return download(urls, entry["path"], sha256=entry.get("sha256"), md5=entry.get("md5"), lock=lock,
                    **kwargs)


# ---------------------------------------------------------------- many files


def fetch_manifest(
    entries: Iterable[dict],
    root: str | os.PathLike,
    *,
    check: Callable[[Path, dict], None] | None = None,
    lock: str | os.PathLike | None = None,
    retries: int = 3,
    timeout: float = 30,
    backoff: float = 1.0,
    progress: bool = False,
) -> pd.DataFrame:
    """Download many files, each `{"url" | "urls", "path", "sha256"?, "md5"?}`, under `root`.

    Files already present and verified are skipped; failures are recorded, not raised, so one bad
    image never stops a 30,000-file fetch. Returns a table `path, status (ok|present|failed), reason`.
    `check(path, entry)` is an extra per-file verification (e.g. CelebA-HQ's pixel md5).
    """
    root = Path(root)
    rows = []
    for entry in entries:
        rel = entry["path"]
        _check_safe_relative(rel, "manifest path")
        dest = root / rel
        urls = entry.get("urls") or entry.get("url")
        hook = (lambda p, e=entry: check(p, e)) if check is not None else None
        existed = dest.exists()
        try:
            if existed:
                try:
                    _check_part(dest, entry.get("sha256"), entry.get("md5"), hook)
                    rows.append({"path": rel, "status": "present", "reason": ""})
                    continue
                except DownloadError:
                    pass
            if not urls:
                raise DownloadError(f"{dest} is missing or corrupt and the manifest gives no URL for it.")
            download(urls, dest, sha256=entry.get("sha256"), md5=entry.get("md5"), lock=lock, check=hook,
                     retries=retries, timeout=timeout, backoff=backoff, progress=progress)
            rows.append({"path": rel, "status": "ok", "reason": ""})
        except DownloadError as err:
            rows.append({"path": rel, "status": "failed", "reason": str(err)})
    return pd.DataFrame(rows, columns=["path", "status", "reason"])


# ---------------------------------------------------------------- archives


def _check_safe_relative(name: str, what: str = "archive member") -> str:
    """Normalised POSIX form of a relative member name; DownloadError if it is absolute or climbs out."""
    if not name or "\x00" in name:
        raise DownloadError(f"refusing {what} {name!r}: empty or contains NUL.")
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        raise DownloadError(f"refusing {what} {name!r}: absolute path.")
    norm = posixpath.normpath(unified)
    if norm == ".." or norm.startswith("../"):
        raise DownloadError(f"refusing {what} {name!r}: it would escape the target folder.")
    return norm


def _inside(target: Path, candidate: Path) -> bool:
    target = target.resolve()
    candidate = candidate.resolve()
    return candidate == target or target in candidate.parents


def _check_tar_member(member: tarfile.TarInfo, target: Path) -> None:
    name = _check_safe_relative(member.name)
    if not _inside(target, target / name):
        raise DownloadError(f"refusing archive member {member.name!r}: it would escape the target folder.")
    if member.issym() or member.islnk():
        link = member.linkname.replace("\\", "/")
        if link.startswith("/") or (len(link) > 1 and link[1] == ":"):
            raise DownloadError(f"refusing archive member {member.name!r}: link to absolute path "
                                f"{member.linkname!r}.")
        base = target / posixpath.dirname(name) if member.issym() else target
        if not _inside(target, base / link):
            raise DownloadError(f"refusing archive member {member.name!r}: link {member.linkname!r} points "
                                "outside the target folder.")
    elif not (member.isfile() or member.isdir()):
        raise DownloadError(f"refusing archive member {member.name!r}: device, FIFO or other special file.")


def _zip_is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike) -> list[Path]:
    """Extract a zip or tar(.gz/.bz2/.xz) archive into `target`; return the files written.

    Every member is checked before anything is written: absolute paths, '../' climbs, links pointing
    outside `target` and special files are refused with a DownloadError naming the member.
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                name = _check_safe_relative(info.filename)
                if _zip_is_symlink(info):
                    raise DownloadError(f"refusing archive member {info.filename!r}: symbolic links are not "
                                        "extracted from zip files.")
                if not _inside(target, target / name):
                    raise DownloadError(f"refusing archive member {info.filename!r}: it would escape the "
                                        "target folder.")
            for info in infos:
                out = target / _check_safe_relative(info.filename)
                if info.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(out, "wb") as dst:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        dst.write(block)
                written.append(out)
        return written
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive, "r:*") as tf:
            members = tf.getmembers()
            for member in members:
                _check_tar_member(member, target)
            for member in members:
                if hasattr(tarfile, "data_filter"):
                    tf.extract(member, target, filter="data")
                else:  # pragma: no cover - old Pythons: members were checked above
                    tf.extract(member, target)
                if not member.isdir():
                    written.append(target / _check_safe_relative(member.name))
        return written
    raise DownloadError(f"{archive} is neither a zip nor a tar archive; cannot extract it.")
