"""`drd db setup`: drift is reported without --apply and fixed with it, with an audit entry."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from drd.backup.setup import setup
from drd.catalog import open_configured
from drd.pgbackrest.stanza import stanza_config
from drd.testing import PgCluster
from drd.testing.estate import EstateBuilder

pytestmark = pytest.mark.integration


def test_setup_reports_then_fixes_drift(
    estate_builder: EstateBuilder, make_cluster: Callable[..., PgCluster]
) -> None:
    """A wrong archive_command and a too-long archive_timeout are reported, then fixed."""
    cluster = make_cluster("setup")
    estate_builder.workload("erp", cluster, estate_builder.filesystem_repo(), tier="tier-0")
    estate = estate_builder.load()
    wrong = "pgbackrest --config=/etc/pgbackrest.conf --stanza=other archive-push %p"
    cluster.initdb(archive_command=wrong, settings={"archive_timeout": "10min"})
    cluster.start()
    expected = stanza_config(estate, "erp").archive_command()

    with open_configured(estate.config) as catalog:
        report = setup(estate, "erp", catalog, apply=False, actor="tester")
        assert not report.applied
        assert not report.stanza_exists
        drift = {d.setting: d for d in report.drift}
        assert set(drift) == {"archive_command", "archive_timeout"}
        assert drift["archive_command"].current == wrong
        assert drift["archive_command"].desired == expected
        assert drift["archive_timeout"].current == "600s"
        assert drift["archive_timeout"].desired == "60s"  # tier-0 sets 60s (<= RPO/2 = 150s)
        assert "150s" in drift["archive_timeout"].reason
        assert cluster.scalar("SHOW archive_command") == wrong  # report only: nothing changed
        assert catalog.audit_entries() == []

        applied = setup(estate, "erp", catalog, apply=True, actor="tester")
        assert applied.applied
        assert applied.stanza_created
        assert applied.restart_required == []
        assert cluster.scalar("SHOW archive_command") == expected
        assert cluster.scalar("SHOW archive_timeout") == "1min"
        entries = catalog.audit_entries()
        assert [(e.actor, e.action, e.subject) for e in entries] == [
            ("tester", "db.setup.apply", "erp")
        ]
        assert {c["setting"] for c in entries[0].details["changes"]} == {
            "archive_command",
            "archive_timeout",
        }

        again = setup(estate, "erp", catalog, apply=True, actor="tester")
        assert again.in_sync
        assert not again.applied
        assert len(catalog.audit_entries()) == 1  # nothing to do, nothing audited
    cluster.execute("SELECT 1")
    cluster.switch_wal_and_wait_archived(timeout=60)  # archiving now works for real


def test_archive_mode_off_needs_restart(
    estate_builder: EstateBuilder, make_cluster: Callable[..., PgCluster]
) -> None:
    """archive_mode=off is set by --apply and reported as needing a restart."""
    cluster = make_cluster("setupoff")
    estate_builder.workload("erp", cluster, estate_builder.filesystem_repo())
    estate = estate_builder.load()
    cluster.initdb()  # archive_mode off
    cluster.start()
    with open_configured(estate.config) as catalog:
        report = setup(estate, "erp", catalog, apply=True, actor="tester")
    assert "archive_mode" in report.restart_required
    assert (
        cluster.scalar("SELECT pending_restart FROM pg_settings WHERE name = 'archive_mode'")
        is True
    )
