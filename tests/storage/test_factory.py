"""open_store: a configured repository's snapshot store sits beside pgBackRest's data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from drd.config.models import FilesystemRepository, S3Repository
from drd.storage import FilesystemStore, open_store
from drd.storage.s3 import S3Store
from drd.testing import S3Endpoint
from drd.testing.s3 import ACCESS_KEY, SECRET_KEY

ENCRYPTION = {"passphrase": {"env": "DRD_TEST_PASSPHRASE"}}


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRD_TEST_PASSPHRASE", "a-long-test-passphrase")
    monkeypatch.setenv("DRD_TEST_S3_KEY", ACCESS_KEY)
    monkeypatch.setenv("DRD_TEST_S3_SECRET", SECRET_KEY)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no IMDS probe for the default chain


def s3_repo(**overrides: Any) -> S3Repository:
    fields: dict[str, Any] = {
        "type": "s3",
        "name": "vault",
        "bucket": "drd-bucket",
        "prefix": "tenant-a",
        "region": "us-east-1",
        "uri_style": "path",
        "encryption": ENCRYPTION,
        **overrides,
    }
    return S3Repository.model_validate(fields)


def test_filesystem_repository_uses_filestore_dir(tmp_path: Path) -> None:
    """A filesystem repository's store writes under <path>/filestore, not pgbackrest/."""
    repo = FilesystemRepository.model_validate(
        {"type": "filesystem", "name": "local", "path": str(tmp_path), "encryption": ENCRYPTION}
    )
    store = open_store(repo)
    assert isinstance(store, FilesystemStore)
    store.put("snapshots/1", b"x")
    assert (tmp_path / "filestore" / "snapshots" / "1").read_bytes() == b"x"
    assert store.location == str(tmp_path / "filestore")


def test_s3_repository_without_credentials_uses_default_chain() -> None:
    """No credentials: the store is built (boto3's default chain), prefix + filestore."""
    store = open_store(s3_repo())
    try:
        assert isinstance(store, S3Store)
        assert store.location == "s3://drd-bucket/tenant-a/filestore"
    finally:
        store.close()
    bare = open_store(s3_repo(prefix=""))
    assert bare.location == "s3://drd-bucket/filestore"
    bare.close()


@pytest.mark.integration
def test_s3_repository_round_trip(s3: S3Endpoint, bucket: str) -> None:
    """Credentials from secret references, endpoint, CA and path style reach moto."""
    repo = s3_repo(
        bucket=bucket,
        endpoint=s3.url,
        ca_file=str(s3.tls.ca_cert),
        credentials={
            "access_key_id": {"env": "DRD_TEST_S3_KEY"},
            "secret_access_key": {"env": "DRD_TEST_S3_SECRET"},
        },
    )
    store = open_store(repo)
    try:
        store.put("snapshots/1", b"payload")
        assert store.get("snapshots/1") == b"payload"
    finally:
        store.close()
    body = s3.client().get_object(Bucket=bucket, Key="tenant-a/filestore/snapshots/1")["Body"]
    assert body.read() == b"payload"
