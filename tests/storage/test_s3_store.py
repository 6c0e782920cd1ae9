"""S3 backend specifics on moto (multipart, Object Lock, lifecycle, auth) and retries."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from drd.errors import StorageError
from drd.storage import LifecycleTransition
from drd.storage.base import ObjectLockedError
from drd.storage.s3 import S3Store, default_retry_policy
from drd.testing import S3Endpoint

MIB = 1024 * 1024

pytestmark = pytest.mark.integration


def test_large_object_goes_multipart(
    make_s3_store: Callable[..., S3Store], bucket: str, s3: S3Endpoint
) -> None:
    """Data above the threshold is uploaded in parts and reads back whole and by range."""
    store = make_s3_store(bucket, multipart_threshold=1 * MIB, max_workers=4)
    data = os.urandom(11 * MIB)
    store.put("packs/big", data)
    info = store.head("packs/big")
    assert info is not None
    assert info.size == len(data)
    assert info.etag is not None
    assert info.etag.endswith("-3")  # three parts of 5 MiB (S3's minimum part size)
    assert store.get("packs/big") == data
    boundary = 5 * MIB
    assert store.get_range("packs/big", boundary - 10, 20) == data[boundary - 10 : boundary + 10]
    raw = s3.client().head_object(Bucket=bucket, Key="tenant-a/filestore/packs/big")
    assert raw["ContentLength"] == len(data)  # really under the prefix


def test_object_lock_compliance_applies(
    make_s3_store: Callable[..., S3Store], s3: S3Endpoint
) -> None:
    """A compliance-locked put shows in head, and deleting that version is refused."""
    bucket = s3.create_bucket(f"drd-lock-{uuid.uuid4().hex[:12]}", object_lock=True)
    store = make_s3_store(bucket, multipart_threshold=1 * MIB)
    until = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    store.put("evidence/manifest", b"manifest", retain_until=until, lock_mode="compliance")
    store.put("evidence/pack", os.urandom(2 * MIB), retain_until=until, lock_mode="compliance")
    store.put("plain", b"no lock")
    for key in ("evidence/manifest", "evidence/pack"):
        info = store.head(key)
        assert info is not None
        assert info.lock_mode == "compliance"
        assert info.retain_until == until
    plain = store.head("plain")
    assert plain is not None
    assert (plain.lock_mode, plain.retain_until) == (None, None)

    client = s3.client()
    full_key = "tenant-a/filestore/evidence/manifest"
    versions = client.list_object_versions(Bucket=bucket, Prefix=full_key)["Versions"]
    with pytest.raises(ClientError) as refused:
        client.delete_object(Bucket=bucket, Key=full_key, VersionId=versions[0]["VersionId"])
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ObjectLockedError, match="evidence/manifest is locked until"):
        store.delete("evidence/manifest")  # deleted by version: refused, no delete marker
    assert store.get("evidence/manifest") == b"manifest"
    kept = client.get_object(Bucket=bucket, Key=full_key, VersionId=versions[0]["VersionId"])
    assert kept["Body"].read() == b"manifest"


def test_object_lock_arguments_are_checked(
    make_s3_store: Callable[..., S3Store], bucket: str
) -> None:
    """Lock mode without a date, or a naive date, is refused before any request."""
    store = make_s3_store(bucket)
    with pytest.raises(StorageError, match="both retain_until and lock_mode"):
        store.put("k", b"x", lock_mode="compliance")
    with pytest.raises(StorageError, match="timezone-aware"):
        store.put("k", b"x", retain_until=datetime(2030, 1, 1), lock_mode="governance")
    assert store.head("k") is None


def test_lifecycle_round_trip(
    make_s3_store: Callable[..., S3Store], bucket: str, s3: S3Endpoint
) -> None:
    """Transitions read back, are scoped to the store prefix and keep other rules."""
    client = s3.client()
    foreign = {
        "ID": "pgbackrest-archive",
        "Status": "Enabled",
        "Filter": {"Prefix": "tenant-a/pgbackrest/"},
        "Transitions": [{"Days": 60, "StorageClass": "GLACIER"}],
    }
    client.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [foreign]}
    )
    store = make_s3_store(bucket)
    other = make_s3_store(bucket, prefix="tenant-b/filestore")
    assert store.get_lifecycle() == []
    wanted = [
        LifecycleTransition("data/", 90, "GLACIER"),
        LifecycleTransition("data/", 30, "STANDARD_IA"),
        LifecycleTransition("", 365, "DEEP_ARCHIVE"),
    ]
    store.set_lifecycle(wanted)
    store.set_lifecycle(wanted)  # idempotent: no duplicate rules
    expected = sorted(wanted, key=lambda t: (t.prefix, t.days, t.storage_class))
    assert store.get_lifecycle() == expected
    assert other.get_lifecycle() == []
    other.set_lifecycle([LifecycleTransition("data/", 30, "STANDARD_IA")])
    assert store.get_lifecycle() == expected

    rules = client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    prefixes = sorted(rule["Filter"]["Prefix"] for rule in rules)
    assert prefixes == [
        "tenant-a/filestore/",
        "tenant-a/filestore/data/",
        "tenant-a/filestore/data/",
        "tenant-a/pgbackrest/",
        "tenant-b/filestore/data/",
    ]
    assert foreign in rules

    store.set_lifecycle([])
    other.set_lifecycle([])
    assert store.get_lifecycle() == []
    assert client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == [foreign]


def test_wrong_secret_is_a_clear_error(
    authed_s3: tuple[S3Endpoint, str, str], s3_store_on: Callable[..., S3Store]
) -> None:
    """The right key works; a wrong secret fails at once naming the bucket, never a secret."""
    endpoint, key_id, secret = authed_s3
    endpoint.client_with(key_id, secret).create_bucket(Bucket="auth-bucket")
    right = s3_store_on(endpoint, "auth-bucket", access_key=key_id, secret_key=secret)
    right.put("probe", b"ok")
    assert right.get("probe") == b"ok"

    wrong_secret = "wrong-secret-value-0123456789"
    slept: list[float] = []
    wrong = s3_store_on(
        endpoint,
        "auth-bucket",
        access_key=key_id,
        secret_key=wrong_secret,
        retry=replace(default_retry_policy(), sleep=slept.append),
    )
    try:
        with pytest.raises(StorageError) as info:
            wrong.get("probe")
    finally:
        wrong.close()
        right.close()
    message = str(info.value)
    assert "s3://auth-bucket/tenant-a/filestore/probe" in message
    assert "SignatureDoesNotMatch" in message
    assert "HTTP 403" in message
    assert "access keys" in (info.value.hint or "")
    assert slept == []  # a 403 is not retried
    for secret_text in (wrong_secret, secret):
        assert secret_text not in message
        assert secret_text not in repr(info.value)
