"""The heartbeat table on real PostgreSQL servers: writes, reads, pruning, standbys, the
loop, and the property drills rely on: heartbeats come back with a restored backup."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from drd.config.models import PostgresEndpoint
from drd.config.types import SecretRef
from drd.errors import PostgresError
from drd.pgbackrest.runner import Pgbackrest
from drd.postgres import heartbeat
from drd.postgres.heartbeat import Heartbeat
from drd.postgres.probe import connect
from drd.rpo import parse_lsn
from drd.testing import PgCluster, Scratch
from drd.testing.estate import EstateBuilder, start_protected
from drd.testing.processes import free_port, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def endpoint(shared_pg: PgCluster) -> Iterator[PostgresEndpoint]:
    """A fresh database on the shared server, as drd's endpoint model."""
    name = f"hb_{uuid.uuid4().hex[:12]}"
    shared_pg.execute(f'CREATE DATABASE "{name}"')
    yield PostgresEndpoint(host="127.0.0.1", port=shared_pg.port, dbname=name)
    shared_pg.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _rows(cluster: PgCluster, dbname: str = "postgres") -> list[tuple[Any, ...]]:
    return cluster.query(
        "SELECT seq, ts, lsn::text, writer FROM drd.drd_heartbeat ORDER BY seq", dbname=dbname
    )


def test_ensure_table_is_idempotent(shared_pg: PgCluster, endpoint: PostgresEndpoint) -> None:
    """Creating schema and table twice is harmless and yields the documented columns."""
    with connect(endpoint) as conn:
        heartbeat.ensure_table(conn)
        heartbeat.ensure_table(conn)
    columns = shared_pg.query(
        "SELECT column_name, data_type, is_nullable, is_identity FROM information_schema.columns"
        " WHERE table_schema = 'drd' AND table_name = 'drd_heartbeat' ORDER BY ordinal_position",
        dbname=endpoint.dbname,
    )
    assert columns == [
        ("seq", "bigint", "NO", "YES"),
        ("ts", "timestamp with time zone", "NO", "NO"),
        ("lsn", "pg_lsn", "NO", "NO"),
        ("writer", "text", "YES", "NO"),
    ]


def test_write_creates_the_table_and_rows_in_order(
    shared_pg: PgCluster, endpoint: PostgresEndpoint
) -> None:
    """Each write adds one committed row; seq, ts and lsn all increase."""
    beats = [heartbeat.write_heartbeat(endpoint, writer="test-writer") for _ in range(3)]
    assert [b.seq for b in beats] == sorted({b.seq for b in beats})
    assert beats[0].ts < beats[1].ts < beats[2].ts
    assert parse_lsn(beats[0].lsn) < parse_lsn(beats[1].lsn) < parse_lsn(beats[2].lsn)
    assert beats[0].ts.tzinfo is not None
    rows = _rows(shared_pg, endpoint.dbname)
    assert [(r[0], r[1], r[2]) for r in rows] == [(b.seq, b.ts, b.lsn) for b in beats]
    assert {r[3] for r in rows} == {"test-writer"}
    default = heartbeat.write_heartbeat(endpoint)
    assert _rows(shared_pg, endpoint.dbname)[-1][3] == heartbeat.default_writer()
    assert default.seq > beats[-1].seq


def test_newest_heartbeat_and_newest_before_an_lsn(endpoint: PostgresEndpoint) -> None:
    """Reads work on a database never written (None) and pick the right rows afterwards."""
    assert heartbeat.newest_heartbeat(endpoint) is None
    assert heartbeat.newest_heartbeat_before_lsn(endpoint, "FF/0") is None
    first, second, third = (heartbeat.write_heartbeat(endpoint) for _ in range(3))
    assert heartbeat.newest_heartbeat(endpoint) == third
    assert heartbeat.oldest_heartbeat(endpoint) == first
    assert heartbeat.newest_heartbeat_before_lsn(endpoint, third.lsn) == second
    assert heartbeat.newest_heartbeat_before_lsn(endpoint, second.lsn) == first
    assert heartbeat.newest_heartbeat_before_lsn(endpoint, first.lsn) is None
    with connect(endpoint) as conn:  # drills pass their own connection to a restored copy
        assert heartbeat.newest_heartbeat(conn) == third
        assert heartbeat.newest_heartbeat_before_lsn(conn, "FFFFFFFF/0") == third


def test_prune_removes_only_rows_past_retention(
    shared_pg: PgCluster, endpoint: PostgresEndpoint
) -> None:
    """The pruning beat deletes rows older than the retention and keeps recent ones."""
    kept = heartbeat.write_heartbeat(endpoint, prune_every=0)
    shared_pg.execute(
        "INSERT INTO drd.drd_heartbeat (ts, writer)"
        " SELECT now() - interval '8 days' - g * interval '1 minute', 'old'"
        " FROM generate_series(1, 5) g",
        dbname=endpoint.dbname,
    )
    assert len(_rows(shared_pg, endpoint.dbname)) == 6
    newest = heartbeat.write_heartbeat(endpoint, prune_every=1, retention=timedelta(days=7))
    assert [r[0] for r in _rows(shared_pg, endpoint.dbname)] == [kept.seq, newest.seq]


def test_errors_name_the_endpoint_never_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dead server gives a PostgresError with host:port/db and no password."""
    monkeypatch.setenv("DRD_TEST_HB_PASSWORD", "hunter2-very-secret")
    dead = PostgresEndpoint(
        host="127.0.0.1",
        port=free_port(),
        dbname="erp",
        password=SecretRef(env="DRD_TEST_HB_PASSWORD"),
    )
    with pytest.raises(PostgresError) as caught:
        heartbeat.write_heartbeat(dead, timeout=2)
    text = str(caught.value)
    assert f"127.0.0.1:{dead.port}/erp" in text
    assert "hunter2" not in text
    assert caught.value.hint
    with pytest.raises(PostgresError, match=f"127.0.0.1:{dead.port}/erp"):
        heartbeat.newest_heartbeat(dead, timeout=2)


def test_missing_privileges_give_a_hint(shared_pg: PgCluster, endpoint: PostgresEndpoint) -> None:
    """A user that may not create the schema gets a PostgresError saying what to grant."""
    role = f"hb_{uuid.uuid4().hex[:8]}"
    shared_pg.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        weak = endpoint.model_copy(update={"user": role})
        with pytest.raises(PostgresError, match="permission denied") as caught:
            heartbeat.write_heartbeat(weak)
        assert "CREATE on the database" in (caught.value.hint or "")
    finally:
        shared_pg.execute(f'DROP ROLE "{role}"')


def test_writing_on_a_standby_is_refused_clearly(
    make_cluster: Callable[..., PgCluster], scratch: Scratch
) -> None:
    """A standby is read-only: before and after the table replicates, the error says so."""
    primary = make_cluster("hbprimary")
    primary.initdb()
    primary.start()
    standby = primary.make_standby(scratch, f"hbstandby-{uuid.uuid4().hex[:8]}")
    try:
        on_standby = PostgresEndpoint(host="127.0.0.1", port=standby.port)
        with pytest.raises(PostgresError, match="in recovery") as caught:
            heartbeat.write_heartbeat(on_standby)  # no table yet: the create path refuses
        assert f"127.0.0.1:{standby.port}/postgres" in str(caught.value)
        assert "primary" in (caught.value.hint or "")

        beat = heartbeat.write_heartbeat(PostgresEndpoint(host="127.0.0.1", port=primary.port))
        wait_until(
            lambda: heartbeat.newest_heartbeat(on_standby) == beat,
            timeout=30,
            what="the heartbeat to replicate",
        )
        with pytest.raises(PostgresError, match="in recovery"):
            heartbeat.write_heartbeat(on_standby)  # table present: the insert path refuses
    finally:
        standby.stop(mode="immediate")


def test_loop_keeps_beating_through_a_failed_beat(endpoint: PostgresEndpoint) -> None:
    """run_heartbeat writes on its interval, logs a failed beat and goes on until stopped."""
    dead = PostgresEndpoint(host="127.0.0.1", port=free_port())
    stop = threading.Event()
    calls: list[str] = []
    seen: list[Heartbeat] = []

    def flaky_write(target: PostgresEndpoint, **kwargs: Any) -> Heartbeat:
        calls.append(target.describe())
        # The second beat goes to a server that is not there: a real connection failure.
        return heartbeat.write_heartbeat(dead if len(calls) == 2 else target, **kwargs)

    def on_beat(beat: Heartbeat) -> None:
        seen.append(beat)
        if len(seen) == 1:
            raise RuntimeError("a broken metrics callback must not stop the clock")
        if len(seen) == 4:
            stop.set()

    results: list[int] = []
    thread = threading.Thread(
        target=lambda: results.append(
            heartbeat.run_heartbeat(endpoint, 0.05, stop, on_beat=on_beat, write=flaky_write)
        )
    )
    with capture_logs() as logs:
        thread.start()
        thread.join(timeout=60)
        stop.set()
    assert not thread.is_alive()
    events = [(e["event"], e["log_level"]) for e in logs]
    assert events == [
        ("heartbeat_callback_failed", "error"),
        ("heartbeat_failed", "warning"),
        ("heartbeat_recovered", "info"),
    ]
    failed = next(e for e in logs if e["event"] == "heartbeat_failed")
    assert dead.describe() in failed["error"]
    assert results == [4]
    assert len(calls) == 5  # one failed in between
    assert [b.seq for b in seen] == sorted(b.seq for b in seen)
    assert heartbeat.newest_heartbeat(endpoint) == seen[-1]


def test_loop_stops_promptly_and_rejects_a_bad_interval(endpoint: PostgresEndpoint) -> None:
    """A set stop event ends the loop before any beat; a non-positive interval is refused."""
    stop = threading.Event()
    stop.set()
    assert heartbeat.run_heartbeat(endpoint, 3600, stop) == 0
    with pytest.raises(ValueError, match="positive"):
        heartbeat.run_heartbeat(endpoint, 0, stop)


def test_heartbeats_written_before_a_backup_survive_its_restore(
    estate_builder: EstateBuilder, make_cluster: Callable[..., PgCluster]
) -> None:
    """Every beat committed before a full backup is in the restored copy, same seq and ts."""
    cluster = make_cluster("hbsrc")
    repo = estate_builder.filesystem_repo()
    estate_builder.workload("hb", cluster, repo)
    estate = estate_builder.load()
    cfg, pgbr = start_protected(estate, "hb", cluster)
    primary = estate.config.workload("hb").postgres.primary

    before = [heartbeat.write_heartbeat(primary) for _ in range(5)]
    pgbr.backup("full")
    replayed = heartbeat.write_heartbeat(primary)  # after the backup: comes back by WAL replay
    cluster.switch_wal_and_wait_archived()

    target = make_cluster("hbrestored")
    Pgbackrest(cfg).run("restore", f"--pg1-path={target.data_dir}", "--archive-mode=off")
    target.configure({})
    target.start()
    target.wait_out_of_recovery()

    restored = PostgresEndpoint(host="127.0.0.1", port=target.port)
    rows = {seq: (ts, lsn) for seq, ts, lsn, _ in _rows(target)}
    for beat in before:
        assert rows[beat.seq] == (beat.ts, beat.lsn)
    newest = heartbeat.newest_heartbeat(restored)
    assert newest == replayed
    # The restored copy is a primary of its own: drd could protect it and beat there.
    assert heartbeat.write_heartbeat(restored).seq > newest.seq
