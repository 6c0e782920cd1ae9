"""`drd catalog rebuild`: backups, snapshots and drills recreated from the repository alone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest

from drd.backup.db import backup_db
from drd.catalog import (
    BackupRecord,
    Catalog,
    DrillRecord,
    SnapshotRecord,
    open_catalog,
    open_configured,
)
from drd.catalog.rebuild import Counts, RebuildReport, rebuild_catalog
from drd.drill.service import run_drill
from drd.postgres.heartbeat import write_heartbeat
from drd.snapshot import format as fmt
from drd.snapshot.keys import PassphraseWrapper, init_repository
from drd.snapshot.service import snapshot_workload
from drd.storage.factory import open_store
from drd.testing import PgCluster, S3Endpoint
from drd.testing.estate import EstateBuilder, start_protected

pytestmark = pytest.mark.integration

Rows = tuple[list[BackupRecord], list[SnapshotRecord], list[DrillRecord]]


def rows(catalog: Catalog, *, keep_links: bool = False) -> Rows:
    """Every backup, snapshot and drill row; without row ids and run links unless asked."""

    def strip(record: Any) -> Any:
        if keep_links:
            return record
        if isinstance(record, SnapshotRecord):
            return replace(record, run_id=None)
        return replace(record, id=None, run_id=None)

    return (
        [strip(r) for r in catalog.list_backups()],
        [strip(r) for r in catalog.list_snapshots()],
        [strip(r) for r in catalog.list_drills()],
    )


def counts(report: RebuildReport) -> dict[str, dict[str, int]]:
    return {kind: asdict(getattr(report, kind)) for kind in ("backups", "snapshots", "drills")}


def added(backups: int, snapshots: int, drills: int) -> dict[str, dict[str, int]]:
    return {
        "backups": asdict(Counts(added=backups)),
        "snapshots": asdict(Counts(added=snapshots)),
        "drills": asdict(Counts(added=drills)),
    }


def unchanged(backups: int, snapshots: int, drills: int) -> dict[str, dict[str, int]]:
    return {
        "backups": asdict(Counts(unchanged=backups)),
        "snapshots": asdict(Counts(unchanged=snapshots)),
        "drills": asdict(Counts(unchanged=drills)),
    }


@pytest.mark.parametrize("repo_kind", ["filesystem", "s3"])
def test_rebuild_recreates_the_catalog_from_the_repository(
    repo_kind: str,
    estate_builder: EstateBuilder,
    make_cluster: Callable[..., PgCluster],
    s3: S3Endpoint,
    bucket: str,
    tmp_path: Path,
) -> None:
    """2 backups, 2 snapshots, 1 drill: an empty catalog gets them back field by field;
    a second rebuild changes nothing; objects gone from the repository lose their rows."""
    cluster = make_cluster("rebuild")
    filestore = estate_builder.root / "filestore" / "erp"
    filestore.mkdir(parents=True)
    (filestore / "invoice-1.pdf").write_bytes(b"%PDF-1.4 first attachment\n" * 100)
    repo = (
        estate_builder.filesystem_repo()
        if repo_kind == "filesystem"
        else estate_builder.s3_repo(s3, bucket)
    )
    # tier-1 is immutable: on S3 it needs an Object Lock bucket (test_immutability_wiring)
    tier = "tier-2" if repo_kind == "s3" else "tier-1"
    estate_builder.workload("erp", cluster, repo, tier=tier, filestore=filestore)
    estate = estate_builder.load()
    _, pgbr = start_protected(estate, "erp", cluster)
    store = open_store(estate.config.repository(repo))
    init_repository(store, PassphraseWrapper(estate_builder.passphrase, n=2**10))
    primary = estate.config.workload("erp").postgres.primary

    with open_configured(estate.config) as catalog:
        backup_db(estate, "erp", "full", catalog)
        cluster.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
        backup_db(estate, "erp", "incr", catalog)
        first = snapshot_workload(estate, "erp", catalog=catalog, tags=("nightly",))
        (filestore / "invoice-2.pdf").write_bytes(b"%PDF-1.4 second attachment\n" * 100)
        # The drill restores the database to the newest snapshot's start: a heartbeat
        # must be committed before it for the drill to measure its RPO.
        write_heartbeat(primary)
        snapshot_workload(estate, "erp", catalog=catalog)
        write_heartbeat(primary)
        cluster.switch_wal_and_wait_archived()
        drill = run_drill(estate, "erp", catalog, sandbox="local")
        assert drill.verdict == "pass", drill.reasons
        original = rows(catalog)
        original_linked = rows(catalog, keep_links=True)

    assert [len(kind) for kind in original] == [2, 2, 1]
    fresh = open_catalog(f"sqlite://{tmp_path}/fresh/catalog.sqlite3")
    with fresh:
        report = rebuild_catalog(estate, fresh, actor="tester")
        assert report.repositories == [repo]
        assert counts(report) == added(2, 2, 1)
        assert report.problems == []
        assert rows(fresh) == original  # every field but row ids and run links

        again = rebuild_catalog(estate, fresh, repository=repo, actor="tester")
        assert counts(again) == unchanged(2, 2, 1)
        assert not again.changed
        audit = [e for e in fresh.audit_entries() if e.action == "catalog.rebuild"]
        assert [(e.actor, e.subject) for e in audit] == [("tester", "*"), ("tester", repo)]
        assert audit[0].details["snapshots"]["added"] == 2
        assert fresh.verify_audit_chain() == len(fresh.audit_entries())

    # On the catalog that made the rows: nothing changes, run links included.
    with open_configured(estate.config) as catalog:
        assert counts(rebuild_catalog(estate, catalog)) == unchanged(2, 2, 1)
        assert rows(catalog, keep_links=True) == original_linked

    # The repository changes behind the catalog's back: the incr backup expired, the
    # first snapshot's manifest and the drill result deleted, junk added.
    (kept,) = [b.label for b in original[0] if b.type == "full"]
    (expired,) = [b.label for b in original[0] if b.type == "incr"]
    pgbr.run("expire", f"--set={expired}")
    store.delete(fmt.snapshot_key(first.snapshot_id))
    (drill_key,) = [i.key for i in store.list("drills/")]
    store.delete(drill_key)
    store.put("drills/erp/20990101T000000Z-junk.json", b"{not json")
    with open_configured(estate.config) as catalog:
        report = rebuild_catalog(estate, catalog)
        backups, snapshots, drills = rows(catalog)
    assert counts(report) == {
        "backups": asdict(Counts(removed=1, unchanged=1)),
        "snapshots": asdict(Counts(removed=1, unchanged=1)),
        "drills": asdict(Counts(orphaned=1)),
    }
    assert [p.split(": ")[1] for p in report.problems] == [
        "drill result drills/erp/20990101T000000Z-junk.json"
    ]
    assert [b.label for b in backups] == [kept]
    assert [s.id for s in snapshots] == [s.id for s in original[1] if s.id != first.snapshot_id]
    assert drills == original[2]  # evidence is never dropped by a rebuild
    store.close()
