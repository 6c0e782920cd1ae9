"""Store fixtures: the same ``store`` fixture over the memory, filesystem and S3 backends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from drd.storage import FilesystemStore, MemoryStore, ObjectStore
from drd.storage.s3 import S3Store
from drd.testing import S3Endpoint
from drd.testing.s3 import ACCESS_KEY, REGION, SECRET_KEY

BACKENDS = [
    "memory",
    "filesystem",
    pytest.param("s3", marks=pytest.mark.integration),
]


def s3_store(endpoint: S3Endpoint, bucket: str, **kw: Any) -> S3Store:
    """An ``S3Store`` on the test endpoint (moto behind the TLS proxy)."""
    options: dict[str, Any] = {
        "endpoint_url": endpoint.url,
        "region": REGION,
        "path_style": True,
        "ca_file": endpoint.tls.ca_cert,
        "access_key": ACCESS_KEY,
        "secret_key": SECRET_KEY,
        **kw,
    }
    return S3Store(bucket, options.pop("prefix", "tenant-a/filestore"), **options)


@pytest.fixture
def s3_store_on() -> Callable[..., S3Store]:
    """``s3_store`` itself, for tests that start their own endpoint."""
    return s3_store


@pytest.fixture
def make_s3_store(s3: S3Endpoint) -> Iterator[Callable[..., S3Store]]:
    """Factory of S3 stores on the session endpoint; all closed at teardown."""
    made: list[S3Store] = []

    def factory(bucket: str, **kw: Any) -> S3Store:
        store = s3_store(s3, bucket, **kw)
        made.append(store)
        return store

    yield factory
    for store in made:
        store.close()


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    """One empty store of each backend; the S3 one in a fresh bucket."""
    made: ObjectStore
    if request.param == "memory":
        made = MemoryStore()
    elif request.param == "filesystem":
        made = FilesystemStore(tmp_path / "repo" / "filestore")
    else:
        endpoint: S3Endpoint = request.getfixturevalue("s3")
        made = s3_store(endpoint, request.getfixturevalue("bucket"))
    yield made
    made.close()
