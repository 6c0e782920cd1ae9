"""The daemon's one small HTTP server: metrics, health, readiness and the status page.

    GET /metrics       drd.metrics.render() (Prometheus text format)
    GET /healthz       200 "ok" while the process serves requests (liveness)
    GET /readyz        200 when the config is loaded, the catalog answers and the role
                       (leader or follower) is known; else 503 and which one failed
    GET /              the estate status page (HTML, refreshes itself)
    GET /status.json   the same data for scripts
    anything else      404 (methods other than GET and HEAD: 501)

Standard library only (``ThreadingHTTPServer``): four read-only endpoints do not need a
framework, and one less dependency is one less thing to patch in a DR tool. Handlers
never do slow work: ``readiness`` and ``status`` are callables the daemon answers from
state it keeps current (the status view is built by the monitoring job, not on request).

Nothing internal leaks: an exception becomes a 500 with a fixed message and is logged
(redacted) with its traceback; no server or Python version is announced; the page is
served with a Content-Security-Policy that allows no external asset and no script.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from drd import metrics
from drd.daemon.state import Readiness
from drd.daemon.status_page import EstateView, render_page
from drd.log import get_logger
from drd.redact import redact

__all__ = ["HttpServer", "Readiness"]

log = get_logger("drd.daemon.http")

#: Slow or idle clients are dropped after this many seconds, so they cannot hold threads.
REQUEST_TIMEOUT = 10.0
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
INTERNAL_ERROR = "internal error: see the drd log (event http_request_failed)\n"


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck request never blocks shutdown
    block_on_close = False
    drd: HttpServer


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "drd"
    timeout = REQUEST_TIMEOUT
    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        return self.server_version  # no Python or library version for scanners to match

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def _dispatch(self, *, head: bool) -> None:
        path = urlsplit(self.path).path
        routes: dict[str, Callable[[], tuple[int, bytes, str]]] = {
            "/metrics": self._metrics,
            "/healthz": lambda: (200, b"ok\n", "text/plain; charset=utf-8"),
            "/readyz": self._readyz,
            "/": self._page,
            "/status.json": self._status_json,
        }
        route = routes.get(path)
        if route is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", head=head)
            return
        try:
            status, body, content_type = route()
        except Exception:
            log.exception("http_request_failed", path=path)
            self._send(500, INTERNAL_ERROR.encode(), "text/plain; charset=utf-8", head=head)
            return
        self._send(status, body, content_type, head=head)

    # -- endpoints -------------------------------------------------------------------

    def _metrics(self) -> tuple[int, bytes, str]:
        return 200, metrics.render(), metrics.CONTENT_TYPE_LATEST

    def _readyz(self) -> tuple[int, bytes, str]:
        readiness = self.server.drd.readiness()
        data: dict[str, Any] = readiness.as_dict()
        data["detail"] = redact(readiness.detail)
        status = 200 if readiness.ready else 503
        return status, _json(data), "application/json"

    def _page(self) -> tuple[int, bytes, str]:
        html = render_page(self.server.drd.status())
        return 200, html.encode(), "text/html; charset=utf-8"

    def _status_json(self) -> tuple[int, bytes, str]:
        return 200, _json(self.server.drd.status().as_dict()), "application/json"

    # -- plumbing --------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        *,
        head: bool,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http_request", client=self.client_address[0], line=format % args)


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=2, default=str) + "\n").encode()


class HttpServer:
    """The daemon's HTTP endpoints on ``host:port`` (port 0: any free port).

    ``readiness`` and ``status`` are called on every request to ``/readyz`` and ``/``
    or ``/status.json``, from the server's threads: they must be quick and thread-safe
    (return what the daemon already knows). Lifecycle: ``start()`` binds and serves in
    a background thread, ``stop()`` closes the socket and waits for that thread.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        readiness: Callable[[], Readiness],
        status: Callable[[], EstateView],
    ) -> None:
        self.host = host
        self.port = port
        self.readiness = readiness
        self.status = status
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind (``OSError`` if the address is taken) and serve in a background thread."""
        if self._server is not None:
            raise RuntimeError("the HTTP server is already started")
        server_cls = _Server6 if ":" in self.host else _Server
        server = server_cls((self.host, self.port), _Handler)
        server.drd = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="drd-http",
            daemon=True,
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close the socket; idempotent."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout)
        log.info("http_stopped")

    @property
    def url(self) -> str:
        """``http://host:port`` once started (IPv6 hosts in brackets)."""
        if self._server is None:
            raise RuntimeError("the HTTP server is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __enter__(self) -> HttpServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
