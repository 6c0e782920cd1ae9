"""Drill checks on a real PostgreSQL 15 server: readiness, heartbeat, amcheck, custom SQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from drd.drill.checks import (
    CheckOutcome,
    check_server_ready,
    newest_heartbeat,
    run_amcheck,
    run_custom_check,
)
from drd.postgres.heartbeat import ensure_table
from drd.testing import PgCluster
from drd.testing.odoo import create_odoo_schema

pytestmark = pytest.mark.integration


@pytest.fixture
def conn(make_cluster: Callable[..., PgCluster]) -> Any:
    """An autocommit connection to a fresh running server's ``postgres`` database."""
    pg = make_cluster("checks")
    pg.initdb()
    pg.start()
    with psycopg.connect(pg.conninfo("postgres"), autocommit=True) as connection:
        yield connection


def test_server_ready(conn: psycopg.Connection[Any]) -> None:
    """A primary accepting queries is ready; a closed connection is a failed check."""
    outcome = check_server_ready(conn)
    assert outcome.ok, outcome.detail
    assert (outcome.name, outcome.critical) == ("server_ready", True)
    assert "not in recovery" in outcome.detail
    conn.close()
    broken = check_server_ready(conn)
    assert not broken.ok
    assert "query failed" in broken.detail


def test_newest_heartbeat(conn: psycopg.Connection[Any]) -> None:
    """None without the table or rows; then the greatest ts, whatever the insert order."""
    assert newest_heartbeat(conn) is None
    ensure_table(conn)
    assert newest_heartbeat(conn) is None
    newest = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    for ts in (newest - timedelta(minutes=5), newest, newest - timedelta(minutes=1)):
        conn.execute("INSERT INTO drd.drd_heartbeat (ts, writer) VALUES (%s, 'test')", (ts,))
    assert newest_heartbeat(conn) == newest


def test_newest_heartbeat_missing_table_inside_a_transaction(
    conn: psycopg.Connection[Any],
) -> None:
    """A missing table inside the caller's transaction does not abort that transaction."""
    with conn.transaction():
        assert newest_heartbeat(conn) is None
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_amcheck_passes_on_a_healthy_database(conn: psycopg.Connection[Any]) -> None:
    """Every btree index (user and catalog) checks clean; max_indexes bounds the count."""
    create_odoo_schema(conn)
    conn.execute(
        "INSERT INTO ir_attachment (name, res_model, res_id)"
        " SELECT 'a' || g, 'res.partner', g FROM generate_series(1, 2000) g"
    )
    outcome = run_amcheck(conn, heapallindexed=True)
    assert outcome.ok, outcome.detail
    checked = int(outcome.detail.split()[0])
    catalog = conn.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_am a ON a.oid = c.relam"
        " WHERE a.amname = 'btree' AND c.relnamespace = 'pg_catalog'::regnamespace"
    ).fetchone()
    assert catalog is not None
    assert checked > catalog[0]  # catalogs and the fixture's own indexes
    limited = run_amcheck(conn, max_indexes=3)
    assert limited.ok
    assert limited.detail.startswith("3 btree indexes")


def test_custom_check_pass_and_fail(conn: psycopg.Connection[Any]) -> None:
    """Values compare as PostgreSQL text; mismatch, no rows, NULL and errors fail."""
    assert run_custom_check(conn, "count", "SELECT count(*) FROM pg_database", "3").ok
    assert run_custom_check(conn, "bool", "SELECT true", "t").ok
    mismatch = run_custom_check(conn, "count", "SELECT 41 + 1", "43", critical=False)
    assert mismatch == CheckOutcome("count", False, "got '42', expected '43'", critical=False)
    assert "no rows" in run_custom_check(conn, "none", "SELECT 1 WHERE false", "1").detail
    assert "NULL" in run_custom_check(conn, "null", "SELECT NULL", "1").detail
    assert "query failed" in run_custom_check(conn, "bad", "SELECT * FROM nope", "1").detail


def test_custom_check_timeout_and_read_only(conn: psycopg.Connection[Any]) -> None:
    """A slow query times out as a failed check; a write is refused (READ ONLY)."""
    slow = run_custom_check(conn, "slow", "SELECT pg_sleep(5)", "", timeout=0.2)
    assert not slow.ok
    assert "timed out" in slow.detail
    write = run_custom_check(conn, "write", "CREATE TABLE t (x int)", "")
    assert not write.ok
    assert "read-only" in write.detail
    assert run_custom_check(conn, "after", "SELECT 1", "1").ok  # connection still usable
