"""WAL continuity against real pgBackRest repositories (posix and S3 over TLS).

A protected cluster takes a full backup, then commits and switches WAL a few times;
``check_continuity`` must find the range continuous. Then one archived segment from the
middle of the range is deleted from the repository itself (the file, or the S3
object), as bit rot, a bad lifecycle rule or an operator would: the report must name
exactly that segment, although pgBackRest's ``info`` still shows the same min and max.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from drd.config.models import FilesystemRepository
from drd.pgbackrest.continuity import ContinuityReport, Gap, check_continuity, segment_position
from drd.pgbackrest.runner import Pgbackrest
from drd.pgbackrest.stanza import REPO_SUBDIR
from drd.testing import PgCluster, S3Endpoint
from drd.testing.estate import EstateBuilder, start_protected

pytestmark = pytest.mark.integration

SWITCHES = 4


def _archive_some_wal(cluster: PgCluster, pgbr: Pgbackrest) -> list[str]:
    """Full backup, then SWITCHES commits each in its own archived segment; the segments."""
    pgbr.backup("full")
    cluster.execute("CREATE TABLE t (id int PRIMARY KEY)")
    switched = []
    for n in range(SWITCHES):
        cluster.execute(f"INSERT INTO t VALUES ({n})")  # a commit per segment
        switched.append(cluster.switch_wal_and_wait_archived(timeout=30))
    return switched


def _assert_continuous(pgbr: Pgbackrest, switched: list[str]) -> ContinuityReport:
    info = pgbr.info()
    report = check_continuity(pgbr)
    assert report.ok, report.describe()
    assert report.archive_id == info.archive_id == "15-1"
    assert report.start == info.backups[0].wal_start
    assert report.end == info.archive_max
    assert report.start is not None
    assert report.end is not None
    assert segment_position(report.end) >= segment_position(switched[-1])
    assert report.segments_checked == (
        segment_position(report.end) - segment_position(report.start) + 1
    )
    assert report.segments_checked >= SWITCHES
    return report


def _victim(report: ContinuityReport, switched: list[str]) -> str:
    """A switched-out segment strictly inside the checked range."""
    assert report.start is not None
    assert report.end is not None
    inside = [
        s
        for s in switched
        if segment_position(report.start) < segment_position(s) < segment_position(report.end)
    ]
    assert inside, (report, switched)
    return inside[len(inside) // 2]


def _assert_only_gap(pgbr: Pgbackrest, before: ContinuityReport, victim: str) -> None:
    info = pgbr.info()
    assert info.archive_max == before.end  # pgBackRest's own summary does not notice
    report = check_continuity(pgbr)
    assert not report.ok
    assert (report.start, report.end) == (before.start, before.end)
    assert report.gaps == (Gap(victim, victim, 1),)
    assert f"missing {victim} (1 segment)" in report.describe()


def test_gap_in_filesystem_repository(
    estate_builder: EstateBuilder, make_cluster: Callable[..., PgCluster]
) -> None:
    """Continuous after backup + switches; a deleted segment file is reported exactly."""
    cluster = make_cluster("cont")
    repo = estate_builder.filesystem_repo()
    estate_builder.workload("app", cluster, repo)
    estate = estate_builder.load()
    cfg, pgbr = start_protected(estate, "app", cluster)
    switched = _archive_some_wal(cluster, pgbr)
    before = _assert_continuous(pgbr, switched)

    victim = _victim(before, switched)
    repo_cfg = estate.config.repository(repo)
    assert isinstance(repo_cfg, FilesystemRepository)
    log_dir = repo_cfg.path / REPO_SUBDIR / "archive" / cfg.stanza / "15-1" / victim[:16]
    files = list(log_dir.glob(f"{victim}-*"))
    assert len(files) == 1, files
    files[0].unlink()
    _assert_only_gap(pgbr, before, victim)


def test_gap_in_s3_repository(
    estate_builder: EstateBuilder,
    make_cluster: Callable[..., PgCluster],
    s3: S3Endpoint,
    bucket: str,
) -> None:
    """The same on S3 (moto behind TLS): a deleted segment object is reported exactly."""
    cluster = make_cluster("conts3")
    repo = estate_builder.s3_repo(s3, bucket)
    estate_builder.workload("app", cluster, repo)
    cfg, pgbr = start_protected(estate_builder.load(), "app", cluster)
    switched = _archive_some_wal(cluster, pgbr)
    before = _assert_continuous(pgbr, switched)

    victim = _victim(before, switched)
    client = s3.client()
    prefix = f"{REPO_SUBDIR}/archive/{cfg.stanza}/15-1/{victim[:16]}/{victim}-"
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
    assert len(keys) == 1, keys
    client.delete_object(Bucket=bucket, Key=keys[0])
    _assert_only_gap(pgbr, before, victim)
