"""Running the dashboard: a port, a fresh token, a threaded Werkzeug server on loopback,
the browser opened through a private file, and a clean stop on Ctrl-C.

The browser is given a file that redirects to the URL (as Jupyter does), never the URL
itself: a URL on a command line is visible to every user through `ps`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import socket
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from datmo.core.storage.project import ProjectContext
from datmo.errors import UsageError
from datmo.ui.app import Dashboard

DEFAULT_PORT = 8765
TRIES = 20  # ports after the default tried when it is taken (not for --port)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class _Quiet(WSGIRequestHandler):
    """No line per request: request lines hold the token, and the terminal stays clean."""

    def log_request(self, *args: Any, **kw: Any) -> None:
        pass


@dataclass
class Server:
    server: BaseWSGIServer
    url: str  # with the token
    host: str
    port: int

    def serve(self) -> None:
        self.server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def start(ctx: ProjectContext, host: str = "127.0.0.1", port: int | None = None) -> Server:
    """Bind the server (not yet serving): the given port, or the first free one from
    8765 on (0: any free port)."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    token = secrets.token_hex(24)
    candidates = [port] if port is not None else [DEFAULT_PORT + i for i in range(TRIES)]
    last: OSError | None = None
    for candidate in candidates:
        if not 0 <= candidate <= 65535:
            raise UsageError(f"--port must be between 0 and 65535, not {candidate}")
        try:
            sock = _bind(host, candidate)
        except OSError as e:
            last = e
            if e.errno != errno.EADDRINUSE or port is not None:
                break
            continue
        real = sock.getsockname()[1]
        app = Dashboard(ctx, token, real, host)
        if host in ("0.0.0.0", "::"):
            app.hosts.add(socket.gethostname().lower())
        # Werkzeug takes the bound socket: its own bind would print and exit on failure.
        fd = sock.detach()
        try:
            server = make_server(host, real, app, threaded=True, request_handler=_Quiet, fd=fd)
        finally:
            os.close(fd)  # the server holds its own duplicate
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        return Server(server, f"http://{url_host(shown)}:{real}/?token={token}", host, real)
    where = f"port {port}" if port is not None else f"ports {candidates[0]}-{candidates[-1]}"
    reason = last.strerror if last and last.strerror else "taken"
    raise UsageError(f"cannot serve on {host} {where}: {reason}; pick another with --port N")


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise UsageError(f"cannot serve on '{host}': {e.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def open_browser(url: str, opener: Callable[[str], Any] | None = None) -> Path:
    """Open url through a file only this user can read, which redirects to it. Returns
    the file, which the caller removes when the server stops."""
    fd, name = tempfile.mkstemp(prefix="datmo-ui-", suffix=".html")
    safe = escape(url, quote=True)
    page = (
        '<!doctype html><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="0;url={safe}">'
        f'<title>datmo ui</title><p><a href="{safe}">Open the datmo dashboard</a></p>\n'
    )
    with os.fdopen(fd, "w", encoding="utf-8") as f:  # mkstemp: mode 0600
        f.write(page)
    path = Path(name)
    if opener is None:
        import webbrowser

        opener = webbrowser.open
    # A browser that blocks (a text one in this terminal) must not hold up the server.
    threading.Thread(target=opener, args=(path.as_uri(),), daemon=True).start()
    return path


def run(server: Server, browser: bool, say: Callable[[str], None]) -> None:
    """Serve until Ctrl-C (or SIGTERM); the redirect file is removed at the end."""
    import signal

    opened: Path | None = None
    if browser:
        opened = open_browser(server.url)

    def _term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, _term)
    try:
        server.serve()  # Werkzeug's loop ends quietly on Ctrl-C (KeyboardInterrupt)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, old)
        server.server.server_close()
        if opened is not None:
            with contextlib.suppress(OSError):
                opened.unlink()
    say("datmo ui: stopped")
