"""Retention of pgBackRest backups on a real repository: plan, apply, PITR afterwards."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from drd.backup.db import backup_db
from drd.catalog import open_configured
from drd.cli.app import main
from drd.drill.agent import run_local_drill
from drd.errors import SafetyError
from drd.pgbackrest.continuity import check_continuity
from drd.pgbackrest.info import BackupSet, StanzaInfo
from drd.postgres.heartbeat import write_heartbeat
from drd.retention import service
from drd.retention.db import plan_db
from drd.testing import PgCluster
from drd.testing.estate import EstateBuilder, start_protected, stop_kept_sandbox, tiers_with

pytestmark = pytest.mark.integration

KEEP_LAST_2 = """
description: retention test tier
objectives: {rpo: 24h, rto: 72h}
postgres: {full: "0 3 * * sun", incr: "0 3 * * mon-sat"}
retention: {keep_last: 2}
drills: {cron: "0 6 1 * *", sandbox: local, max_age: 100d, timeout: 1h}
evidence: {retain: 400d}
"""


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_expire_exactly_the_plan_and_pitr_from_the_oldest_kept_backup(
    estate_builder: EstateBuilder, make_cluster: Callable[..., PgCluster], tmp_path: Path
) -> None:
    """F1+I1 go (keep_last 2 keeps I2 and D2, which need F2); WAL stays continuous and a
    restore to a time right after F2 - before every later backup - works."""
    cluster = make_cluster("ret")
    estate_builder.tiers_dir = tiers_with(tmp_path / "tiers", **{"keep-2": KEEP_LAST_2})
    estate_builder.workload("erp", cluster, estate_builder.filesystem_repo(), tier="keep-2")
    estate = estate_builder.load()
    start_protected(estate, "erp", cluster)
    primary = estate.config.workload("erp").postgres.primary
    labels: dict[str, str] = {}
    with open_configured(estate.config) as catalog:
        labels["F1"] = backup_db(estate, "erp", "full", catalog).record.label
        labels["I1"] = backup_db(estate, "erp", "incr", catalog).record.label
        labels["F2"] = backup_db(estate, "erp", "full", catalog).record.label
        cluster.execute("CREATE TABLE orders (id int)")
        cluster.execute("INSERT INTO orders VALUES (1)")
        write_heartbeat(primary)
        cluster.switch_wal_and_wait_archived()
        time.sleep(1.2)
        target = cluster.scalar("SELECT now()").astimezone(UTC)
        time.sleep(1.2)
        cluster.execute("INSERT INTO orders VALUES (2)")
        labels["D2"] = backup_db(estate, "erp", "diff", catalog).record.label
        labels["I2"] = backup_db(estate, "erp", "incr", catalog).record.label
        write_heartbeat(primary)
        cluster.switch_wal_and_wait_archived()

        shown = service.plan(estate, catalog, "erp")
        (item,) = shown.workloads
        assert item.db is not None
        assert item.disagreements == []
        assert list(item.db.expire) == [labels["F1"]]
        assert [d.label for d in item.db.expired] == [labels["F1"], labels["I1"]]
        reasons = {d.label: d.reasons for d in item.db.kept}
        assert reasons == {
            labels["F2"]: (f"needed by {labels['I2']}", f"needed by {labels['D2']}"),
            labels["D2"]: ("last 2/2", f"needed by {labels['I2']}"),
            labels["I2"]: ("newest", "last 1/2"),
        }

        report = service.apply(estate, catalog, "erp")
        remaining = [b.label for b in catalog.list_backups("erp")]
        audit = [e for e in catalog.audit_entries() if e.action == "retention.delete.backup"]

    from drd.pgbackrest.runner import Pgbackrest
    from drd.pgbackrest.stanza import write_config

    pgbr = Pgbackrest(write_config(estate, "erp"))
    assert [b.label for b in pgbr.info().backups] == [labels["F2"], labels["D2"], labels["I2"]]
    assert sorted(remaining) == sorted([labels["F2"], labels["D2"], labels["I2"]])
    assert [d["key"] for d in report["deleted"]] == [labels["F1"], labels["I1"]]
    assert [e.subject for e in audit] == [f"erp/{labels['F1']}", f"erp/{labels['I1']}"]
    continuity = check_continuity(pgbr)
    assert continuity.ok, continuity

    result = run_local_drill(estate, "erp", t0=target, keep=True)
    try:
        assert result.backup_label == labels["F2"]  # the oldest kept backup
        assert result.sandbox is not None
        with psycopg.connect(
            host=str(Path(result.sandbox) / "run"),
            port=result.sandbox_port,
            user="postgres",
            dbname="postgres",
            autocommit=True,
        ) as conn:
            rows = [r[0] for r in conn.execute("SELECT id FROM orders ORDER BY id").fetchall()]
        assert rows == [1]
    finally:
        if result.sandbox:
            stop_kept_sandbox(cluster.os_user, cluster.bin_dir, result.sandbox)


def test_apply_refuses_when_the_catalog_disagrees(
    estate_builder: EstateBuilder,
    make_cluster: Callable[..., PgCluster],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A backup the catalog does not know: plan shows it, apply exits 10 naming the fix."""
    cluster = make_cluster("retdis")
    estate_builder.tiers_dir = tiers_with(tmp_path / "tiers", **{"keep-2": KEEP_LAST_2})
    estate_builder.workload("erp", cluster, estate_builder.filesystem_repo(), tier="keep-2")
    estate = estate_builder.load()
    _, pgbr = start_protected(estate, "erp", cluster)
    pgbr.backup("full")  # behind drd's back: not in the catalog
    with (
        open_configured(estate.config) as catalog,
        pytest.raises(SafetyError, match="drd catalog rebuild"),
    ):
        service.apply(estate, catalog, "erp")
    code = main(["--config", str(estate.path), "retention", "apply", "erp"])
    assert code == SafetyError.exit_code
    assert "not in the catalog" in capsys.readouterr().err
    assert len(pgbr.info().backups) == 1  # nothing deleted
    # `drd catalog rebuild` reconciles; then retention runs.
    assert main(["--config", str(estate.path), "catalog", "rebuild"]) == 0
    assert "backups: 1 added" in capsys.readouterr().out
    assert main(["--config", str(estate.path), "retention", "apply", "erp", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "database: keep 1 backup set(s), expire 0" in out
    assert "dry run: nothing deleted" in out


def _set(label: str, kind: str, stopped: datetime, prior: str | None = None) -> BackupSet:
    return BackupSet(
        label, kind, stopped, stopped, None, None, None, None, 0, 0, 0, 0, prior, error=False
    )


def test_locked_sets_are_reported_not_expired_and_keep_their_chain() -> None:
    """A set under Object Lock is "locked until DATE"; expiring its full would take it along."""
    from drd.config.tier import Retention

    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    backups = (
        _set("F1", "full", now - timedelta(days=3)),
        _set("I1", "incr", now - timedelta(days=2), "F1"),
        _set("F2", "full", now - timedelta(days=1)),
    )
    info = StanzaInfo("erp", 0, "ok", "aes-256-cbc", backups, None, None, None, None)
    until = now + timedelta(days=5)
    plan = plan_db(
        info,
        Retention(keep_last=1),
        locked_until=lambda b: until if b.label == "I1" else None,
        now=now,
    )
    decisions = {d.label: d for d in plan.decisions}
    assert plan.expire == ()
    assert decisions["I1"].locked_until == until
    assert decisions["I1"].reasons == (f"locked until {until.isoformat()}",)
    assert decisions["F1"].keep is True
    assert decisions["F1"].reasons == ("needed by I1 (locked)",)
    unlocked = plan_db(info, Retention(keep_last=1), now=now)
    assert unlocked.expire == ("F1",)
    assert [d.label for d in unlocked.expired] == ["F1", "I1"]


def test_filestore_snapshots_forgotten_and_pruned_by_the_tier(
    estate_builder: EstateBuilder,
    make_cluster: Callable[..., PgCluster],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """keep_last 2 of 4 snapshots: 2 forgotten (their fresh packs stay for the 1 h grace
    period), verify clean, both kept snapshots restore byte-identically, catalog follows."""
    from drd.snapshot.keys import PassphraseWrapper, init_repository
    from drd.snapshot.restore import restore_snapshot
    from drd.snapshot.service import open_repo, snapshot_workload
    from drd.snapshot.verify import verify_repository
    from drd.storage.factory import open_store
    from drd.testing.filestore import make_tree

    cluster = make_cluster("retfs")
    filestore = tmp_path / "filestore"
    estate_builder.tiers_dir = tiers_with(tmp_path / "tiers", **{"keep-2": KEEP_LAST_2})
    repo_name = estate_builder.filesystem_repo()
    estate_builder.workload("erp", cluster, repo_name, tier="keep-2", filestore=filestore)
    estate = estate_builder.load()
    start_protected(estate, "erp", cluster)
    init_repository(
        open_store(estate.config.repository(repo_name)),
        PassphraseWrapper(estate_builder.passphrase, n=2**10),
    )
    trees: dict[str, dict[str, bytes]] = {}
    with open_configured(estate.config) as catalog:
        backup_db(estate, "erp", "full", catalog)
        for seed in range(4):
            make_tree(filestore, seed=seed, files=12)
            created = snapshot_workload(estate, "erp", catalog=catalog)
            trees[created.snapshot_id] = _files(filestore)
        assert main(["--config", str(estate.path), "retention", "plan", "erp"]) == 0
        out = capsys.readouterr().out
        assert "filestore: keep 2 snapshot(s), forget 2" in out
        service.apply(estate, catalog, "erp")
        in_catalog = {s.id for s in catalog.list_snapshots("erp")}
        audit = [e for e in catalog.audit_entries() if e.action == "retention.delete.snapshot"]

    repo = open_repo(estate, repo_name)
    kept = [r.id for r in repo.snapshots("erp")]
    assert kept == list(trees)[2:]  # the two newest
    assert in_catalog == set(kept)
    assert len(audit) == 2
    assert verify_repository(repo, read_data=True).ok
    for snapshot_id in kept:
        target = tmp_path / f"restored-{snapshot_id[:8]}"
        restore_snapshot(repo, snapshot_id, target)
        assert _files(target) == trees[snapshot_id]
