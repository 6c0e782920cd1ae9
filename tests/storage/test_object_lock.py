"""Object Lock in the stores: refused deletes with the date, versions, retention, status."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from drd.errors import StorageError
from drd.storage import FilesystemStore, MemoryStore, ObjectNotFoundError
from drd.storage.base import (
    LockMode,
    ObjectLockedError,
    ObjectLockUnsupportedError,
    ObjectRetention,
    format_lock_date,
)
from drd.storage.s3 import S3Store
from drd.testing import S3Endpoint

PREFIX = "tenant-a/filestore"


def _until(days: float = 1) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)


def _versions(s3: S3Endpoint, bucket: str, key: str) -> tuple[list[str], list[str]]:
    """(version ids, delete marker ids) of exactly ``PREFIX/key``."""
    full = f"{PREFIX}/{key}"
    answer = s3.client().list_object_versions(Bucket=bucket, Prefix=full)
    versions = [v["VersionId"] for v in answer.get("Versions", []) if v["Key"] == full]
    markers = [m["VersionId"] for m in answer.get("DeleteMarkers", []) if m["Key"] == full]
    return versions, markers


@pytest.fixture
def lock_bucket(s3: S3Endpoint) -> str:
    """A fresh bucket created with Object Lock (moto turns versioning on with it)."""
    return s3.create_bucket(f"drd-lock-{uuid.uuid4().hex[:12]}", object_lock=True)


# -- S3 on moto ------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["compliance", "governance"])
def test_delete_of_locked_object_is_refused_with_date(
    make_s3_store: Callable[..., S3Store], lock_bucket: str, s3: S3Endpoint, mode: LockMode
) -> None:
    """A locked object's delete raises ObjectLockedError (key, date, mode); nothing changes."""
    store = make_s3_store(lock_bucket)
    until = _until()
    store.put("data/ab/pack", b"pack bytes", retain_until=until, lock_mode=mode)
    with pytest.raises(ObjectLockedError) as refused:
        store.delete("data/ab/pack")
    error = refused.value
    assert (error.key, error.retain_until, error.mode) == ("data/ab/pack", until, mode)
    assert str(error).startswith(f"data/ab/pack is locked until {format_lock_date(until)} ({mode})")
    assert error.exit_code == 4  # a StorageError
    assert store.get("data/ab/pack") == b"pack bytes"
    versions, markers = _versions(s3, lock_bucket, "data/ab/pack")
    assert len(versions) == 1
    assert markers == []  # no delete marker hiding the data


@pytest.mark.integration
def test_unlocked_object_on_lock_bucket_leaves_no_versions(
    make_s3_store: Callable[..., S3Store], lock_bucket: str, s3: S3Endpoint
) -> None:
    """On an Object Lock bucket delete removes every version, not just the name."""
    store = make_s3_store(lock_bucket)
    store.put("locks/abc", b"v1")
    store.put("locks/abc", b"v2")  # a lock refresh: a second version
    store.put("locks/abcd", b"neighbour")  # same prefix, another key: untouched
    assert len(_versions(s3, lock_bucket, "locks/abc")[0]) == 2
    store.delete("locks/abc")
    assert _versions(s3, lock_bucket, "locks/abc") == ([], [])
    assert store.head("locks/abc") is None
    assert store.get("locks/abcd") == b"neighbour"
    store.delete("locks/abc")  # missing: not an error
    store.delete("never/was")


@pytest.mark.integration
def test_locked_version_behind_an_overwrite_still_refuses(
    make_s3_store: Callable[..., S3Store], lock_bucket: str
) -> None:
    """An unlocked overwrite does not free a locked older version; the current one stays."""
    store = make_s3_store(lock_bucket)
    until = _until(2)
    store.put("config", b"locked", retain_until=until, lock_mode="governance")
    store.put("config", b"current")
    with pytest.raises(ObjectLockedError, match=r"config is locked until .* \(governance\)"):
        store.delete("config")
    assert store.get("config") == b"current"


@pytest.mark.integration
def test_delete_many_deletes_unlocked_and_names_locked(
    make_s3_store: Callable[..., S3Store], lock_bucket: str, s3: S3Endpoint
) -> None:
    """delete_many removes what it may and raises for the locked ones, which stay."""
    store = make_s3_store(lock_bucket)
    until = _until()
    for name in ("a", "b", "c"):
        store.put(f"data/{name}", name.encode())
    store.put("data/x", b"x", retain_until=until, lock_mode="compliance")
    store.put("data/y", b"y", retain_until=until, lock_mode="compliance")
    with pytest.raises(ObjectLockedError) as refused:
        store.delete_many(["data/a", "data/x", "data/b", "data/y", "data/c", "data/gone"])
    assert refused.value.key == "data/x"
    assert refused.value.others == 1
    assert "1 more object(s) are locked" in str(refused.value)
    assert [i.key for i in store.list("data/")] == ["data/x", "data/y"]
    for name in "abc":
        assert _versions(s3, lock_bucket, f"data/{name}") == ([], [])


@pytest.mark.integration
def test_plain_and_versioned_buckets_keep_their_delete(
    make_s3_store: Callable[..., S3Store], bucket: str, s3: S3Endpoint
) -> None:
    """Without Object Lock delete is the plain DeleteObject it always was."""
    store = make_s3_store(bucket)
    store.put("k", b"x")
    store.delete("k")
    assert store.head("k") is None
    versioned = s3.create_bucket(f"drd-ver-{uuid.uuid4().hex[:12]}")
    s3.client().put_bucket_versioning(
        Bucket=versioned, VersioningConfiguration={"Status": "Enabled"}
    )
    vstore = make_s3_store(versioned)
    vstore.put("k", b"x")
    vstore.delete("k")
    assert vstore.head("k") is None
    versions, markers = _versions(s3, versioned, "k")
    assert (len(versions), len(markers)) == (1, 1)  # the bucket's versioning keeps it


@pytest.mark.integration
def test_bucket_lock_status(
    make_s3_store: Callable[..., S3Store], bucket: str, lock_bucket: str, s3: S3Endpoint
) -> None:
    """Versioning and Object Lock (and a default retention) are read from the bucket."""
    plain = make_s3_store(bucket).bucket_lock_status()
    assert (plain.bucket, plain.versioning, plain.object_lock, plain.can_lock) == (
        bucket,
        False,
        False,
        False,
    )
    locked = make_s3_store(lock_bucket).bucket_lock_status()
    assert (locked.versioning, locked.object_lock, locked.can_lock) == (True, True, True)
    assert (locked.default_mode, locked.default_days) == (None, None)
    with_default = s3.create_bucket(f"drd-def-{uuid.uuid4().hex[:12]}", object_lock=True)
    s3.client().put_object_lock_configuration(
        Bucket=with_default,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 3}},
        },
    )
    status = make_s3_store(with_default).bucket_lock_status()
    assert (status.default_mode, status.default_days) == ("governance", 3)


@pytest.mark.integration
def test_set_retention_only_extends(
    make_s3_store: Callable[..., S3Store], lock_bucket: str, bucket: str
) -> None:
    """PutObjectRetention extends a lock, never shortens it, keeps an active lock's mode."""
    store = make_s3_store(lock_bucket)
    until = _until(1)
    store.put("p", b"x", retain_until=until, lock_mode="governance")
    later = _until(5)
    assert store.set_retention("p", later, "compliance") is True
    assert store.get_retention("p") == ObjectRetention("governance", later)  # mode kept
    assert store.set_retention("p", until, "governance") is False  # never shorter
    assert store.get_retention("p") == ObjectRetention("governance", later)
    store.put("unlocked", b"y")
    assert store.get_retention("unlocked") is None
    assert store.set_retention("unlocked", until, "compliance") is True
    assert store.get_retention("unlocked") == ObjectRetention("compliance", until)
    with pytest.raises(ObjectNotFoundError):
        store.set_retention("missing", until, "compliance")
    plain = make_s3_store(bucket)
    plain.put("q", b"z")
    with pytest.raises(StorageError, match="put retention failed"):
        plain.set_retention("q", until, "compliance")


@pytest.mark.integration
def test_sibling_shares_the_client(make_s3_store: Callable[..., S3Store], lock_bucket: str) -> None:
    """A sibling store reaches other prefixes of the same bucket with the same client."""
    store = make_s3_store(lock_bucket)
    root = store.sibling("tenant-a")
    assert root.location == f"s3://{lock_bucket}/tenant-a"
    root.put("pgbackrest/backup/main/backup.info", b"info")
    store.put("config", b"c")
    assert [i.key for i in root.list()] == [
        "filestore/config",
        "pgbackrest/backup/main/backup.info",
    ]
    until = _until()
    root.put("pgbackrest/archive/x", b"w", retain_until=until, lock_mode="compliance")
    with pytest.raises(ObjectLockedError):
        root.delete("pgbackrest/archive/x")


class PagedVersions:
    """A scripted client listing versions two per page (the store is told: Object Lock)."""

    def __init__(self, entries: list[tuple[str, str, bool, bool]]) -> None:
        self.entries = entries  # (key, version id, is latest, is delete marker), key order
        self.deleted: list[list[dict[str, str]]] = []
        self.pages = 0

    def list_object_versions(self, **kw: Any) -> dict[str, Any]:
        self.pages += 1
        rest = [e for e in self.entries if e[0].startswith(kw["Prefix"])]
        if "KeyMarker" in kw:
            marker = (kw["KeyMarker"], kw["VersionIdMarker"])
            rest = rest[[(e[0], e[1]) for e in rest].index(marker) + 1 :]
        page, more = rest[:2], len(rest) > 2
        answer: dict[str, Any] = {
            "Versions": [
                {"Key": k, "VersionId": v, "IsLatest": latest}
                for k, v, latest, marker in page
                if not marker
            ],
            "DeleteMarkers": [
                {"Key": k, "VersionId": v, "IsLatest": latest}
                for k, v, latest, marker in page
                if marker
            ],
            "IsTruncated": more,
        }
        if more:
            answer["NextKeyMarker"], answer["NextVersionIdMarker"] = page[-1][0], page[-1][1]
        return answer

    def delete_objects(self, **kw: Any) -> dict[str, Any]:
        self.deleted.append(kw["Delete"]["Objects"])
        return {}

    def close(self) -> None:
        pass


def test_versions_are_paged_and_the_current_one_goes_last() -> None:
    """Every version and delete marker of exactly the key, over pages; latest deleted last."""
    client = PagedVersions(
        [
            ("p/k", "m1", True, True),
            ("p/k", "v3", False, False),
            ("p/k", "v2", False, False),
            ("p/k", "v1", False, False),
            ("p/k2", "x1", True, False),
        ]
    )
    store = S3Store("bkt", "p", client=client, object_lock=True)  # type: ignore[arg-type]
    store.delete("k")
    assert client.pages == 3  # page 2 ended on this key: one more page to be sure
    assert client.deleted == [
        [{"Key": "p/k", "VersionId": v} for v in ("v3", "v2", "v1")],
        [{"Key": "p/k", "VersionId": "m1"}],
    ]


# -- memory and filesystem ------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_memory_store_models_object_lock() -> None:
    """The fake refuses locked deletes until the date passes, as S3 does."""
    clock = Clock()
    store = MemoryStore(clock=clock)
    until = clock.now + timedelta(days=3)
    store.put("a", b"1", retain_until=until, lock_mode="compliance")
    info = store.head("a")
    assert info is not None
    assert (info.lock_mode, info.retain_until) == ("compliance", until)
    with pytest.raises(ObjectLockedError, match="a is locked until 2026-01-04T00:00:00Z"):
        store.delete("a")
    store.put("a", b"2")  # an unlocked overwrite hides the locked version
    with pytest.raises(ObjectLockedError):
        store.delete("a")
    assert store.get("a") == b"2"
    clock.now = until + timedelta(seconds=1)
    store.delete("a")
    assert store.head("a") is None


def test_memory_store_retention_and_status() -> None:
    """set_retention extends only and keeps an active mode; no lock without Object Lock."""
    clock = Clock()
    store = MemoryStore(clock=clock)
    assert store.bucket_lock_status().can_lock
    store.put("k", b"x")
    day = clock.now + timedelta(days=1)
    assert store.set_retention("k", day, "governance")
    assert not store.set_retention("k", day - timedelta(hours=1), "governance")
    assert store.set_retention("k", day + timedelta(days=1), "compliance")
    assert store.get_retention("k") == ObjectRetention("governance", day + timedelta(days=1))
    with pytest.raises(ObjectNotFoundError):
        store.set_retention("nope", day, "governance")
    with pytest.raises(StorageError, match="timezone-aware"):
        store.put("n", b"x", retain_until=datetime(2030, 1, 1), lock_mode="governance")
    plain = MemoryStore(object_lock=False)
    assert not plain.bucket_lock_status().can_lock
    with pytest.raises(StorageError, match="no Object Lock"):
        plain.put("k", b"x", retain_until=day, lock_mode="governance")


def test_filesystem_store_cannot_lock(tmp_path: Path) -> None:
    """A filesystem repository says so for every Object Lock request; reads show no lock."""
    store = FilesystemStore(tmp_path)
    store.put("k", b"x")
    with pytest.raises(ObjectLockUnsupportedError, match="not supported on a filesystem"):
        store.bucket_lock_status()
    with pytest.raises(StorageError, match="object lock is not supported on a filesystem"):
        store.set_retention("k", _until(), "governance")
    assert store.get_retention("k") is None
