"""`drd backup db` against real pgBackRest 2.45: full/diff/incr to S3 and to a filesystem repo."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from drd.backup.db import backup_db
from drd.catalog import open_configured
from drd.errors import BackupError
from drd.testing import PgCluster, S3Endpoint
from drd.testing.estate import EstateBuilder, start_protected

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("repo_kind", ["filesystem", "s3"])
def test_full_diff_incr_recorded_as_info_shows(
    repo_kind: str,
    estate_builder: EstateBuilder,
    make_cluster: Callable[..., PgCluster],
    s3: S3Endpoint,
    bucket: str,
) -> None:
    """An incr without a full becomes a full; diff and incr follow; the catalog matches info."""
    cluster = make_cluster("bk")
    repo = (
        estate_builder.filesystem_repo()
        if repo_kind == "filesystem"
        else estate_builder.s3_repo(s3, bucket)
    )
    # tier-1 is immutable: on S3 it needs an Object Lock bucket (test_immutability_wiring)
    estate_builder.workload("erp", cluster, repo, tier="tier-2" if repo_kind == "s3" else "tier-1")
    estate = estate_builder.load()
    _, pgbr = start_protected(estate, "erp", cluster)
    cluster.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 10000) g")
    with open_configured(estate.config) as catalog:
        first = backup_db(estate, "erp", "incr", catalog)
        assert first.promoted_to_full
        assert first.type == "full"
        cluster.execute("INSERT INTO t SELECT g FROM generate_series(1, 5000) g")
        diff = backup_db(estate, "erp", "diff", catalog)
        cluster.execute("INSERT INTO t SELECT g FROM generate_series(1, 5000) g")
        incr = backup_db(estate, "erp", "incr", catalog)
        assert (diff.type, incr.type) == ("diff", "incr")
        assert not diff.promoted_to_full

        info = pgbr.info()
        recorded = sorted(catalog.list_backups("erp"), key=lambda b: b.started_at)
        assert [(b.label, b.type) for b in recorded] == [(b.label, b.type) for b in info.backups]
        for mine, theirs in zip(recorded, info.backups, strict=True):
            assert (mine.wal_start, mine.wal_stop) == (theirs.wal_start, theirs.wal_stop)
            assert (mine.lsn_start, mine.lsn_stop) == (theirs.lsn_start, theirs.lsn_stop)
            assert mine.started_at == theirs.started_at
            assert mine.size == theirs.size
            assert mine.repository == repo
        runs = catalog.list_runs("erp", kind="backup")
        assert [r.status for r in runs] == ["succeeded"] * 3
        assert incr.record.run_id in {r.id for r in runs}


def test_backup_without_stanza_says_what_to_do(
    estate_builder: EstateBuilder, make_cluster: Callable[..., PgCluster]
) -> None:
    """A backup before `db setup` fails with a hint, and nothing is recorded as succeeded."""
    cluster = make_cluster("nostanza")
    estate_builder.workload("erp", cluster, estate_builder.filesystem_repo())
    estate = estate_builder.load()
    cluster.initdb()
    cluster.start()
    with open_configured(estate.config) as catalog, pytest.raises(BackupError) as info:
        backup_db(estate, "erp", "full", catalog)
    assert "does not exist" in str(info.value)
    assert "drd db setup erp --apply" in str(info.value)
