"""Shared fixtures: real components from ``drd.testing``, always stopped by PID.

Session-scoped: one scratch dir, one S3 endpoint (moto behind nginx TLS), one
PostgreSQL server for catalog tests. Function-scoped: buckets and clusters that tests
change. Teardown stops everything even when a test fails; ``REGISTRY.kill_all`` at the
end catches anything a test leaked.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drd import log, redact
from drd.testing import REGISTRY, PgCluster, S3Endpoint, Scratch
from drd.testing.estate import EstateBuilder

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _configure_logging() -> Iterator[None]:
    log.configure("info", json=True)
    yield
    REGISTRY.kill_all()


@pytest.fixture(autouse=True)
def _isolate_process_state() -> Iterator[None]:
    """Each test starts with info-level logging and an empty redaction registry.

    Both are process-global: CLI tests reconfigure logging (``--log-level``) and
    resolved secrets stay registered for the process lifetime.
    """
    log.configure("info", json=True)
    yield
    redact.forget_all_secrets()


@pytest.fixture(scope="session")
def scratch() -> Iterator[Scratch]:
    area = Scratch(prefix="drd-tests-")
    yield area
    REGISTRY.kill_all()
    area.cleanup()


@pytest.fixture(scope="session")
def s3(scratch: Scratch) -> Iterator[S3Endpoint]:
    endpoint = S3Endpoint.start(scratch)
    yield endpoint
    endpoint.stop()


@pytest.fixture(scope="session")
def authed_s3(scratch: Scratch) -> Iterator[tuple[S3Endpoint, str, str]]:
    """A second S3 endpoint that checks signatures: (endpoint, key id, secret)."""
    endpoint, key_id, secret = S3Endpoint.start_authenticated(scratch)
    yield endpoint, key_id, secret
    endpoint.stop()


@pytest.fixture
def bucket(s3: S3Endpoint) -> str:
    """A fresh, empty bucket for one test."""
    return s3.create_bucket(f"drd-test-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def make_cluster(scratch: Scratch) -> Iterator[Callable[..., PgCluster]]:
    """Factory of PostgreSQL clusters (allocated, not started); all stopped at teardown."""
    made: list[PgCluster] = []

    def factory(name: str = "pg") -> PgCluster:
        cluster = PgCluster.allocate(scratch, f"{name}-{uuid.uuid4().hex[:8]}")
        made.append(cluster)
        return cluster

    yield factory
    for cluster in reversed(made):
        cluster.stop(mode="immediate")


@pytest.fixture(scope="session")
def shared_pg(scratch: Scratch) -> Iterator[PgCluster]:
    """One running server for tests that only need databases (catalog tests)."""
    cluster = PgCluster.create(scratch, "shared")
    cluster.start()
    yield cluster
    cluster.stop(mode="immediate")


@pytest.fixture
def pg_database(shared_pg: PgCluster) -> str:
    """A fresh database on the shared server; returns a postgresql:// URL (no password)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    shared_pg.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1:{shared_pg.port}/{name}"


@pytest.fixture
def estate_builder(scratch: Scratch) -> EstateBuilder:
    """Builds a drd config for harness clusters (see drd.testing.estate)."""
    return EstateBuilder(scratch, name=f"estate-{uuid.uuid4().hex[:8]}")
