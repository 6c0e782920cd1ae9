"""The catalog on both backends: migrations, runs, backups, snapshots, drills, incidents."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from pydantic import SecretStr

from drd.catalog import (
    LATEST_VERSION,
    BackupRecord,
    Catalog,
    DrillRecord,
    IncidentRecord,
    SnapshotRecord,
    open_catalog,
)
from drd.catalog.migrations import MIGRATIONS
from drd.errors import CatalogError
from drd.redact import MASK, register_secret
from drd.testing import free_port

if TYPE_CHECKING:
    from conftest import Target

T0 = datetime(2024, 5, 1, 3, 0, 0, 123456, tzinfo=UTC)


def _backup(label: str, stopped: datetime, **kw: object) -> BackupRecord:
    fields: dict[str, object] = {
        "workload": "erp",
        "stanza": "erp",
        "repository": "main",
        "label": label,
        "type": "full",
        "started_at": stopped - timedelta(minutes=10),
        "stopped_at": stopped,
    }
    fields.update(kw)
    return BackupRecord(**fields)  # type: ignore[arg-type]


# -- migrations ---------------------------------------------------------------------------


def test_migrations_are_ordered_and_cover_both_dialects() -> None:
    """Migration versions run 1..N without gaps; dialect-specific ones name both dialects."""
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert MIGRATIONS[-1].version == LATEST_VERSION
    for migration in MIGRATIONS:
        if migration.per_dialect:
            assert set(migration.per_dialect) == {"sqlite", "postgresql"}


def test_open_applies_all_migrations(catalog: Catalog, target: Target) -> None:
    """Opening a new catalog applies every migration once and records it."""
    assert catalog.schema_version() == LATEST_VERSION
    assert catalog.backend == target.backend
    rows = target.raw("SELECT version, description FROM schema_migrations ORDER BY version")
    assert [(v, d) for v, d in rows] == [(m.version, m.description) for m in MIGRATIONS]


def test_reopen_is_idempotent(catalog: Catalog, target: Target) -> None:
    """Reopening an up-to-date catalog changes nothing in schema_migrations."""
    before = target.raw("SELECT version, applied_at FROM schema_migrations ORDER BY version")
    catalog.close()
    for _ in range(2):
        with open_catalog(target.url) as again:
            assert again.schema_version() == LATEST_VERSION
    after = target.raw("SELECT version, applied_at FROM schema_migrations ORDER BY version")
    assert after == before


def test_concurrent_first_open_migrates_once(target: Target) -> None:
    """Several catalogs opening a new location at once apply each migration exactly once."""
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            barrier.wait(timeout=10)
            with open_catalog(target.url) as opened:
                opened.ping()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    versions = target.raw("SELECT version FROM schema_migrations ORDER BY version")
    assert [v for (v,) in versions] == [m.version for m in MIGRATIONS]


def test_newer_schema_is_refused(catalog: Catalog, target: Target) -> None:
    """A catalog migrated by a newer drd is refused with CatalogError, not downgraded."""
    catalog.close()
    target.raw(
        "INSERT INTO schema_migrations (version, description, applied_at) "
        "VALUES (?, 'from the future', CURRENT_TIMESTAMP)",
        (LATEST_VERSION + 7,),
    )
    with pytest.raises(CatalogError, match=f"schema version {LATEST_VERSION + 7}, newer"):
        open_catalog(target.url)
    assert target.raw("SELECT MAX(version) FROM schema_migrations") == [(LATEST_VERSION + 7,)]


# -- runs ------------------------------------------------------------------------------------


def test_run_lifecycle(catalog: Catalog) -> None:
    """A run starts running, finishes with merged details, and reads back in UTC."""
    run_id = catalog.start_run("backup", "erp", {"type": "full"})
    run = catalog.get_run(run_id)
    assert run is not None
    assert (run.status, run.finished_at, run.details) == ("running", None, {"type": "full"})
    assert run.started_at.tzinfo is UTC
    done = catalog.finish_run(run_id, "failed", error="boom", details={"exit": 3})
    assert done.status == "failed"
    assert done.error == "boom"
    assert done.details == {"type": "full", "exit": 3}
    assert done.finished_at is not None
    assert done.finished_at >= done.started_at
    assert catalog.get_run(run_id) == done
    assert catalog.get_run(run_id + 1000) is None


def test_finish_run_is_idempotent_but_final(catalog: Catalog) -> None:
    """Finishing twice with the same status is a no-op; another status or id is refused."""
    run_id = catalog.start_run("drill", "erp")
    first = catalog.finish_run(run_id, "succeeded")
    assert catalog.finish_run(run_id, "succeeded") == first
    with pytest.raises(CatalogError, match="already finished as succeeded"):
        catalog.finish_run(run_id, "failed")
    with pytest.raises(CatalogError, match="run 999999 is not in catalog"):
        catalog.finish_run(999999, "failed")


def test_list_runs_filters_newest_first(catalog: Catalog) -> None:
    """list_runs filters by workload, kind and status and returns newest first."""
    ids = [
        catalog.start_run("backup", "erp"),
        catalog.start_run("snapshot", "erp"),
        catalog.start_run("backup", "crm"),
        catalog.start_run("retention", None),
    ]
    catalog.finish_run(ids[0], "succeeded")
    assert [r.id for r in catalog.list_runs()] == ids[::-1]
    assert [r.id for r in catalog.list_runs(workload="erp")] == [ids[1], ids[0]]
    assert [r.id for r in catalog.list_runs(kind="backup")] == [ids[2], ids[0]]
    assert [r.id for r in catalog.list_runs(status="running", limit=2)] == [ids[3], ids[2]]


# -- backups ---------------------------------------------------------------------------------


def test_backup_upsert_is_idempotent(catalog: Catalog) -> None:
    """Recording the same (repository, stanza, label) again updates the one row."""
    first = catalog.record_backup(_backup("20240501-030000F", T0, size=100))
    again = catalog.record_backup(_backup("20240501-030000F", T0, size=100))
    assert again == first
    assert first.id is not None
    grown = catalog.record_backup(_backup("20240501-030000F", T0, size=150, repo_size=40))
    assert (grown.id, grown.size, grown.repo_size) == (first.id, 150, 40)
    assert catalog.list_backups("erp") == [grown]
    other_repo = catalog.record_backup(_backup("20240501-030000F", T0, repository="dr"))
    assert other_repo.id != first.id
    assert len(catalog.list_backups()) == 2


def test_backup_upsert_keeps_linked_run(catalog: Catalog) -> None:
    """A re-record without run_id (a rebuild) keeps the run the backup was linked to."""
    run_id = catalog.start_run("backup", "erp")
    linked = catalog.record_backup(_backup("L1", T0, run_id=run_id))
    rebuilt = catalog.record_backup(_backup("L1", T0))
    assert rebuilt.run_id == linked.run_id == run_id


def test_latest_backup_orders_by_stop_time(catalog: Catalog) -> None:
    """latest_backup is the newest stop time (optionally of one type), whatever the order."""
    catalog.record_backup(_backup("B2", T0 + timedelta(hours=2), type="diff"))
    catalog.record_backup(_backup("B3", T0 + timedelta(hours=3), type="incr"))
    catalog.record_backup(_backup("B1", T0 + timedelta(hours=1)))
    catalog.record_backup(_backup("X9", T0 + timedelta(hours=9), workload="crm"))
    latest = catalog.latest_backup("erp")
    assert latest is not None
    assert latest.label == "B3"
    full = catalog.latest_backup("erp", type="full")
    assert full is not None
    assert full.label == "B1"
    assert catalog.latest_backup("nobody") is None
    assert [b.label for b in catalog.list_backups("erp")] == ["B3", "B2", "B1"]
    assert [b.label for b in catalog.list_backups(limit=1)] == ["X9"]


def test_forget_backup(catalog: Catalog) -> None:
    """forget_backup removes one backup and is idempotent."""
    catalog.record_backup(_backup("B1", T0))
    assert catalog.forget_backup("main", "erp", "B1") is True
    assert catalog.forget_backup("main", "erp", "B1") is False
    assert catalog.list_backups() == []


# -- snapshots, drills, incidents ---------------------------------------------------------------


def test_snapshot_round_trip(catalog: Catalog) -> None:
    """Snapshots keep JSON restore point, tags and UTC times; re-recording is idempotent."""
    run_id = catalog.start_run("snapshot", "erp")
    older = SnapshotRecord(
        id="a" * 64,
        workload="erp",
        repository="main",
        created_at=T0,
        files=10,
        bytes=2048,
        added_bytes=2048,
    )
    newer = SnapshotRecord(
        id="b" * 64,
        workload="erp",
        repository="main",
        created_at=T0 + timedelta(hours=1),
        files=12,
        bytes=4096,
        added_bytes=100,
        parent="a" * 64,
        db_restore_point={"lsn": "0/3000060", "time": "2024-05-01T03:59:00+00:00", "n": [1, 2]},
        tags=("daily", "tier-0"),
        run_id=run_id,
    )
    assert catalog.record_snapshot(older) == older
    assert catalog.record_snapshot(newer) == newer
    assert catalog.record_snapshot(newer) == newer
    assert catalog.list_snapshots("erp") == [newer, older]
    assert catalog.latest_snapshot("erp") == newer
    assert catalog.latest_snapshot("crm") is None
    assert catalog.forget_snapshot("main", "a" * 64) is True
    assert catalog.forget_snapshot("main", "a" * 64) is False
    assert catalog.list_snapshots() == [newer]


def test_drill_round_trip_and_upsert(catalog: Catalog) -> None:
    """A drill recorded when it starts and again when it ends is one row with measurements."""
    started = catalog.record_drill(
        DrillRecord(workload="erp", t0=T0, started_at=T0, status="running")
    )
    assert started.id is not None
    finished = DrillRecord(
        workload="erp",
        t0=T0,
        started_at=T0,
        status="succeeded",
        finished_at=T0 + timedelta(minutes=12),
        measured_rpo_seconds=4.25,
        measured_rto_seconds=713.5,
        phases={"provision": 20.0, "db_restore": 400.5, "verify": {"odoo": True}},
        verdict="pass",
        details={"restore_point": {"lsn": "0/5000000"}},
    )
    stored = catalog.record_drill(finished)
    assert stored.id == started.id
    assert stored == DrillRecord(**{**finished.__dict__, "id": started.id})
    failed = catalog.record_drill(
        DrillRecord(workload="erp", t0=T0, started_at=T0 + timedelta(days=1), status="failed")
    )
    assert [d.id for d in catalog.list_drills("erp")] == [failed.id, stored.id]
    assert catalog.latest_drill("erp") == failed
    assert catalog.latest_drill("erp", status="succeeded") == stored
    assert catalog.latest_drill("crm") is None


def test_incident_round_trip_and_update(catalog: Catalog) -> None:
    """Incidents are inserted with an id, then updated field by field."""
    plan = {"steps": ["fence", "promote", "repoint"], "target": "standby-1"}
    incident = catalog.record_incident(
        IncidentRecord(
            workload="erp",
            kind="failover",
            status="running",
            started_at=T0,
            operator="alice",
            reason="primary lost",
            plan=plan,
        )
    )
    assert incident.id is not None
    assert incident.plan == plan
    assert catalog.get_incident(incident.id) == incident
    done = catalog.update_incident(
        incident.id,
        status="succeeded",
        finished_at=T0 + timedelta(minutes=3),
        outcome="standby-1 promoted",
    )
    assert (done.status, done.outcome, done.plan) == ("succeeded", "standby-1 promoted", plan)
    assert done.finished_at == T0 + timedelta(minutes=3)
    assert catalog.list_incidents("erp") == [done]
    assert catalog.list_incidents("crm") == []
    with pytest.raises(CatalogError, match="incident 424242 is not in catalog"):
        catalog.update_incident(424242, status="failed")
    with pytest.raises(ValueError, match="id must be None"):
        catalog.record_incident(done)


def test_datetimes_come_back_as_utc(catalog: Catalog) -> None:
    """A datetime given in another zone is stored as the same instant and returned in UTC."""
    cest = timezone(timedelta(hours=2))
    local = datetime(2024, 5, 1, 5, 0, 0, 1, tzinfo=cest)
    stored = catalog.record_backup(_backup("TZ", local))
    assert stored.stopped_at == local
    assert stored.stopped_at.tzinfo is UTC
    assert stored.stopped_at.hour == 3
    listed = catalog.list_backups()[0]
    assert listed.stopped_at.tzinfo is UTC
    assert listed.started_at.tzinfo is UTC


def test_naive_datetimes_are_refused() -> None:
    """Records refuse naive datetimes: the catalog never guesses a time zone."""
    with pytest.raises(ValueError, match="started_at must be timezone-aware"):
        _backup("N", datetime(2024, 5, 1, 3, 0))


def test_secrets_never_stored_in_json_or_errors(catalog: Catalog) -> None:
    """Secret-looking keys and registered secret values are masked in details and errors."""
    register_secret("s3cr3t-value")
    run_id = catalog.start_run("backup", "erp", {"cipher_pass": "abc", "note": "s3cr3t-value"})
    run = catalog.finish_run(run_id, "failed", error="login failed with s3cr3t-value")
    assert run.details == {"cipher_pass": MASK, "note": MASK}
    assert run.error == f"login failed with {MASK}"


def test_driver_errors_become_catalog_errors(catalog: Catalog) -> None:
    """A constraint violation is reported as CatalogError naming the operation."""
    with pytest.raises(CatalogError, match="record_backup failed on") as info:
        catalog.record_backup(_backup("FK", T0, run_id=987654))
    assert "\n" not in str(info.value)


def test_closed_catalog_refuses_calls(catalog: Catalog) -> None:
    """After close, calls raise CatalogError; close is idempotent."""
    catalog.ping()
    catalog.close()
    catalog.close()
    with pytest.raises(CatalogError, match="is closed"):
        catalog.ping()


def test_concurrent_writers_from_threads(catalog: Catalog) -> None:
    """Runs started from several threads on one catalog object all get distinct ids."""
    ids: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            run_id = catalog.start_run("backup", "erp")
            catalog.finish_run(run_id, "succeeded")
            with lock:
                ids.append(run_id)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(set(ids)) == 40
    assert {r.status for r in catalog.list_runs(limit=100)} == {"succeeded"}


# -- backend specifics ---------------------------------------------------------------------------


def test_sqlite_file_is_wal_and_parent_created(tmp_path: Path) -> None:
    """SQLite creates the missing parent directory, a private file, and uses WAL mode."""
    path = tmp_path / "deep" / "state" / "catalog.sqlite3"
    with open_catalog(f"sqlite://{path}") as opened:
        assert opened.backend == "sqlite"
        with closing(sqlite3.connect(path)) as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert path.stat().st_mode & 0o077 == 0


def test_sqlite_memory_catalog_is_a_working_fake() -> None:
    """sqlite:///:memory: is a complete catalog for unit tests."""
    with open_catalog("sqlite:///:memory:") as fake:
        assert fake.schema_version() == LATEST_VERSION
        fake.append_audit("test", "noop", "nothing")
        assert fake.verify_audit_chain() == 1


def test_sqlite_four_slashes_mean_the_same_file(tmp_path: Path) -> None:
    """sqlite:///abs and sqlite:////abs (what state_dir formatting yields) are one file."""
    with open_catalog(f"sqlite://{tmp_path}/c.db") as one:
        one.start_run("backup", "erp")
    with open_catalog(f"sqlite:///{tmp_path}/c.db") as two:
        assert len(two.list_runs()) == 1


def test_sqlite_unusable_path_is_a_catalog_error(tmp_path: Path) -> None:
    """A path whose parent is a file cannot hold a catalog: CatalogError naming the path."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(CatalogError, match=r"cannot open SQLite catalog .*/file/catalog\.db"):
        open_catalog(f"sqlite://{tmp_path}/file/catalog.db")


@pytest.mark.parametrize("url", ["mysql://db/x", "catalog.sqlite3", "sqlite://", "sqlite:///"])
def test_unsupported_urls_are_refused(url: str) -> None:
    """URLs other than sqlite:///path and postgresql:// are refused with CatalogError."""
    with pytest.raises(CatalogError, match="catalog URL"):
        open_catalog(url)


def test_sqlite_refuses_a_password(tmp_path: Path) -> None:
    """A password given for a SQLite catalog is a configuration mistake, reported as such."""
    with pytest.raises(CatalogError, match="password was given for the SQLite catalog"):
        open_catalog(f"sqlite://{tmp_path}/c.db", password=SecretStr("hunter2-secret"))


def test_postgres_unreachable_is_a_clean_error() -> None:
    """A closed port gives a one-line CatalogError with no password text at all."""
    url = f"postgresql://drd:inline-pw-42@127.0.0.1:{free_port()}/catalog"
    with pytest.raises(CatalogError) as info:
        open_catalog(url, password=SecretStr("given-pw-43"))
    message = str(info.value)
    assert message.startswith("cannot connect to catalog postgresql://drd:***@127.0.0.1:")
    assert "inline-pw-42" not in message
    assert "given-pw-43" not in message
    assert "\n" not in message
    assert "Traceback" not in message
    assert info.value.hint


def test_postgres_invalid_url_is_a_clean_error() -> None:
    """A malformed PostgreSQL URL is a CatalogError, with the URL's password masked."""
    with pytest.raises(CatalogError, match="invalid PostgreSQL catalog URL") as info:
        open_catalog("postgresql://drd:pw-in-url-77@127.0.0.1:5432/db?nonsense_option=1")
    assert "pw-in-url-77" not in str(info.value)


@pytest.mark.integration
def test_postgres_replaces_a_lost_connection(pg_database: str) -> None:
    """A connection killed by the server fails one call cleanly; the next call reconnects."""
    dbname = pg_database.rsplit("/", 1)[1]
    with open_catalog(pg_database) as opened:
        run_id = opened.start_run("backup", "erp")
        with psycopg.connect(pg_database, autocommit=True) as raw:
            raw.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND application_name = 'drd-catalog'",
                (dbname,),
            )
        with pytest.raises(CatalogError, match="catalog ping failed on postgresql://"):
            opened.ping()
        opened.ping()
        assert opened.finish_run(run_id, "succeeded").status == "succeeded"
