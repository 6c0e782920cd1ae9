"""Object Lock per tier: policy, locking writes, startup check, extension, audit, CLI."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from drd.cli import app as cli_app
from drd.config import load
from drd.errors import ConfigError
from drd.retention.immutability import (
    REPOSITORY_EXEMPT,
    LockingStore,
    LockPolicy,
    check_immutability,
    extend_locks,
    lock_note,
    lock_pgbackrest,
    lock_prefix,
    lock_store,
    open_repository_root,
    repository_policy,
    require_estate_object_lock,
    require_object_lock,
    split_locked,
)
from drd.storage import FilesystemStore, MemoryStore
from drd.storage.base import ObjectLockedError
from drd.storage.s3 import S3Store
from drd.testing import S3Endpoint
from drd.testing.estate import write_config_only
from drd.testing.s3 import ACCESS_KEY, REGION, SECRET_KEY

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def write_estate(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    repositories: list[dict[str, Any]],
    workloads: list[tuple[str, str, str, bool]],
) -> Path:
    """A config with these repositories and (name, tier, repository, filestore) workloads."""
    monkeypatch.setenv("IMM_PASSPHRASE", "immutability-test-passphrase")
    monkeypatch.setenv("IMM_S3_KEY", ACCESS_KEY)
    monkeypatch.setenv("IMM_S3_SECRET", SECRET_KEY)
    return write_config_only(tmp_path, repositories, workloads)


def s3_repo(s3: S3Endpoint, name: str, bucket: str, prefix: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "type": "s3",
        "bucket": bucket,
        "prefix": prefix,
        "endpoint": s3.url,
        "region": REGION,
        "uri_style": "path",
        "ca_file": str(s3.tls.ca_cert),
        "credentials": {
            "access_key_id": {"env": "IMM_S3_KEY"},
            "secret_access_key": {"env": "IMM_S3_SECRET"},
        },
        "encryption": {"passphrase": {"env": "IMM_PASSPHRASE"}},
    }


def fs_repo(tmp_path: Path, name: str = "local") -> dict[str, Any]:
    return {
        "name": name,
        "type": "filesystem",
        "path": str(tmp_path / name),
        "encryption": {"passphrase": {"env": "IMM_PASSPHRASE"}},
    }


def s3_store(s3: S3Endpoint, bucket: str, prefix: str = "tenant-a/filestore") -> S3Store:
    return S3Store(
        bucket,
        prefix,
        endpoint_url=s3.url,
        region=REGION,
        path_style=True,
        ca_file=s3.tls.ca_cert,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
    )


def lock_bucket(s3: S3Endpoint) -> str:
    return s3.create_bucket(f"drd-imm-{uuid.uuid4().hex[:12]}", object_lock=True)


# -- policy ------------------------------------------------------------------------------------


def test_policy_from_tiers_and_strictest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tier files give the policies; a repository follows its strictest tier."""
    path = write_estate(
        tmp_path,
        monkeypatch,
        [fs_repo(tmp_path, "shared"), fs_repo(tmp_path, "cheap")],
        [
            ("erp", "tier-0", "shared", True),
            ("wms", "tier-1", "shared", True),
            ("wiki", "tier-2", "cheap", False),
        ],
    )
    estate = load(path)
    tier0 = LockPolicy.for_tier(estate.tiers["tier-0"])
    tier1 = LockPolicy.for_tier(estate.tiers["tier-1"])
    assert tier0 == LockPolicy("compliance", 35)
    assert tier1 == LockPolicy("governance", 14)
    assert LockPolicy.for_tier(estate.tiers["tier-2"]) is None
    assert repository_policy(estate, "shared") == LockPolicy("compliance", 35)
    assert repository_policy(estate, "cheap") is None
    assert LockPolicy("governance", 40).stricter(tier0) == LockPolicy("compliance", 40)
    assert tier0.renew_within == timedelta(days=7)
    assert tier1.renew_within == timedelta(days=2)
    assert LockPolicy("governance", 1).renew_within == timedelta(days=1)
    now = datetime(2026, 1, 1, 12, 0, 0, 500, tzinfo=UTC)
    assert tier1.retain_until(now) == datetime(2026, 1, 15, 12, 0, 1, tzinfo=UTC)


# -- writing ----------------------------------------------------------------------------------


def test_locking_store_locks_every_put_but_locks(tmp_path: Path) -> None:
    """put and put_if_absent get now + days in the tier's mode; locks/ stays deletable."""
    clock = Clock()
    inner = MemoryStore(clock=clock)
    store = LockingStore(inner, LockPolicy("governance", 14), clock=clock)
    until = T0 + timedelta(days=14)
    store.put("data/ab/pack", b"p")
    assert store.put_if_absent("keys/k1", b"k")
    assert not store.put_if_absent("keys/k1", b"other")
    store.put("locks/l1", b"lock")
    later = T0 + timedelta(days=30)
    store.put("snapshots/s1", b"s", retain_until=later, lock_mode="compliance")
    for key, mode, when in [
        ("data/ab/pack", "governance", until),
        ("keys/k1", "governance", until),
        ("snapshots/s1", "compliance", later),
    ]:
        info = store.head(key)
        assert info is not None
        assert (info.lock_mode, info.retain_until) == (mode, when), key
    with pytest.raises(ObjectLockedError, match="data/ab/pack is locked until 2026-01-15"):
        store.delete("data/ab/pack")
    store.delete("locks/l1")
    assert store.head("locks/l1") is None
    assert store.location == inner.location


@pytest.mark.integration
def test_locking_store_on_moto(s3: S3Endpoint, tmp_path: Path) -> None:
    """On a real Object Lock bucket the writes carry the tier's mode and date."""
    bucket = lock_bucket(s3)
    clock = Clock(datetime.now(UTC))
    policy = LockPolicy("compliance", 35)
    store = LockingStore(s3_store(s3, bucket), policy, clock=clock)
    try:
        store.put("index/i1", b"index")
        assert store.put_if_absent("config", b"{}")
        store.put("locks/l1", b"lock")
        for key in ("index/i1", "config"):
            info = store.head(key)
            assert info is not None
            assert info.lock_mode == "compliance"
            assert info.retain_until == policy.retain_until(clock.now)
        store.delete("locks/l1")
        with pytest.raises(ObjectLockedError, match=r"index/i1 is locked until .* \(compliance\)"):
            store.delete("index/i1")
    finally:
        store.close()


@pytest.mark.integration
def test_lock_store_wraps_only_s3_on_immutable_tiers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3: S3Endpoint
) -> None:
    """lock_store wraps an S3 repository of an immutable tier, nothing else."""
    path = write_estate(
        tmp_path,
        monkeypatch,
        [
            s3_repo(s3, "vault", "some-bucket"),
            fs_repo(tmp_path),
            s3_repo(s3, "plain", "plain-bucket"),
        ],
        [
            ("erp", "tier-1", "vault", True),
            ("x", "tier-1", "local", True),
            ("y", "tier-3", "plain", False),
        ],
    )
    estate = load(path)
    memory = MemoryStore()
    wrapped = lock_store(estate, "vault", memory)
    assert isinstance(wrapped, LockingStore)
    assert wrapped.policy == LockPolicy("governance", 14)
    assert lock_store(estate, "local", memory) is memory
    assert lock_store(estate, "plain", memory) is memory


# -- startup check ---------------------------------------------------------------------------


@pytest.mark.integration
def test_bucket_without_object_lock_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3: S3Endpoint, bucket: str
) -> None:
    """An immutable tier on a bucket without Object Lock fails at startup, naming both."""
    good = lock_bucket(s3)
    path = write_estate(
        tmp_path,
        monkeypatch,
        [s3_repo(s3, "vault", good, "erp"), s3_repo(s3, "weak", bucket), fs_repo(tmp_path)],
        [
            ("erp", "tier-0", "vault", True),
            ("wms", "tier-1", "weak", True),
            ("x", "tier-1", "local", False),
        ],
    )
    estate = load(path)
    with pytest.raises(ConfigError) as refused:
        require_estate_object_lock(estate)
    assert refused.value.problems == [
        f"repository weak: tier tier-1 requires immutability (governance, 14 days) but "
        f"bucket {bucket} has no Object Lock; create the bucket with Object Lock enabled "
        "(hint: aws s3api create-bucket --object-lock-enabled-for-bucket (an existing "
        "bucket: enable versioning, then put-object-lock-configuration))"
    ]
    assert refused.value.exit_code == 2

    fixed = write_estate(
        tmp_path / "fixed",
        monkeypatch,
        [s3_repo(s3, "vault", good, "erp"), fs_repo(tmp_path)],
        [("erp", "tier-0", "vault", True), ("x", "tier-1", "local", False)],
    )
    warnings = require_estate_object_lock(load(fixed))
    assert warnings == [
        "repository local: tier tier-1 asks for immutability but filesystem repositories "
        "cannot lock objects: use an S3 repository with Object Lock for immutable copies"
    ]


@pytest.mark.integration
def test_require_object_lock_refuses_default_retention_and_filesystem(
    s3: S3Endpoint, tmp_path: Path
) -> None:
    """A bucket default retention would lock locks/; a filesystem cannot lock at all."""
    policy = LockPolicy("governance", 14)
    bucket = lock_bucket(s3)
    s3.client().put_object_lock_configuration(
        Bucket=bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 7}},
        },
    )
    store = s3_store(s3, bucket)
    try:
        with pytest.raises(ConfigError, match=r"default retention \(compliance, 7 days\)"):
            require_object_lock(store, policy, "repository r: tier t")
    finally:
        store.close()
    with pytest.raises(ConfigError, match="cannot lock objects"):
        require_object_lock(FilesystemStore(tmp_path), policy, "repository r: tier t")
    status = require_object_lock(MemoryStore(), policy, "repository r: tier t")
    assert status.can_lock
    with pytest.raises(ConfigError, match="has no Object Lock"):
        require_object_lock(MemoryStore(object_lock=False), policy, "repository r: tier t")


# -- extending, locking after the fact ---------------------------------------------------


def test_extend_locks_renews_what_expires_soon() -> None:
    """Locks expiring within renew_within go to now + days; others and missing keys stay."""
    clock = Clock()
    store = MemoryStore(clock=clock)
    policy = LockPolicy("compliance", 35)  # renew_within 7 days
    store.put("soon", b"1", retain_until=T0 + timedelta(days=3), lock_mode="compliance")
    store.put("later", b"2", retain_until=T0 + timedelta(days=20), lock_mode="compliance")
    store.put("never", b"3")
    store.put("gov", b"4", retain_until=T0 + timedelta(days=1), lock_mode="governance")
    changes = extend_locks(store, ["soon", "later", "never", "gov", "gone"], policy, T0)
    until = T0 + timedelta(days=35)
    assert [(c.key, c.before, c.after, c.mode) for c in changes] == [
        ("gov", T0 + timedelta(days=1), until, "governance"),  # an active lock keeps its mode
        ("never", None, until, "compliance"),
        ("soon", T0 + timedelta(days=3), until, "compliance"),
    ]
    later = store.head("later")
    assert later is not None
    assert later.retain_until == T0 + timedelta(days=20)
    assert extend_locks(store, ["soon", "later", "never"], policy, T0) == []


@pytest.mark.integration
def test_extend_locks_and_lock_pgbackrest_on_moto(s3: S3Endpoint) -> None:
    """Real PutObjectRetention: short locks extended; pgBackRest files locked after a backup."""
    bucket = lock_bucket(s3)
    root = s3_store(s3, bucket, prefix="tenant-a")
    try:
        now = datetime.now(UTC)
        policy = LockPolicy("governance", 14)
        short = (now + timedelta(hours=5)).replace(microsecond=0)
        root.put("filestore/data/ab/p1", b"p", retain_until=short, lock_mode="governance")
        changes = extend_locks(root, ["filestore/data/ab/p1"], policy, now)
        assert [c.key for c in changes] == ["filestore/data/ab/p1"]
        info = root.head("filestore/data/ab/p1")
        assert info is not None
        assert info.retain_until == policy.retain_until(now)

        backup = "pgbackrest/backup/main/20260101-000000F"
        for key in (
            f"{backup}/backup.manifest",
            f"{backup}/pg_data/base/1/1259.zst",
            "pgbackrest/backup/main/backup.info",
            "pgbackrest/archive/main/15-1/000000010000000000000001-abc.zst",
            "pgbackrest/backup/other/backup.info",
        ):
            root.put(key, b"x")
        locked = lock_pgbackrest(root, "main", policy, now)
        assert len(locked) == 4
        for key in [c.key for c in locked]:
            info = root.head(key)
            assert info is not None
            assert (info.lock_mode, info.retain_until) == ("governance", policy.retain_until(now))
        other = root.head("pgbackrest/backup/other/backup.info")
        assert other is not None
        assert other.retain_until is None  # another stanza is not touched
        # only what changed since the last run is looked at
        future = datetime.now(UTC) + timedelta(minutes=1)
        assert lock_prefix(root, "pgbackrest/", policy, now, modified_since=future) == []
    finally:
        root.close()


# -- the plan and the audit ---------------------------------------------------------------


def test_split_locked_gives_the_plan_its_dates() -> None:
    """A plan deletes only unlocked keys and shows 'locked until DATE' for the rest."""
    clock = Clock()
    store = MemoryStore(clock=clock)
    store.put("a", b"1", retain_until=T0 + timedelta(days=2), lock_mode="compliance")
    store.put("b", b"2", retain_until=T0 - timedelta(days=1), lock_mode="compliance")
    store.put("c", b"3")
    deletable, locked = split_locked(store, ["c", "a", "b", "missing"], T0)
    assert deletable == ["b", "c", "missing"]
    assert [lock_note(info, T0) for info in locked] == [
        "locked until 2026-01-03T00:00:00Z (compliance)"
    ]
    store.delete_many(deletable)
    assert [i.key for i in store.list()] == ["a"]


def test_check_immutability_findings() -> None:
    """Missing, expired, short and weaker-mode locks are findings; locks/ is skipped."""
    clock = Clock()
    store = MemoryStore(clock=clock)
    policy = LockPolicy("compliance", 35)
    store.put("filestore/locks/l", b"")
    store.put(
        "filestore/data/ok", b"", retain_until=T0 + timedelta(days=30), lock_mode="compliance"
    )
    store.put("filestore/data/none", b"")
    store.put(
        "filestore/data/short", b"", retain_until=T0 + timedelta(hours=5), lock_mode="compliance"
    )
    store.put(
        "filestore/data/weak", b"", retain_until=T0 + timedelta(days=30), lock_mode="governance"
    )
    clock.now = T0 + timedelta(days=1)
    store.put("pgbackrest/old", b"", retain_until=T0 + timedelta(hours=1), lock_mode="compliance")
    report = check_immutability(store, policy, T0 + timedelta(days=1), exempt=REPOSITORY_EXEMPT)
    assert report.checked == 5
    assert [(f.key, f.problem) for f in report.findings] == [
        ("filestore/data/none", "missing"),
        ("filestore/data/short", "expired"),
        ("filestore/data/weak", "weak"),
        ("pgbackrest/old", "expired"),
    ]
    assert not report.ok
    assert report.as_dict()["findings"][0]["detail"] == "no Object Lock"
    short = check_immutability(store, policy, T0 + timedelta(hours=1), exempt=REPOSITORY_EXEMPT)
    assert ("filestore/data/short", "short") in [(f.key, f.problem) for f in short.findings]
    only = check_immutability(
        store, policy, T0, exempt=REPOSITORY_EXEMPT, referenced=["filestore/data/ok"]
    )
    assert only.findings == []
    assert only.tolerated == 4
    unlockable = check_immutability(MemoryStore(object_lock=False), policy, T0)
    assert unlockable.bucket_problems == [
        "bucket memory://: versioning is not enabled",
        "bucket memory://: Object Lock is not enabled",
    ]


# -- drd repo check-immutability -----------------------------------------------------------


@pytest.mark.integration
def test_check_immutability_cli(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    s3: S3Endpoint,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An unlocked object fails the check (exit 11, listed); a clean bucket passes (0)."""
    good = lock_bucket(s3)
    path = write_estate(
        tmp_path,
        monkeypatch,
        [s3_repo(s3, "vault", good, "erp"), s3_repo(s3, "weak", bucket), fs_repo(tmp_path)],
        [("erp", "tier-1", "vault", True), ("x", "tier-3", "weak", False)],
    )
    estate = load(path)
    root = open_repository_root(estate.config.repository("vault"))
    try:
        locked = LockingStore(root, LockPolicy("governance", 14))
        locked.put("filestore/data/ab/p1", b"pack")
        locked.put("filestore/locks/l1", b"lock")  # exempt
        locked.put("pgbackrest/backup/erp/backup.info", b"info")

        def drd(*args: str) -> int:
            return cli_app.main(["--config", str(path), *args])

        assert drd("repo", "check-immutability") == 0
        out = capsys.readouterr().out
        assert "repository vault: tier tier-1 (governance, 14 days)" in out
        assert "2 objects checked, 0 with a missing, short or weaker lock: ok" in out

        root.put("pgbackrest/archive/erp/15-1/0000000100000000000000A1", b"wal")
        assert drd("repo", "check-immutability", "vault") == 11
        captured = capsys.readouterr()
        assert "pgbackrest/archive/erp/15-1/0000000100000000000000A1" in captured.out
        assert "no Object Lock" in captured.out
        assert "immutability check failed for vault" in captured.err

        assert drd("--output", "json", "repo", "check-immutability") == 11
        data = json.loads(capsys.readouterr().out)
        assert data["ok"] is False
        (repo,) = data["repositories"]
        assert repo["checked"] == 3
        assert [f["key"] for f in repo["findings"]] == [
            "pgbackrest/archive/erp/15-1/0000000100000000000000A1"
        ]
        lock_prefix(root, "pgbackrest/", LockPolicy("governance", 14), datetime.now(UTC))
        assert drd("repo", "check-immutability", "vault") == 0
        capsys.readouterr()

        assert drd("repo", "check-immutability", "weak") == 0  # tier-3: nothing to check
        assert "nothing to check" in capsys.readouterr().out
    finally:
        root.close()


@pytest.mark.integration
def test_check_immutability_cli_bucket_without_lock(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    s3: S3Endpoint,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A bucket without Object Lock under an immutable tier fails as a bucket problem."""
    path = write_estate(
        tmp_path, monkeypatch, [s3_repo(s3, "weak", bucket)], [("erp", "tier-0", "weak", True)]
    )
    assert cli_app.main(["--config", str(path), "repo", "check-immutability"]) == 11
    out = capsys.readouterr().out
    assert f"bucket {bucket}: Object Lock is not enabled" in out
    assert f"bucket {bucket}: versioning is not enabled" in out
