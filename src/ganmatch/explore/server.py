"""Serve the explorer with waitress: loopback only unless asked, capped request sizes, a few threads."""

from __future__ import annotations

import ipaddress
import sys
import warnings

from ganmatch.errors import ConfigError
from ganmatch.explore.app import LOOPBACK_HOSTS, create_app
from ganmatch.explore.editor import load_editor
from ganmatch.explore.flags import Flags
from ganmatch.explore.renderqueue import DEFAULT_CAPACITY, RenderQueue
from ganmatch.explore.results import load_run

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024


def is_loopback(host: str) -> bool:
    """True for localhost and 127.0.0.0/8 / ::1 addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str, allow_remote: bool) -> None:
    """Refuse a non-loopback address unless `allow_remote`; warn when it is allowed (the app has no login)."""
    if is_loopback(host):
        return
    if not allow_remote:
        raise ConfigError(
            f"--host {host}: other machines could reach the app, which has no login; "
            "add --allow-remote to bind it anyway, or keep the default 127.0.0.1"
        )
    warnings.warn(
        f"ganmatch explore: binding {host}: anyone who can reach this address can read these results "
        "(no login, no TLS)",
        stacklevel=2,
    )


def check_port(port: int) -> None:
    """A TCP port (0 picks a free one); anything else is refused before the run loads."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: not a TCP port; use 1 to 65535 (0 picks a free one)")


def build_app(
    results: str,
    weights: str | None = None,
    trusted_hosts: list[str] | None = LOOPBACK_HOSTS,
    log=print,
    flags: str | None = None,
    render_queue: int = DEFAULT_CAPACITY,
):
    """Load the run and the editor and build the app (what `serve` runs; tests and benchmarks reuse it);
    `flags` names the file flagged pairs are written to (None: flagging off)."""
    run = load_run(results)
    store = Flags(flags, run.root) if flags else None
    editor, note = load_editor(run, weights)
    if editor is None:
        log(f"editor off: {note}")
    return create_app(
        run, editor, note, trusted_hosts=trusted_hosts, flags=store, renders=RenderQueue(render_queue)
    )


def make_server(app, host: str = "127.0.0.1", port: int = 8050, threads: int = 4):
    """A waitress server for `app` (port 0 picks a free one: read it from `server.effective_port`) with
    `threads` page threads plus one per render slot: renders waiting in the queue never take a page
    thread."""
    from waitress import create_server

    check_port(port)
    queue = app.extensions["ganmatch"].renders.capacity if "ganmatch" in app.extensions else 0
    return create_server(
        app,
        host=host,
        port=port,
        threads=threads + queue,
        max_request_header_size=MAX_HEADER_BYTES,
        max_request_body_size=MAX_BODY_BYTES,
        ident="ganmatch-explore",
        clear_untrusted_proxy_headers=True,
    )


def serve(
    results: str,
    host: str = "127.0.0.1",
    port: int = 8050,
    allow_remote: bool = False,
    weights: str | None = None,
    threads: int = 4,
    render_threads: int = 1,
    flags: str | None = None,
) -> None:
    """Run the explorer on `results` until interrupted; the generator renders on `render_threads` torch
    threads (1 answers a small generator's renders fastest on a busy machine; more help a 256-1024 px one)."""
    import torch

    check_host(host, allow_remote)
    check_port(port)
    if not 1 <= threads <= 32 or not 1 <= render_threads <= 64:
        raise ConfigError(f"--threads {threads} --render-threads {render_threads}: use 1 to 32 and 1 to 64")
    torch.set_num_threads(render_threads)
    trusted = [*LOOPBACK_HOSTS, host] if is_loopback(host) else None  # e.g. --host 127.0.0.2
    app = build_app(
        results, weights, trusted_hosts=trusted, log=lambda msg: print(msg, file=sys.stderr), flags=flags
    )
    try:
        server = make_server(app, host, port, threads)
    except OSError as exc:
        raise ConfigError(
            f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc}); "
            "choose another --port (0 picks a free one)"
        ) from exc
    shown = f"[{host}]" if ":" in host else host
    print(
        f"ganmatch explore: serving {results} at http://{shown}:{server.effective_port}/ (Ctrl-C to stop)",
        flush=True,
    )
    try:
        server.run()
    finally:
        server.close()
