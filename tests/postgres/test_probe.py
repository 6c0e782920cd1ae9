"""Probing real servers: a primary, a standby, and one that is down."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from drd.config.models import PostgresEndpoint
from drd.postgres.probe import _seconds, probe
from drd.testing import PgCluster, Scratch
from drd.testing.processes import free_port

pytestmark = pytest.mark.integration


def _endpoint(cluster: PgCluster) -> PostgresEndpoint:
    return PostgresEndpoint(host="127.0.0.1", port=cluster.port)


def test_probe_primary_and_standby(
    make_cluster: Callable[..., PgCluster], scratch: Scratch
) -> None:
    """A primary reports not-in-recovery, a standby in-recovery, both with one system id."""
    primary = make_cluster("probe")
    primary.initdb(archive_command="/bin/true", settings={"archive_timeout": "90s"})
    primary.start()
    primary.execute("CREATE TABLE t(i int)")
    primary.switch_wal_and_wait_archived()
    standby = primary.make_standby(scratch, f"probe-standby-{primary.port}")
    try:
        state = probe(_endpoint(primary))
        assert state.reachable
        assert state.in_recovery is False
        assert state.server_version is not None
        assert state.server_version // 10000 == 15
        assert state.archive_mode == "on"
        assert state.archive_timeout_seconds == 90
        assert state.archiver is not None
        assert state.archiver.archived_count >= 1
        assert state.archiver.last_archived_time is not None
        standby_state = probe(_endpoint(standby))
        assert standby_state.in_recovery is True
        assert standby_state.system_identifier == state.system_identifier
    finally:
        standby.stop(mode="immediate")


def test_probe_of_a_dead_server_is_a_result_not_an_error() -> None:
    """Nothing listening: reachable is False and the error says why."""
    state = probe(PostgresEndpoint(host="127.0.0.1", port=free_port()), timeout=2)
    assert state.reachable is False
    assert state.error
    assert "refused" in state.error.lower() or "connect" in state.error.lower()


def test_setting_units_are_converted() -> None:
    """archive_timeout as PostgreSQL prints it becomes seconds."""
    assert _seconds("1min") == 60
    assert _seconds("30s") == 30
    assert _seconds("0") == 0
    assert _seconds("2h") == 7200
