"""Downloads against a local HTTP server on 127.0.0.1: resume, checksums, mirrors, unreachable hosts; safe
extraction."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ganmatch.data import download as dl
from ganmatch.errors import DownloadError

PAYLOAD = bytes(range(256)) * 1000  # 256,000 bytes: several chunks at chunk_size 16 KiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()
FAST = {"retries": 3, "timeout": 5, "backoff": 0, "chunk_size": 1 << 14, "progress": False}


class _Handler(BaseHTTPRequestHandler):
    """Serves `server.files`; '/cut/...' drops the connection half-way on the first request,
    '/norange/...' ignores Range headers, '/flaky/...' answers 503 once."""

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):  # noqa: N802 - http.server API
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        mode, _, name = self.path.lstrip("/").partition("/")
        if mode not in ("plain", "cut", "norange", "flaky"):
            mode, name = "plain", self.path.lstrip("/")
        data = srv.files.get(name)
        if data is None:
            self.send_error(404, "no such file")
            return
        if mode == "flaky" and srv.hits.get(self.path, 0) == 0:
            srv.hits[self.path] = 1
            self.send_error(503, "try later")
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and mode != "norange":
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_error(416, "range not satisfiable")
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        first = srv.hits.get(self.path, 0) == 0
        srv.hits[self.path] = srv.hits.get(self.path, 0) + 1
        if mode == "cut" and first:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


@pytest.fixture()
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files = {"weights.bin": PAYLOAD}
    srv.requests, srv.hits = [], {}
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_normal_download_verifies_sha256(server, tmp_path):
    dest = dl.download(f"{server.url}/weights.bin", tmp_path / "w" / "weights.bin", sha256=SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "w" / "weights.bin.part").exists()
    assert dl.file_hash(dest) == SHA and dl.file_hash(dest, "md5") == MD5


def test_present_and_verified_file_uses_no_network(server, tmp_path):
    dest = tmp_path / "weights.bin"
    dest.write_bytes(PAYLOAD)
    dl.download(f"http://127.0.0.1:{_closed_port()}/weights.bin", dest, md5=MD5, **FAST)
    assert server.requests == []


def test_interrupted_download_resumes_with_range(server, tmp_path):
    dest = dl.download(f"{server.url}/cut/weights.bin", tmp_path / "weights.bin", sha256=SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert len(server.requests) == 2
    assert server.requests[0][1] is None
    assert server.requests[1][1] == f"bytes={len(PAYLOAD) // 2}-"  # resumed, not restarted


def test_existing_part_file_is_resumed(server, tmp_path):
    dest = tmp_path / "weights.bin"
    (tmp_path / "weights.bin.part").write_bytes(PAYLOAD[:1000])
    dl.download(f"{server.url}/weights.bin", dest, sha256=SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [("/weights.bin", "bytes=1000-")]


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    dest = tmp_path / "weights.bin"
    (tmp_path / "weights.bin.part").write_bytes(b"garbage" * 10)
    dl.download(f"{server.url}/norange/weights.bin", dest, sha256=SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD  # not garbage + payload


def test_wrong_checksum_is_refused_and_leaves_no_file(server, tmp_path):
    dest = tmp_path / "weights.bin"
    with pytest.raises(DownloadError, match="checksum mismatch") as err:
        dl.download(f"{server.url}/weights.bin", dest, sha256="0" * 64, **FAST)
    assert not dest.exists() and not (tmp_path / "weights.bin.part").exists()
    assert f"put it at {dest}" in str(err.value) and "0" * 64 in str(err.value)


def test_wrong_md5_on_existing_file_triggers_redownload(server, tmp_path):
    dest = tmp_path / "weights.bin"
    dest.write_bytes(b"corrupt")
    dl.download(f"{server.url}/weights.bin", dest, md5=MD5, **FAST)
    assert dest.read_bytes() == PAYLOAD


def test_unreachable_host_fails_fast_with_manual_instructions(tmp_path):
    dest = tmp_path / "weights.bin"
    url = f"http://127.0.0.1:{_closed_port()}/x"
    t0 = time.monotonic()
    with pytest.raises(DownloadError) as err:
        dl.download(url, dest, sha256=SHA, **FAST)
    assert time.monotonic() - t0 < 10
    msg = str(err.value)
    assert "could not reach 127.0.0.1" in msg and f"Download {url} by hand" in msg
    assert str(dest) in msg and SHA in msg
    assert not dest.exists() and not (tmp_path / "weights.bin.part").exists()


def test_mirrors_are_tried_in_order(server, tmp_path):
    urls = [f"{server.url}/missing.bin", f"http://127.0.0.1:{_closed_port()}/w", f"{server.url}/weights.bin"]
    dest = dl.download(urls, tmp_path / "weights.bin", sha256=SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD


def test_transient_503_is_retried(server, tmp_path):
    dest = dl.download(f"{server.url}/flaky/weights.bin", tmp_path / "w.bin", sha256=SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD and len(server.requests) == 2


def test_404_is_not_retried(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        dl.download(f"{server.url}/nope.bin", tmp_path / "nope.bin", **FAST)
    assert len(server.requests) == 1


def test_null_checksum_is_recorded_in_lock_then_enforced(server, tmp_path):
    lock = tmp_path / "downloads.lock.json"
    dest = tmp_path / "weights.bin"
    dl.download(f"{server.url}/weights.bin", dest, lock=lock, **FAST)
    assert json.loads(lock.read_text())["weights.bin"]["sha256"] == SHA
    # the remote file changes: the recorded hash refuses it
    dest.unlink()
    server.files["weights.bin"] = b"tampered" + PAYLOAD[8:]
    with pytest.raises(DownloadError, match="checksum mismatch"):
        dl.download(f"{server.url}/weights.bin", dest, lock=lock, **FAST)
    assert not dest.exists()


def test_download_entry_from_config(server, tmp_path):
    entry = {"urls": [f"{server.url}/weights.bin"], "path": str(tmp_path / "w" / "x.bin"), "sha256": None}
    lock = tmp_path / "lock.json"
    dl.download_entry(entry, lock=lock, **FAST)
    assert dl.locked_hash(lock, entry["path"]) == SHA
    with pytest.raises(DownloadError, match="needs 'urls'"):
        dl.download_entry({"path": "x"})


def test_verify_file_names_the_file(tmp_path):
    p = tmp_path / "a.bin"
    p.write_bytes(PAYLOAD)
    dl.verify_file(p, sha256=SHA.upper(), md5=MD5)
    with pytest.raises(DownloadError, match="a.bin"):
        dl.verify_file(p, md5="f" * 32)


def test_fetch_manifest_records_failures_and_skips_present(server, tmp_path):
    server.files["b.bin"] = b"bbb"
    (tmp_path / "a.bin").write_bytes(PAYLOAD)
    entries = [
        {"path": "a.bin", "url": f"{server.url}/unused", "sha256": SHA},
        {"path": "sub/b.bin", "url": f"{server.url}/b.bin", "md5": hashlib.md5(b"bbb").hexdigest()},
        {"path": "c.bin", "url": f"{server.url}/b.bin", "md5": "0" * 32},
    ]
    table = dl.fetch_manifest(entries, tmp_path, retries=1, timeout=5, backoff=0)
    assert table["status"].tolist() == ["present", "ok", "failed"]
    assert "checksum mismatch" in table["reason"][2]
    assert (tmp_path / "sub" / "b.bin").read_bytes() == b"bbb" and not (tmp_path / "c.bin").exists()
    assert [r[0] for r in server.requests] == ["/b.bin", "/b.bin"]


def test_present_file_failing_its_check_is_fetched_again_without_a_checksum(server, tmp_path):
    """No sha256/md5 known (CelebA-HQ entries): a present, corrupt file is re-downloaded, not reported
    "ok"."""
    (tmp_path / "a.bin").write_bytes(b"corrupt")

    def check(path, entry):
        if path.read_bytes() != PAYLOAD:
            raise DownloadError(f"{path}: not the expected content")

    entries = [{"path": "a.bin", "url": f"{server.url}/weights.bin"}]
    table = dl.fetch_manifest(entries, tmp_path, check=check, retries=1, timeout=5, backoff=0)
    assert table["status"].tolist() == ["ok"]
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert [r[0] for r in server.requests] == ["/weights.bin"]


# ---------------------------------------------------------------- safe extraction


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return path


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def test_safe_extract_zip_and_tar(tmp_path):
    zpath = tmp_path / "ok.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("images/0.jpg", b"zero")
        zf.writestr("list.txt", b"x")
    files = dl.safe_extract(zpath, tmp_path / "z")
    assert sorted(p.relative_to(tmp_path / "z").as_posix() for p in files) == ["images/0.jpg", "list.txt"]
    assert (tmp_path / "z" / "images" / "0.jpg").read_bytes() == b"zero"

    tpath = _tar(
        tmp_path / "ok.tar.gz", [(tarfile.TarInfo("a/b.txt"), b"bee"), (_link("a/c.txt", "b.txt"), None)]
    )
    files = dl.safe_extract(tpath, tmp_path / "t")
    assert (tmp_path / "t" / "a" / "b.txt").read_bytes() == b"bee" and len(files) == 2


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/tmp/evil.txt", "..\\evil.txt"])
def test_zip_member_escaping_is_refused(tmp_path, name):
    zpath = tmp_path / "bad.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("fine.txt", b"ok")
        zf.writestr(zipfile.ZipInfo(name), b"evil")
    with pytest.raises(DownloadError, match="evil.txt"):
        dl.safe_extract(zpath, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "fine.txt").exists()


def test_zip_symlink_is_refused(tmp_path):
    zpath = tmp_path / "link.zip"
    info = zipfile.ZipInfo("link")
    info.external_attr = 0o120777 << 16
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DownloadError, match="'link'"):
        dl.safe_extract(zpath, tmp_path / "out")


@pytest.mark.parametrize(
    "member",
    [
        (tarfile.TarInfo("../evil.txt"), b"x"),
        (tarfile.TarInfo("/abs/evil.txt"), b"x"),
        (_link("evil_link", "/etc/passwd"), None),
        (_link("d/evil_link", "../../outside"), None),
        (_link("evil_hard", "../outside", tarfile.LNKTYPE), None),
    ],
)
def test_tar_member_escaping_is_refused(tmp_path, member):
    tpath = _tar(tmp_path / "bad.tar.gz", [(tarfile.TarInfo("fine.txt"), b"ok"), member])
    with pytest.raises(DownloadError, match="evil"):
        dl.safe_extract(tpath, tmp_path / "out")
    assert not (tmp_path / "out" / "fine.txt").exists()  # nothing extracted before the check


def test_not_an_archive(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"plain")
    with pytest.raises(DownloadError, match="neither a zip nor a tar"):
        dl.safe_extract(p, tmp_path / "out")
