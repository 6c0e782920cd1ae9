"""A real S3 HTTP endpoint over TLS: ``moto_server`` behind an nginx TLS proxy.

moto's own TLS mode breaks pgBackRest ("unexpected eof while reading"), so moto serves
plain HTTP on one port and nginx terminates TLS on another, streaming both ways
(no request/response buffering, HTTP/1.1 keep-alive to the upstream, Host kept for
path-style addressing). boto3 and pgBackRest both talk to ``https://localhost:PORT``
and trust the harness CA.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from drd.testing.processes import REGISTRY, Scratch, free_port, port_open, stop_pid, wait_until
from drd.testing.tls import TlsFiles, make_localhost_tls

ACCESS_KEY = "drdtestaccesskey"
SECRET_KEY = "drd-test-secret-key-not-real"  # noqa: S105 - moto accepts any credentials
REGION = "us-east-1"
_ALLOW_ALL = (
    '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}'
)

NGINX_CONF = """\
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
daemon off;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        server_name localhost;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        client_max_body_size 0;
        location / {{
            proxy_pass http://127.0.0.1:{http_port};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout 300s;
        }}
    }}
}}
"""


def _nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if not found:
        raise RuntimeError("nginx not found: run `make test` (it installs nginx-light)")
    return found


@dataclass
class S3Endpoint:
    """moto (HTTP) + nginx (TLS). Start with ``S3Endpoint.start(scratch)``; ``stop()`` after."""

    root: Path
    http_port: int
    tls_port: int
    tls: TlsFiles
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://localhost:{self.tls_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @classmethod
    def start(
        cls,
        scratch: Scratch,
        timeout: float = 30,
        *,
        name: str = "s3",
        moto_env: dict[str, str] | None = None,
    ) -> S3Endpoint:
        """Start moto and the TLS proxy; ``moto_env`` e.g. enables IAM authentication:
        ``{"INITIAL_NO_AUTH_ACTION_COUNT": "N"}`` lets the first N requests through, then
        every request must be signed by a key moto's IAM knows."""
        root = scratch.dir(name, mode=0o755)
        (root / "tmp").mkdir(exist_ok=True)
        endpoint = cls(root, free_port(), free_port(), make_localhost_tls(root))
        try:
            endpoint._start_moto(timeout, moto_env or {})
            endpoint._start_nginx(timeout)
        except BaseException:
            endpoint.stop()
            raise
        return endpoint

    def _spawn(
        self, args: list[str], label: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.root / f"{label}.log").open("ab")
        proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        log.close()
        self.procs.append(proc)
        REGISTRY.add(proc.pid, label)
        return proc

    def _start_moto(self, timeout: float, env: dict[str, str]) -> None:
        proc = self._spawn(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.http_port)],
            "moto",
            env,
        )

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited: {self._log('moto')}")
            with urllib.request.urlopen(f"{self.http_url}/moto-api/", timeout=1) as resp:  # noqa: S310
                return bool(resp.status == 200)

        wait_until(up, timeout=timeout, what="moto_server", interval=0.1)

    def _start_nginx(self, timeout: float) -> None:
        conf = self.root / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                root=self.root,
                tls_port=self.tls_port,
                http_port=self.http_port,
                cert=self.tls.server_cert,
                key=self.tls.server_key,
            )
        )
        error_log = str(self.root / "nginx-error.log")
        proc = self._spawn(
            [_nginx_binary(), "-p", str(self.root), "-c", str(conf), "-e", error_log], "nginx"
        )

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"nginx exited: {self._log('nginx')} {Path(error_log).read_text()}"
                )
            return port_open(self.tls_port)

        wait_until(up, timeout=timeout, what="nginx TLS proxy", interval=0.05)

    def _log(self, label: str) -> str:
        try:
            return (self.root / f"{label}.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_pid(proc.pid)
            REGISTRY.discard(proc.pid)
            proc.wait(timeout=10)  # reap it: we are its parent
        self.procs.clear()

    @classmethod
    def start_authenticated(
        cls, scratch: Scratch, name: str = "s3-auth"
    ) -> tuple[S3Endpoint, str, str]:
        """A moto that checks request signatures, with one IAM user allowed everything.

        moto enforces authentication after ``INITIAL_NO_AUTH_ACTION_COUNT`` requests; the
        first four create the user, its access key and an allow-all policy. Returns the
        endpoint, the key id and its secret (tests then try wrong secrets against it)."""
        endpoint = cls.start(scratch, name=name, moto_env={"INITIAL_NO_AUTH_ACTION_COUNT": "4"})
        try:
            iam = boto3.client(
                "iam",
                endpoint_url=endpoint.url,
                region_name=REGION,
                aws_access_key_id="bootstrap",
                aws_secret_access_key="bootstrap",  # noqa: S106 - unauthenticated bootstrap
                verify=str(endpoint.tls.ca_cert),
            )
            iam.create_user(UserName="drd")
            key = iam.create_access_key(UserName="drd")["AccessKey"]
            policy = iam.create_policy(PolicyName="all", PolicyDocument=_ALLOW_ALL)
            iam.attach_user_policy(UserName="drd", PolicyArn=policy["Policy"]["Arn"])
        except BaseException:
            endpoint.stop()
            raise
        return endpoint, str(key["AccessKeyId"]), str(key["SecretAccessKey"])

    # -- clients ---------------------------------------------------------------------

    def client(self) -> Any:
        """A boto3 S3 client that goes through the TLS proxy and trusts the harness CA.

        Cached: building a client costs ~0.3 s and boto3 clients are thread-safe."""
        cached = self.__dict__.get("_client")
        if cached is not None:
            return cached
        self.__dict__["_client"] = self._new_client()
        return self.__dict__["_client"]

    def _new_client(self) -> Any:
        return self.client_with(ACCESS_KEY, SECRET_KEY)

    def client_with(self, key_id: str, secret: str) -> Any:
        """A boto3 S3 client with the given key (for the authenticated endpoint)."""
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            verify=str(self.tls.ca_cert),
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
        )

    def create_bucket(self, name: str, *, object_lock: bool = False) -> str:
        kwargs: dict[str, Any] = {"Bucket": name}
        if object_lock:
            kwargs["ObjectLockEnabledForBucket"] = True
        self.client().create_bucket(**kwargs)
        return name
