"""The daemon's HTTP server on 127.0.0.1: health, readiness, metrics, the page, errors."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.client import HTTPConnection

import pytest

from drd import metrics, redact
from drd.daemon.http import INTERNAL_ERROR, HttpServer
from drd.daemon.state import Readiness, Role
from drd.daemon.status_page import Cell, EstateView, WorkloadRow

READY = Readiness(config_loaded=True, catalog_ok=True, role="leader")


def _view() -> EstateView:
    cells = {
        "rpo": Cell("green", "50s", "objective 15m"),
        "backup": Cell("amber", "2d ago"),
        "snapshot": Cell("none", "no filestore"),
        "drill": Cell("red", "no drill yet"),
        "checks": Cell("green", "10/10 ok"),
    }
    row = WorkloadRow("erp", "tier-1", "RPO 15m · RTO 2h", Cell("red", "FAIL"), cells)
    return EstateView("acme", datetime.now(UTC), "leader", (row,), config_path="/etc/drd.yaml")


@pytest.fixture
def serve() -> Iterator[Callable[..., HttpServer]]:
    """Starts servers on a free port with the given callables; stops them all afterwards."""
    started: list[HttpServer] = []

    def factory(
        readiness: Callable[[], Readiness] = lambda: READY,
        status: Callable[[], EstateView] = _view,
    ) -> HttpServer:
        server = HttpServer("127.0.0.1", 0, readiness=readiness, status=status)
        server.start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


def _request(
    server: HttpServer, path: str, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    conn = HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_healthz_and_headers(serve: Callable[..., HttpServer]) -> None:
    """/healthz is 200 'ok'; responses carry a strict CSP and announce no Python version."""
    server = serve()
    assert server.url == f"http://127.0.0.1:{server.port}"
    status, headers, body = _request(server, "/healthz")
    assert (status, body) == (200, b"ok\n")
    assert headers["Server"] == "drd"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"


def test_readyz_ready(serve: Callable[..., HttpServer]) -> None:
    """All three conditions met: 200 and a JSON body that says so."""
    status, headers, body = _request(serve(), "/readyz")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    data = json.loads(body)
    assert data["ready"] is True
    assert data["failed"] == []
    assert data["role"] == "leader"


@pytest.mark.parametrize(
    ("config_loaded", "catalog_ok", "role", "failed"),
    [
        (False, True, "leader", ["configuration not loaded"]),
        (True, False, "follower", ["catalog unreachable"]),
        (True, True, "unknown", ["role unknown: leader election has not answered yet"]),
        (
            False,
            False,
            "unknown",
            [
                "configuration not loaded",
                "catalog unreachable",
                "role unknown: leader election has not answered yet",
            ],
        ),
    ],
)
def test_readyz_not_ready_says_why(
    serve: Callable[..., HttpServer],
    config_loaded: bool,
    catalog_ok: bool,
    role: Role,
    failed: list[str],
) -> None:
    """Any unmet condition: 503 with each failed condition named."""
    readiness = Readiness(config_loaded, catalog_ok, role, "catalog: connection refused")
    status, _, body = _request(serve(readiness=lambda: readiness), "/readyz")
    assert status == 503
    data = json.loads(body)
    assert data["ready"] is False
    assert data["failed"] == failed
    assert data["detail"] == "catalog: connection refused"


def test_readyz_detail_is_redacted(serve: Callable[..., HttpServer]) -> None:
    """A secret that slipped into the detail is masked before it is served."""
    redact.register_secret("hunter2-catalog-pass")
    detail = "cannot connect to postgresql://drd:hunter2-catalog-pass@db/drd"
    readiness = Readiness(True, False, "leader", detail)
    _, _, body = _request(serve(readiness=lambda: readiness), "/readyz")
    assert b"hunter2" not in body
    assert "***" in json.loads(body)["detail"]


def test_metrics_endpoint_serves_drd_registry(serve: Callable[..., HttpServer]) -> None:
    """/metrics is drd's registry in the Prometheus text format, current at each scrape."""
    server = serve()
    metrics.set_rpo("http-test", timedelta(seconds=42), timedelta(minutes=15))
    metrics.set_archiver("http-test", datetime.now(UTC), 3)
    try:
        status, headers, body = _request(server, "/metrics")
    finally:
        metrics.forget_workload("http-test")
    assert status == 200
    assert headers["Content-Type"] == metrics.CONTENT_TYPE_LATEST
    text = body.decode()
    assert 'drd_rpo_exposure_seconds{workload="http-test"} 42.0' in text
    assert 'drd_rpo_objective_seconds{workload="http-test"} 900.0' in text
    assert 'drd_wal_archive_failed_total{workload="http-test"} 3.0' in text
    assert "# TYPE drd_backup_duration_seconds histogram" in text
    assert "python_gc" not in text  # drd's own registry, not the default one


def test_status_page_and_json(serve: Callable[..., HttpServer]) -> None:
    """/ is the HTML page (query strings ignored), /status.json the same view as JSON."""
    server = serve()
    status, headers, body = _request(server, "/?from=bookmark")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    html = body.decode()
    assert 'id="wl-erp"' in html
    assert '<meta http-equiv="refresh" content="30">' in html
    status, headers, body = _request(server, "/status.json")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    data = json.loads(body)
    assert data["title"] == "acme"
    assert data["overall"] == "red"
    assert data["workloads"][0]["drill"] == {
        "rag": "red",
        "label": "FAIL",
        "text": "no drill yet",
        "detail": "",
        "parts": [],
    }
    assert data["workloads"][0]["snapshot"]["label"] == "N/A"


@pytest.mark.parametrize("path", ["/nope", "/metrics/x", "/status", "/healthz/", "/..%2f"])
def test_unknown_paths_are_404(serve: Callable[..., HttpServer], path: str) -> None:
    """Only the five endpoints exist."""
    status, _, body = _request(serve(), path)
    assert (status, body) == (404, b"not found\n")


def test_head_and_other_methods(serve: Callable[..., HttpServer]) -> None:
    """HEAD answers like GET without a body; writes are not supported (501)."""
    server = serve()
    status, headers, body = _request(server, "/healthz", method="HEAD")
    assert (status, body, headers["Content-Length"]) == (200, b"", "3")
    status, _, _ = _request(server, "/", method="POST")
    assert status == 501


def test_failing_status_is_500_without_traceback(
    serve: Callable[..., HttpServer], caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in the status callable: 500, a fixed message, the details only in the log."""

    def broken() -> EstateView:
        raise RuntimeError("catalog password is hunter3-secret")

    server = serve(status=broken)
    for path in ("/", "/status.json"):
        status, headers, body = _request(server, path)
        assert status == 500
        assert body == INTERNAL_ERROR.encode()
        assert b"Traceback" not in body
        assert b"hunter3" not in body
        assert headers["Content-Type"].startswith("text/plain")
    assert any("http_request_failed" in str(record.msg) for record in caplog.records)
    # the server still serves after a failed request
    assert _request(server, "/healthz")[0] == 200


def test_failing_readiness_is_500(serve: Callable[..., HttpServer]) -> None:
    """A readiness callable that raises is not 'ready': 500 with the fixed message."""

    def broken() -> Readiness:
        raise OSError("boom")

    status, _, body = _request(serve(readiness=broken), "/readyz")
    assert (status, body) == (500, INTERNAL_ERROR.encode())


def test_lifecycle() -> None:
    """url needs start(); start twice is refused; stop is idempotent and frees the port."""
    server = HttpServer("127.0.0.1", 0, readiness=lambda: READY, status=_view)
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url
    server.start()
    port = server.port
    with pytest.raises(RuntimeError, match="already started"):
        server.start()
    server.stop()
    server.stop()
    with socket.socket() as sock:  # the port can be bound again
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
    with HttpServer("127.0.0.1", port, readiness=lambda: READY, status=_view) as again:
        assert _request(again, "/healthz")[0] == 200
