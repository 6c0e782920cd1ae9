"""The harness's building blocks: S3 over TLS, standbys, process cleanup by PID."""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from drd.testing import REGISTRY, PgCluster, S3Endpoint, Scratch, wait_until
from drd.testing.processes import ProcessRegistry, free_port, pid_alive

pytestmark = pytest.mark.integration


def test_s3_through_tls_proxy_round_trips_with_harness_ca(s3: S3Endpoint, bucket: str) -> None:
    """boto3 writes and reads through nginx TLS, trusting only the harness CA."""
    client = s3.client()
    payload = bytes(range(256)) * 4096  # 1 MiB, binary
    client.put_object(Bucket=bucket, Key="dir/blob", Body=payload)
    assert client.get_object(Bucket=bucket, Key="dir/blob")["Body"].read() == payload
    assert s3.url.startswith("https://localhost:")


def test_tls_is_real_and_verified(s3: S3Endpoint) -> None:
    """Without the harness CA the certificate is rejected; with it, TLS to localhost works."""
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(s3.url, timeout=5, context=ssl.create_default_context())  # noqa: S310
    ctx = ssl.create_default_context(cafile=str(s3.tls.ca_cert))
    with urllib.request.urlopen(s3.url, timeout=5, context=ctx) as resp:  # noqa: S310
        assert resp.status == 200  # moto lists buckets for an unsigned GET /


def test_large_upload_streams_through_proxy(s3: S3Endpoint, bucket: str) -> None:
    """A 12 MiB multipart upload passes the proxy (no body size limit, no buffering)."""
    client = s3.client()
    data = b"x" * (12 * 1024 * 1024)
    import io

    from boto3.s3.transfer import TransferConfig

    client.upload_fileobj(
        io.BytesIO(data), bucket, "big", Config=TransferConfig(multipart_threshold=5 * 2**20)
    )
    assert client.head_object(Bucket=bucket, Key="big")["ContentLength"] == len(data)


def test_streaming_standby_follows_primary(
    make_cluster: Callable[..., PgCluster], scratch: Scratch
) -> None:
    """make_standby gives a replica on its own port that is in recovery and replays new rows."""
    primary = make_cluster("primary")
    primary.initdb()
    primary.start()
    standby = primary.make_standby(scratch, f"standby-{primary.port}")
    try:
        assert standby.port != primary.port
        assert standby.scalar("SELECT pg_is_in_recovery()") is True
        assert primary.scalar(
            "SELECT system_identifier FROM pg_control_system()"
        ) == standby.scalar("SELECT system_identifier FROM pg_control_system()")
        primary.execute("CREATE TABLE t AS SELECT 42 AS answer")
        wait_until(
            lambda: standby.scalar("SELECT to_regclass('public.t') IS NOT NULL"),
            timeout=30,
            what="standby to replay the new table",
        )
        assert standby.scalar("SELECT answer FROM t") == 42
        assert standby.scalar("SELECT current_setting('archive_mode')") == "off"
    finally:
        standby.stop(mode="immediate")


def test_started_cluster_is_registered_and_stop_unregisters(
    make_cluster: Callable[..., PgCluster],
) -> None:
    """A started server's PID is in the registry until it is stopped, then it is gone."""
    cluster = make_cluster("reg")
    cluster.initdb()
    cluster.start()
    pid = cluster.pid
    assert pid is not None
    assert pid in REGISTRY.alive()
    cluster.stop()
    assert pid not in REGISTRY.alive()
    assert not pid_alive(pid)


def test_registry_kills_leftovers_by_pid() -> None:
    """kill_all stops every registered process, even one that ignores SIGTERM."""
    registry = ProcessRegistry()
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)",
        ]
    )
    time.sleep(0.3)  # let it install the handler
    registry.add(stubborn.pid, "stubborn")
    registry.kill_all(timeout=1)
    assert stubborn.wait(timeout=20) == -9  # SIGTERM ignored, so SIGKILL
    assert registry.alive() == {}


def test_free_ports_are_distinct() -> None:
    """free_port never hands out the same port twice in one process."""
    ports = {free_port() for _ in range(50)}
    assert len(ports) == 50
