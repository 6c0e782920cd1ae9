"""A drill of an Odoo-like workload: neutralized, attachments verified against the snapshot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from drd.drill.agent import run_local_drill
from drd.postgres.heartbeat import write_heartbeat
from drd.snapshot.keys import PassphraseWrapper, init_repository
from drd.snapshot.service import snapshot_workload
from drd.storage.factory import open_store
from drd.testing import PgCluster
from drd.testing.estate import EstateBuilder, start_protected
from drd.testing.odoo import create_odoo_schema, populate

pytestmark = pytest.mark.integration


def _odoo_estate(
    estate_builder: EstateBuilder, make_cluster: Callable[..., PgCluster]
) -> tuple[EstateBuilder, PgCluster, Path, list[tuple[int, str | None, str | None]]]:
    cluster = make_cluster("odoo")
    filestore = estate_builder.root / "filestore" / "acme"
    filestore.mkdir(parents=True)
    repo = estate_builder.filesystem_repo()
    estate_builder.workload("acme", cluster, repo, dbname="acme", filestore=filestore)
    estate_builder.workloads[-1]["odoo"] = {"database": "acme"}
    estate = estate_builder.load()
    _, pgbr = start_protected(estate, "acme", cluster)
    cluster.execute("CREATE DATABASE acme")
    create_odoo_schema(cluster, "acme")
    rows = populate(cluster, "acme", filestore, attachments=24)
    init_repository(
        open_store(estate.config.repository(repo)),
        PassphraseWrapper(estate_builder.passphrase, n=2**10),
    )
    write_heartbeat(estate.config.workload("acme").postgres.primary)
    pgbr.backup("full")
    return estate_builder, cluster, filestore, [tuple(r) for r in rows]


def test_odoo_drill_neutralizes_and_verifies(
    estate_builder: EstateBuilder, make_cluster: Callable[..., PgCluster]
) -> None:
    """The restored copy is neutralized and every attachment checks out: the drill passes."""
    builder, cluster, _, _ = _odoo_estate(estate_builder, make_cluster)
    estate = builder.load()
    snapshot_workload(estate, "acme")
    write_heartbeat(estate.config.workload("acme").postgres.primary)
    cluster.switch_wal_and_wait_archived()
    result = run_local_drill(estate, "acme")
    assert result.verdict == "pass", result.reasons
    names = {c["name"]: c for c in result.checks}
    assert names["neutralized"]["ok"] is True
    assert names["attachments"]["ok"] is True
    assert result.snapshot_id is not None
    assert "filestore_restore" in result.phases
    # The production database itself is untouched.
    assert cluster.scalar("SELECT count(*) FROM ir_cron WHERE active", dbname="acme") == 3


@pytest.mark.parametrize("damage", ["missing", "altered"])
def test_odoo_drill_fails_naming_the_attachment(
    damage: str, estate_builder: EstateBuilder, make_cluster: Callable[..., PgCluster]
) -> None:
    """A file missing from, or altered in, the snapshot fails the drill naming the attachment."""
    builder, cluster, filestore, rows = _odoo_estate(estate_builder, make_cluster)
    victim_id, _, victim_fname = next(r for r in rows if r[2])
    assert victim_fname is not None
    path = filestore / victim_fname
    if damage == "missing":
        path.unlink()
    else:
        data = bytearray(path.read_bytes())
        data[0] ^= 0xFF
        path.write_bytes(bytes(data))
    estate = builder.load()
    snapshot_workload(estate, "acme")
    cluster.switch_wal_and_wait_archived()
    result = run_local_drill(estate, "acme")
    assert result.verdict == "fail"
    failure = next(r for r in result.reasons if r.startswith("check attachments failed"))
    assert victim_fname in failure
    assert str(victim_id) in failure


def test_a_drill_waits_for_a_prune_holding_the_repository(
    estate_builder: EstateBuilder, make_cluster: Callable[..., PgCluster]
) -> None:
    """An exclusive (prune) lock on the snapshot repository delays the filestore restore;
    the drill waits and passes, the wait counted in its RTO."""
    import threading

    from drd.snapshot.lock import RepositoryLock
    from drd.snapshot.service import open_repo

    builder, cluster, _, _ = _odoo_estate(estate_builder, make_cluster)
    estate = builder.load()
    snapshot_workload(estate, "acme")
    write_heartbeat(estate.config.workload("acme").postgres.primary)
    cluster.switch_wal_and_wait_archived()
    repo = open_repo(estate, "fs")
    lock = RepositoryLock(repo.store, "exclusive").acquire()
    releaser = threading.Timer(6.0, lock.release)
    releaser.start()
    try:
        result = run_local_drill(estate, "acme")
    finally:
        releaser.join()
    assert result.verdict == "pass", result.reasons
    assert result.phases["filestore_restore"] >= 5.0
    assert result.rto_seconds is not None
    assert result.rto_seconds >= result.phases["filestore_restore"]
