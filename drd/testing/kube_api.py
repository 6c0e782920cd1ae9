"""A stub Kubernetes API server on 127.0.0.1: a few canned endpoints, every request recorded.

Enough of the API for ``KubernetesCluster`` (create the drill objects, read the Job's
status and its pod's log, list and delete namespaces) to be tested against real HTTP,
and for the CLI to be pointed at it through a kubeconfig (``write_kubeconfig``).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from drd.drill.kubernetes import ANNOTATION_EXPIRES_AT, LABEL_MANAGED_BY


class StubApiServer:
    """A few canned Kubernetes API endpoints on 127.0.0.1, recording every request."""

    def __init__(self, *, job_condition: str = "Complete", fail_create: str = "") -> None:
        self.requests: list[tuple[str, str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Keep the test output quiet."""

            def _send(self, code: int, body: Any, ctype: str = "application/json") -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                stub.requests.append(("POST", self.path, body))
                if fail_create and fail_create in self.path:
                    self._send(403, {"kind": "Status", "reason": "Forbidden", "code": 403})
                else:
                    self._send(201, body)

            def do_DELETE(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                stub.requests.append(("DELETE", self.path, None))
                self._send(404, {"kind": "Status", "reason": "NotFound", "code": 404})

            def do_GET(self) -> None:
                stub.requests.append(("GET", self.path, None))
                path = self.path.split("?")[0]
                meta = {"name": "x", "creationTimestamp": "2025-01-01T00:00:00Z"}
                if path.endswith("/status"):
                    cond = {"type": job_condition, "status": "True", "reason": "Because"}
                    self._send(200, {"kind": "Job", "status": {"conditions": [cond]}})
                elif path.endswith("/log"):
                    self._send(200, '{"verdict": "pass"}\n', "text/plain")
                elif path.endswith("/pods"):
                    pod = {"metadata": {**meta, "name": "drd-drill-abc"}}
                    self._send(200, {"kind": "PodList", "items": [pod]})
                elif path == "/api/v1/namespaces":
                    ns = {
                        "metadata": {
                            **meta,
                            "name": "drd-drill-0001",
                            "labels": {LABEL_MANAGED_BY: "drd"},
                            "annotations": {ANNOTATION_EXPIRES_AT: "2025-01-01T00:00:00+00:00"},
                        }
                    }
                    self._send(200, {"kind": "NamespaceList", "items": [ns]})
                else:
                    self._send(404, {"kind": "Status", "code": 404})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    api_client: Any = None

    def cluster(self) -> Any:
        """A ``KubernetesCluster`` talking to this server."""
        from kubernetes import client  # noqa: PLC0415 - slow import, only when used

        from drd.drill.kubernetes import KubernetesCluster  # noqa: PLC0415

        cfg = client.Configuration()
        cfg.host = self.url
        self.api_client = client.ApiClient(cfg)
        return KubernetesCluster(self.api_client)

    def close(self) -> None:
        if self.api_client is not None:
            self.api_client.close()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig whose current context is this server."""
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stub", "cluster": {"server": self.url}}],
            "users": [{"name": "stub", "user": {"token": "stub-token-not-secret"}}],
            "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
            "current-context": "stub",
        }
        path.write_text(yaml.safe_dump(doc))
        return path
