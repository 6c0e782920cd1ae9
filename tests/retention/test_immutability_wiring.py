"""Immutability wired into the writers: snapshots, `repo init`, pgBackRest backups and drill
evidence lock what they write on an immutable tier's S3 repository (moto behind TLS), a
bucket that cannot lock is refused before anything is written, other tiers lock nothing.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from drd.backup import db as backup_module
from drd.backup.db import LOCK_MARGIN, backup_db
from drd.catalog import open_configured
from drd.cli import repo_cmd
from drd.cli.app import main
from drd.config import Estate
from drd.drill.agent import DrillResult
from drd.drill.service import result_key, store_evidence
from drd.errors import BackupError, ConfigError, StorageError
from drd.pgbackrest.info import BackupSet, StanzaInfo
from drd.pgbackrest.runner import Pgbackrest
from drd.pgbackrest.stanza import write_config
from drd.retention import immutability
from drd.retention.immutability import forget_verified, open_repository_root
from drd.snapshot.keys import PassphraseWrapper
from drd.snapshot.service import snapshot_workload
from drd.storage.base import ObjectInfo
from drd.storage.s3 import S3Store
from drd.testing import PgCluster, S3Endpoint, Scratch
from drd.testing.estate import TIERS, EstateBuilder, start_protected
from drd.testing.filestore import make_tree

pytestmark = pytest.mark.integration

LOCKED_TIER = "tier-locked"  # tier-2 with immutability: governance, 3 days
DAYS = 3
PLAIN_TIER = "tier-2"  # no immutability
SEGMENT = re.compile(r"/[0-9A-F]{24}-[0-9a-f]{40}")


class FastWrapper(PassphraseWrapper):
    """Cheap scrypt for `repo init` (test_keys covers the production cost)."""

    def __init__(self, passphrase: str, **_: Any) -> None:
        super().__init__(passphrase, n=2**10)


@pytest.fixture(autouse=True)
def _fresh_check_cache() -> Iterator[None]:
    """Each test sees ensure_object_lock ask its bucket again."""
    forget_verified()
    yield
    forget_verified()


@pytest.fixture
def tiers(tmp_path: Path) -> Path:
    """The shipped tiers plus tier-locked: tier-2 with a governance lock of 3 days."""
    target = tmp_path / "tiers"
    shutil.copytree(TIERS, target)
    data = yaml.safe_load((TIERS / "tier-2.yaml").read_text())
    data["description"] = "tier-2 with Object Lock for tests"
    data["immutability"] = {"mode": "governance", "days": DAYS}
    (target / f"{LOCKED_TIER}.yaml").write_text(yaml.safe_dump(data))
    return target


@pytest.fixture
def lock_bucket(s3: S3Endpoint) -> str:
    """A fresh bucket created with Object Lock (moto turns versioning on with it)."""
    return s3.create_bucket(f"drd-wired-{uuid.uuid4().hex[:12]}", object_lock=True)


def build_estate(
    builder: EstateBuilder,
    tiers: Path,
    cluster: PgCluster,
    s3: S3Endpoint,
    bucket: str,
    tier: str,
    *,
    filestore: bool = True,
) -> Estate:
    builder.tiers_dir = tiers
    source = make_tree(builder.root / "filestore") if filestore else None
    builder.workload("erp", cluster, builder.s3_repo(s3, bucket), tier=tier, filestore=source)
    return builder.load()


def root_objects(estate: Estate, prefix: str = "") -> list[ObjectInfo]:
    """Every object under the repository root's ``prefix``, with its lock (HEAD each)."""
    root = open_repository_root(estate.config.repository("s3"))
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            infos = list(pool.map(root.head, [i.key for i in root.list(prefix)]))
    finally:
        root.close()
    return [i for i in infos if i is not None]


def assert_locked(infos: list[ObjectInfo], written_from: datetime) -> None:
    """Every object carries a governance lock of DAYS days from when it was written."""
    assert infos
    for info in infos:
        assert info.lock_mode == "governance", info
        assert info.retain_until is not None, info
        earliest = written_from + timedelta(days=DAYS) - timedelta(seconds=1)
        latest = datetime.now(UTC) + timedelta(days=DAYS, seconds=1)
        assert earliest <= info.retain_until <= latest, info


def repo_init(estate_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(repo_cmd, "PassphraseWrapper", FastWrapper)
    return main(["--config", str(estate_path), "repo", "init", "s3"])


@pytest.fixture
def idle_cluster(scratch: Scratch) -> PgCluster:
    """A cluster that is never started: snapshots record the primary as unreachable."""
    return PgCluster.allocate(scratch, f"idle-{uuid.uuid4().hex[:8]}")


@dataclass
class FakePgbackrest:
    """Stands in for pgBackRest: each backup writes a file under the stanza's backup/ and
    one WAL segment under archive/ (when given an estate), and appears in ``info``."""

    root: Estate | None = None
    stanza: str = "erp"
    calls: list[str] = field(default_factory=list)
    backups: list[BackupSet] = field(default_factory=list)

    def info(self) -> StanzaInfo:
        self.calls.append("info")
        return StanzaInfo(self.stanza, 0, "ok", "none", tuple(self.backups), None, None, None, 1)

    def backup(self, backup_type: str) -> None:
        self.calls.append(f"backup {backup_type}")
        now = datetime.now(UTC).replace(microsecond=0)
        label = now.strftime("%Y%m%d-%H%M%SF") + f"-{len(self.backups)}"
        if self.root is not None:
            root = open_repository_root(self.root.config.repository("s3"))
            try:
                root.put(f"pgbackrest/backup/{self.stanza}/{label}/backup.manifest", b"m")
                root.put(f"pgbackrest/archive/{self.stanza}/15-1/{label}-wal", b"w")
            finally:
                root.close()
        self.backups.append(
            BackupSet(label, backup_type, now, now, None, None, None, None, 1, 1, 1, 1, None, False)
        )


def fake(pgbr: FakePgbackrest) -> Pgbackrest:
    return cast(Pgbackrest, pgbr)


def drill_result() -> DrillResult:
    now = datetime.now(UTC)
    return DrillResult(
        drill_id=uuid.uuid4().hex[:8], workload="erp", tier="t", t0=now, started_at=now
    )


# -- snapshots and repo init ----------------------------------------------------------------


def test_snapshot_on_immutable_tier_locks_everything_but_locks(
    estate_builder: EstateBuilder,
    tiers: Path,
    idle_cluster: PgCluster,
    s3: S3Endpoint,
    lock_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """repo init + a snapshot: config, keys, packs, indexes, manifests locked; locks/ not."""
    estate = build_estate(estate_builder, tiers, idle_cluster, s3, lock_bucket, LOCKED_TIER)
    started = datetime.now(UTC)
    assert repo_init(estate_builder.write(), monkeypatch) == 0
    result = snapshot_workload(estate, "erp")
    objects = root_objects(estate, "filestore/")
    kinds = {i.key.split("/")[1] for i in objects}
    assert {"config", "keys", "data", "index", "snapshots"} <= kinds
    assert_locked(objects, started)
    assert f"filestore/snapshots/{result.snapshot_id}" in {i.key for i in objects}
    assert "locks" not in kinds  # released: deletable, so never locked


def test_repository_check_costs_one_bucket_call_per_process(
    estate_builder: EstateBuilder,
    tiers: Path,
    idle_cluster: PgCluster,
    s3: S3Endpoint,
    lock_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """init and two snapshots ask the bucket for its lock status once."""
    estate = build_estate(estate_builder, tiers, idle_cluster, s3, lock_bucket, LOCKED_TIER)
    calls: list[str] = []
    real = S3Store.bucket_lock_status

    def counted(self: S3Store) -> Any:
        calls.append(self.bucket)
        return real(self)

    monkeypatch.setattr(S3Store, "bucket_lock_status", counted)
    assert repo_init(estate_builder.write(), monkeypatch) == 0
    snapshot_workload(estate, "erp")
    snapshot_workload(estate, "erp")
    assert calls == [lock_bucket]


def test_immutable_tier_on_plain_bucket_is_refused_before_writing(
    estate_builder: EstateBuilder,
    tiers: Path,
    idle_cluster: PgCluster,
    s3: S3Endpoint,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No Object Lock: repo init exits 2, snapshot and backup raise ConfigError; nothing written."""
    estate = build_estate(estate_builder, tiers, idle_cluster, s3, bucket, LOCKED_TIER)
    expected = f"repository s3: tier {LOCKED_TIER} requires immutability (governance, {DAYS} days)"
    assert repo_init(estate_builder.write(), monkeypatch) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert f"bucket {bucket} has no Object Lock" in err

    with pytest.raises(ConfigError) as refused:
        snapshot_workload(estate, "erp")
    assert expected in str(refused.value)
    assert f"bucket {bucket}" in str(refused.value)

    pgbr = FakePgbackrest()
    with open_configured(estate.config) as catalog:
        with pytest.raises(ConfigError) as refused:
            backup_db(estate, "erp", "full", catalog, pgbackrest=fake(pgbr))
        assert catalog.list_runs("erp") == []
    assert expected in str(refused.value)
    assert f"bucket {bucket}" in str(refused.value)
    assert pgbr.calls == []
    assert s3.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_plain_tier_writes_no_locks(
    estate_builder: EstateBuilder,
    tiers: Path,
    idle_cluster: PgCluster,
    s3: S3Endpoint,
    lock_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tier without immutability, even on a lock bucket: snapshot, backup, evidence unlocked."""
    estate = build_estate(estate_builder, tiers, idle_cluster, s3, lock_bucket, PLAIN_TIER)
    assert repo_init(estate_builder.write(), monkeypatch) == 0
    snapshot_workload(estate, "erp")
    pgbr = FakePgbackrest(root=estate)
    with open_configured(estate.config) as catalog:
        outcome = backup_db(estate, "erp", "full", catalog, pgbackrest=fake(pgbr))
        run = catalog.get_run(outcome.run_id)
    assert run is not None
    assert "locked_objects" not in run.details
    store_evidence(estate, drill_result())
    objects = root_objects(estate)
    assert {i.key.split("/")[0] for i in objects} == {"filestore", "pgbackrest"}
    assert any(i.key.startswith("filestore/drills/") for i in objects)
    assert [i for i in objects if i.retain_until or i.lock_mode] == []


# -- pgBackRest ----------------------------------------------------------------------------


def test_backup_db_locks_the_backup_and_archived_wal(
    estate_builder: EstateBuilder,
    tiers: Path,
    make_cluster: Callable[..., PgCluster],
    s3: S3Endpoint,
    lock_bucket: str,
) -> None:
    """Real pgBackRest: after each backup its files, backup.info and the WAL are locked."""
    cluster = make_cluster("lockbk")
    estate = build_estate(
        estate_builder, tiers, cluster, s3, lock_bucket, LOCKED_TIER, filestore=False
    )
    started = datetime.now(UTC)
    cfg, _ = start_protected(estate, "erp", cluster)
    cluster.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
    with open_configured(estate.config) as catalog:
        full = backup_db(estate, "erp", "full", catalog)
        first = catalog.get_run(full.run_id)
        cluster.execute("INSERT INTO t SELECT g FROM generate_series(1, 1000) g")
        incr = backup_db(estate, "erp", "incr", catalog)
        second = catalog.get_run(incr.run_id)
    assert first is not None
    assert second is not None
    assert (first.status, second.status) == ("succeeded", "succeeded")
    backup_files = root_objects(estate, f"pgbackrest/backup/{cfg.stanza}/")
    wal = root_objects(estate, f"pgbackrest/archive/{cfg.stanza}/")
    keys = {i.key for i in backup_files}
    for label in (full.record.label, incr.record.label):
        assert f"pgbackrest/backup/{cfg.stanza}/{label}/backup.manifest" in keys
    assert f"pgbackrest/backup/{cfg.stanza}/backup.info" in keys
    assert f"pgbackrest/archive/{cfg.stanza}/archive.info" in {i.key for i in wal}
    assert any(SEGMENT.search(i.key) for i in wal)  # archived WAL segments
    assert_locked(backup_files + wal, started)
    # The first run swept the stanza, the second locked what was new; each object's
    # current version was locked by one of them.
    assert first.details["locked_objects"] > 0
    assert second.details["locked_objects"] > 0
    total = first.details["locked_objects"] + second.details["locked_objects"]
    assert total >= len(backup_files + wal)


def test_lock_window_starts_at_the_previous_locked_backup(
    estate_builder: EstateBuilder,
    tiers: Path,
    idle_cluster: PgCluster,
    s3: S3Endpoint,
    lock_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """None on the first run; then the previous locked backup's start minus the margin."""
    estate = build_estate(
        estate_builder, tiers, idle_cluster, s3, lock_bucket, LOCKED_TIER, filestore=False
    )
    windows: list[datetime | None] = []
    real = immutability.lock_pgbackrest

    def recorded(*args: Any, modified_since: datetime | None = None, **kw: Any) -> Any:
        windows.append(modified_since)
        return real(*args, modified_since=modified_since, **kw)

    monkeypatch.setattr(backup_module, "lock_pgbackrest", recorded)
    pgbr = FakePgbackrest(root=estate)
    with open_configured(estate.config) as catalog:
        first = backup_db(estate, "erp", "full", catalog, pgbackrest=fake(pgbr))
        second = backup_db(estate, "erp", "incr", catalog, pgbackrest=fake(pgbr))
        runs = [catalog.get_run(o.run_id) for o in (first, second)]
    assert windows == [None, first.record.started_at - LOCK_MARGIN]
    assert [r.details["locked_objects"] for r in runs if r is not None] == [2, 2]
    assert_locked(root_objects(estate, "pgbackrest/"), first.record.started_at)


def test_failed_locking_fails_the_run_but_keeps_the_backup(
    estate_builder: EstateBuilder,
    tiers: Path,
    idle_cluster: PgCluster,
    s3: S3Endpoint,
    lock_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lock failure: BackupError naming backup and repository, backup still in the catalog,
    run failed; the next backup looks again from before the unlocked one."""
    estate = build_estate(
        estate_builder, tiers, idle_cluster, s3, lock_bucket, LOCKED_TIER, filestore=False
    )
    real = immutability.lock_pgbackrest
    windows: list[datetime | None] = []

    def refused(*_: Any, modified_since: datetime | None = None, **__: Any) -> Any:
        windows.append(modified_since)
        raise StorageError("s3://bucket/pgbackrest/x: put retention: AccessDenied")

    pgbr = FakePgbackrest(root=estate)
    with open_configured(estate.config) as catalog:
        first = backup_db(estate, "erp", "full", catalog, pgbackrest=fake(pgbr))
        monkeypatch.setattr(backup_module, "lock_pgbackrest", refused)
        with pytest.raises(BackupError) as failed:
            backup_db(estate, "erp", "incr", catalog, pgbackrest=fake(pgbr))
        label = pgbr.backups[-1].label
        message = str(failed.value)
        assert f"backup {label} of erp is in repository s3" in message
        assert "NOT immutable" in message
        assert "AccessDenied" in message
        assert "drd repo check-immutability s3" in message
        assert label in {b.label for b in catalog.list_backups("erp")}
        (run, _) = catalog.list_runs("erp", kind="backup")
        assert run.status == "failed"
        assert run.details["label"] == label
        assert "locked_objects" not in run.details

        def spy(*args: Any, modified_since: datetime | None = None, **kw: Any) -> Any:
            windows.append(modified_since)
            return real(*args, modified_since=modified_since, **kw)

        monkeypatch.setattr(backup_module, "lock_pgbackrest", spy)
        backup_db(estate, "erp", "incr", catalog, pgbackrest=fake(pgbr))
    # Both later runs look from the first (locked) backup: the unlocked one is covered.
    assert windows == [first.record.started_at - LOCK_MARGIN] * 2
    assert_locked(root_objects(estate, "pgbackrest/"), first.record.started_at)


# -- drill evidence ------------------------------------------------------------------------


def test_drill_evidence_is_locked(
    estate_builder: EstateBuilder,
    tiers: Path,
    idle_cluster: PgCluster,
    s3: S3Endpoint,
    lock_bucket: str,
) -> None:
    """The drill result object carries the tier's lock."""
    estate = build_estate(
        estate_builder, tiers, idle_cluster, s3, lock_bucket, LOCKED_TIER, filestore=False
    )
    started = datetime.now(UTC)
    result = drill_result()
    key = store_evidence(estate, result)
    assert key == result_key(result)
    (info,) = root_objects(estate, "filestore/drills/")
    assert info.key == f"filestore/{key}"
    assert_locked([info], started)


def test_drill_evidence_on_plain_bucket_names_the_problem(
    estate_builder: EstateBuilder,
    tiers: Path,
    idle_cluster: PgCluster,
    s3: S3Endpoint,
    bucket: str,
) -> None:
    """An immutable tier without Object Lock: a ConfigError (run_drill records it as a reason)."""
    estate = build_estate(
        estate_builder, tiers, idle_cluster, s3, bucket, LOCKED_TIER, filestore=False
    )
    with pytest.raises(ConfigError, match=f"bucket {bucket} has no Object Lock"):
        store_evidence(estate, drill_result())
    assert s3.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_estate_check_fills_the_per_process_cache(
    estate_builder: EstateBuilder,
    tiers: Path,
    idle_cluster: PgCluster,
    s3: S3Endpoint,
    lock_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After require_estate_object_lock (daemon start) writers do not ask the bucket again."""
    estate = build_estate(
        estate_builder, tiers, idle_cluster, s3, lock_bucket, LOCKED_TIER, filestore=False
    )
    assert immutability.require_estate_object_lock(estate) == []

    def no_call(self: S3Store) -> Any:
        raise AssertionError("bucket asked again")

    monkeypatch.setattr(S3Store, "bucket_lock_status", no_call)
    assert immutability.ensure_object_lock(estate, "s3") == []
    write_config(estate, "erp")  # unaffected
