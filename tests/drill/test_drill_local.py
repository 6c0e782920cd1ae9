"""Local restore drills on real clusters: measured RPO/RTO, point in time, objectives."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import yaml

from drd.catalog import open_configured
from drd.drill.agent import run_local_drill
from drd.drill.service import run_drill
from drd.postgres.heartbeat import write_heartbeat
from drd.testing import PgCluster
from drd.testing.estate import TIERS, EstateBuilder, start_protected, stop_kept_sandbox

pytestmark = pytest.mark.integration


def _no_process_mentions(path: str) -> bool:
    found = subprocess.run(["pgrep", "-f", path], capture_output=True, text=True, check=False)
    return found.stdout.strip() == ""


def test_healthy_drill_measures_rpo_against_ground_truth(
    estate_builder: EstateBuilder, make_cluster: Callable[..., PgCluster]
) -> None:
    """The drill passes; the recovered heartbeat is the newest archived one; phases add up."""
    cluster = make_cluster("drill")
    estate_builder.workload("erp", cluster, estate_builder.filesystem_repo())
    estate_builder.workloads[-1]["checks"] = [
        {
            "name": "heartbeats-present",
            "sql": "SELECT count(*) > 0 FROM drd.drd_heartbeat",
            "expected": "t",
        }
    ]
    estate = estate_builder.load()
    _, pgbr = start_protected(estate, "erp", cluster)
    primary = estate.config.workload("erp").postgres.primary
    write_heartbeat(primary)
    pgbr.backup("full")
    truth = write_heartbeat(primary)  # the newest heartbeat, archived below
    cluster.switch_wal_and_wait_archived()

    with open_configured(estate.config) as catalog:
        result = run_drill(estate, "erp", catalog, sandbox="local")
        recorded = catalog.latest_drill("erp")
    assert result.verdict == "pass", result.reasons
    assert result.recovered_heartbeat == truth.ts
    assert {"name": "heartbeats-present", "ok": True} in [
        {"name": c["name"], "ok": c["ok"]} for c in result.checks
    ]
    assert result.versions["pgbackrest"].startswith("pgBackRest 2.")
    assert result.versions["postgresql"].startswith("15.")
    expected_rpo = (result.t0 - truth.ts).total_seconds()
    assert result.rpo_seconds is not None
    assert abs(result.rpo_seconds - expected_rpo) < 2
    assert result.rto_seconds is not None
    serial = sum(
        result.phases[p] for p in ("provision", "db_restore", "wal_replay", "verification")
    )
    assert serial <= result.rto_seconds + 0.01
    assert result.rto_seconds - serial < 1.0
    assert recorded is not None
    assert recorded.verdict == "pass"
    assert recorded.measured_rpo_seconds == result.rpo_seconds
    assert result.sandbox is not None
    assert not Path(result.sandbox).exists()
    assert _no_process_mentions(result.sandbox)
    stored = list((estate_builder.root / "repo-fs" / "filestore" / "drills" / "erp").glob("*.json"))
    assert len(stored) == 1  # the result is also in the repository


def test_drill_at_a_past_time_restores_to_it(
    estate_builder: EstateBuilder, make_cluster: Callable[..., PgCluster]
) -> None:
    """With --at, rows committed after T0 are absent from the restored copy."""
    cluster = make_cluster("pitr")
    estate_builder.workload("erp", cluster, estate_builder.filesystem_repo())
    estate = estate_builder.load()
    _, pgbr = start_protected(estate, "erp", cluster)
    primary = estate.config.workload("erp").postgres.primary
    pgbr.backup("full")
    cluster.execute("CREATE TABLE orders (id int)")
    cluster.execute("INSERT INTO orders VALUES (1)")
    write_heartbeat(primary)
    cluster.switch_wal_and_wait_archived()
    time.sleep(1.2)
    t0 = cluster.scalar("SELECT now()")
    time.sleep(1.2)
    cluster.execute("INSERT INTO orders VALUES (2)")
    write_heartbeat(primary)
    cluster.switch_wal_and_wait_archived()

    result = run_local_drill(estate, "erp", t0=t0.astimezone(UTC), keep=True)
    try:
        assert result.verdict == "pass", result.reasons
        assert result.db_target == t0.astimezone(UTC).isoformat()
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
        assert result.recovered_heartbeat is not None
        assert result.recovered_heartbeat < t0
    finally:
        if result.sandbox:
            stop_kept_sandbox(cluster.os_user, cluster.bin_dir, result.sandbox)


def test_drill_fails_when_rpo_exceeds_the_objective(
    estate_builder: EstateBuilder, make_cluster: Callable[..., PgCluster], tmp_path: Path
) -> None:
    """With a 3 s RPO objective and heartbeats stopped for longer, the drill fails saying why."""
    tiers = tmp_path / "tiers"
    shutil.copytree(TIERS, tiers)
    tight = yaml.safe_load((TIERS / "tier-1.yaml").read_text())
    tight["objectives"]["rpo"] = "3s"
    tight["postgres"]["archive_timeout"] = "1s"
    tight["postgres"]["heartbeat_interval"] = "1s"
    (tiers / "tier-tight.yaml").write_text(yaml.safe_dump(tight))
    estate_builder.tiers_dir = tiers
    cluster = make_cluster("rpo")
    estate_builder.workload("erp", cluster, estate_builder.filesystem_repo(), tier="tier-tight")
    estate_builder.workloads[-1]["checks"] = [
        {"name": "must-fail", "sql": "SELECT 'no'", "expected": "yes"}
    ]
    estate = estate_builder.load()
    # The server keeps a normal archive_timeout: this test is about the drill's verdict.
    _, pgbr = start_protected(estate, "erp", cluster, settings={"archive_timeout": "60s"})
    write_heartbeat(estate.config.workload("erp").postgres.primary)
    pgbr.backup("full")
    cluster.switch_wal_and_wait_archived()
    time.sleep(4)  # no heartbeat for longer than the objective
    result = run_local_drill(estate, "erp", t0=datetime.now(UTC))
    assert result.verdict == "fail"
    assert any("RPO" in r and "exceeds the objective 3s" in r for r in result.reasons), (
        result.reasons
    )
    assert any(r.startswith("check must-fail failed") for r in result.reasons), result.reasons
    assert result.sandbox is not None
    assert not Path(result.sandbox).exists()


def test_interrupted_drill_leaves_nothing_behind(
    estate_builder: EstateBuilder, make_cluster: Callable[..., PgCluster]
) -> None:
    """Ctrl-C during a drill: exit 130, sandbox directory and its processes gone."""
    import os
    import signal
    import sys

    from drd.testing import wait_until

    cluster = make_cluster("intr")
    estate_builder.workload("erp", cluster, estate_builder.filesystem_repo())
    estate = estate_builder.load()
    _, pgbr = start_protected(estate, "erp", cluster)
    cluster.execute("CREATE TABLE big AS SELECT g, md5(g::text) FROM generate_series(1, 300000) g")
    write_heartbeat(estate.config.workload("erp").postgres.primary)
    pgbr.backup("full")
    cluster.switch_wal_and_wait_archived()
    drills = estate.config.state_dir / "drills"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "drd",
            "--config",
            str(estate.path),
            "drill",
            "run",
            "erp",
            "--sandbox",
            "local",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "DRD_TEST_REPO_PASSPHRASE": estate_builder.passphrase},
    )
    sandbox = wait_until(
        lambda: next((p for p in drills.glob("*") if (p / "data").exists()), None),
        timeout=60,
        what="the drill sandbox to appear",
        interval=0.01,
    )
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    assert proc.stderr is not None
    proc.stderr.close()
    assert not sandbox.exists()
    assert _no_process_mentions(str(sandbox))
