"""`drd check` and `drd status` on real clusters: healthy, then archiving broken on purpose."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from drd import metrics
from drd.backup.db import backup_db
from drd.catalog import open_configured
from drd.check import failed_critical, run_checks
from drd.cli.app import main
from drd.config import Estate
from drd.postgres.heartbeat import write_heartbeat
from drd.testing import PgCluster, wait_until
from drd.testing.estate import EstateBuilder, start_protected

pytestmark = pytest.mark.integration


def _protected(
    estate_builder: EstateBuilder, make_cluster: Callable[..., PgCluster]
) -> tuple[Estate, PgCluster]:
    cluster = make_cluster("chk")
    estate_builder.workload("erp", cluster, estate_builder.filesystem_repo())
    estate = estate_builder.load()
    start_protected(estate, "erp", cluster)
    write_heartbeat(estate.config.workload("erp").postgres.primary)
    with open_configured(estate.config) as catalog:
        backup_db(estate, "erp", "full", catalog)
    write_heartbeat(estate.config.workload("erp").postgres.primary)
    cluster.switch_wal_and_wait_archived()
    return estate, cluster


def _failed_value(workload: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "drd_wal_archive_failed_total", {"workload": workload}
    )
    return value or 0.0


def test_healthy_workload_passes_every_critical_check(
    estate_builder: EstateBuilder,
    make_cluster: Callable[..., PgCluster],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A protected, backed-up, archiving workload: exit 0, every check ok, status ok."""
    estate, _ = _protected(estate_builder, make_cluster)
    config = str(estate.path)
    assert main(["--config", config, "-o", "json", "check", "erp", "--archive-timeout", "30"]) == 0
    report = json.loads(capsys.readouterr().out)
    names = {c["name"]: c for c in report["checks"]}
    assert report["ok"] is True
    for name in (
        "connection",
        "archive_mode",
        "archive_command",
        "archiving_works",
        "repository",
        "encryption",
        "backup_age_full",
        "wal_continuity",
        "rpo_exposure",
    ):
        assert names[name]["ok"], names[name]
    assert names["backup_age_diff"]["critical"] is False  # tier-1 diffs are not critical

    assert main(["--config", config, "-o", "json", "status"]) == 0
    row = json.loads(capsys.readouterr().out)["workloads"][0]
    assert row["primary_state"] == "primary"
    assert row["last_full_age"] is not None
    assert row["last_incr_age"] is None
    assert row["rpo_exposure"] is not None
    assert row["rpo_exposure"] < 300
    assert row["rpo"] == 900.0
    assert row["rpo_verdict"] == "ok"
    assert row["last_archived_wal"]


def test_broken_archiving_fails_the_right_checks(
    estate_builder: EstateBuilder,
    make_cluster: Callable[..., PgCluster],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Wrong-stanza archive_command: archive checks fail with reasons, exit 11, metric rises."""
    estate, cluster = _protected(estate_builder, make_cluster)
    run_checks(estate, "erp", quick=True)
    before = _failed_value("erp")
    cfg_path = estate.config.state_dir / "pgbackrest" / "erp" / "pgbackrest.conf"
    wrong = f"pgbackrest --config={cfg_path} --stanza=wrong archive-push %p"
    cluster.execute(f"ALTER SYSTEM SET archive_command = '{wrong}'")
    cluster.execute("SELECT pg_reload_conf()")
    cluster.execute("CREATE TABLE after_break AS SELECT 1")
    cluster.execute("SELECT pg_switch_wal()")
    wait_until(
        lambda: cluster.scalar(
            "SELECT last_failed_time > coalesce(last_archived_time, '-infinity')"
            " FROM pg_stat_archiver"
        ),
        timeout=30,
        what="the archiver to fail with the wrong stanza",
    )

    results = run_checks(estate, "erp", archive_timeout=5)
    failed = {r.name: r for r in failed_critical(results)}
    assert "archive_command" in failed
    assert "--stanza=wrong" in failed["archive_command"].detail
    assert failed["archive_command"].hint == "run `drd db setup erp --apply`"
    assert "archiving_works" in failed
    assert "archive-timeout" in failed["archiving_works"].detail
    assert "archive_failures" in failed
    assert "connection" not in failed
    assert _failed_value("erp") > before

    assert main(["--config", str(estate.path), "check", "erp", "--quick"]) == 11
    captured = capsys.readouterr()
    assert "archive_command" in captured.err
    assert "FAILED" in captured.out


def test_dead_primary_is_reported_not_crashed(
    estate_builder: EstateBuilder,
    make_cluster: Callable[..., PgCluster],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With the primary stopped, status says down/critical and check fails 'connection'."""
    estate, cluster = _protected(estate_builder, make_cluster)
    cluster.stop(mode="immediate")
    assert main(["--config", str(estate.path), "-o", "json", "status"]) == 0
    row = json.loads(capsys.readouterr().out)["workloads"][0]
    assert row["primary_state"] == "down"
    assert row["verdict"] == "critical"
    assert row["last_full_age"] is not None  # the repository still answers
    results = run_checks(estate, "erp", quick=True)
    assert "connection" in {r.name for r in failed_critical(results)}
