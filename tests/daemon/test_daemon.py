"""The daemon on real components: catch-up, one daemon per state dir, leader election on a
PostgreSQL catalog, SIGTERM during a backup, SIGHUP with a broken config."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from drd.catalog import open_configured
from drd.catalog.sqlite import SqliteCatalog
from drd.cli.app import main
from drd.config import Estate
from drd.errors import LockError
from drd.testing import PgCluster
from drd.testing.estate import EstateBuilder, start_protected, tiers_with
from drd.testing.processes import free_port, wait_until

pytestmark = pytest.mark.integration

HOURLY_INCR = """
description: daemon test tier
objectives: {rpo: 1h, rto: 4h}
postgres: {full: "0 1 * * sun", incr: "0 * * * *", heartbeat_interval: 1s}
retention: {keep_last: 10}
drills: {cron: "0 6 * * *", sandbox: local, max_age: 30d, timeout: 1h}
evidence: {retain: 400d}
"""


def _estate(builder: EstateBuilder, cluster: PgCluster, tmp: Path, **daemon: Any) -> Estate:
    builder.tiers_dir = tiers_with(tmp / "tiers", **{"daemon-test": HOURLY_INCR})
    builder.workload("erp", cluster, builder.filesystem_repo(), tier="daemon-test")
    builder.extra["daemon"] = {"listen_port": free_port(), "jitter": "0s", **daemon}
    return builder.load()


def _mark_done(estate: Estate, *kinds: str, at: datetime | None = None) -> None:
    """Record runs of ``kinds`` (retention, drill) so that they are not due."""
    url = estate.config.catalog_url()
    catalog = SqliteCatalog(url, clock=(lambda: at) if at else None)
    try:
        for kind in kinds:
            details = {"requested_type": kind.split("-", 1)[1]} if "-" in kind else {}
            run = catalog.start_run(kind.split("-", 1)[0], "erp", details)
            catalog.finish_run(run, "succeeded")
    finally:
        catalog.close()


def _backup_runs(estate: Estate, requested: str) -> list[Any]:
    with open_configured(estate.config) as catalog:
        runs = catalog.list_runs("erp", "backup", limit=100)
    return [r for r in runs if r.details.get("requested_type") == requested]


def test_once_runs_a_backup_due_three_slots_ago_exactly_once(
    estate_builder: EstateBuilder, make_cluster: Callable[..., PgCluster], tmp_path: Path
) -> None:
    """The catalog says the hourly incr last ran 3.5 h ago: --once runs one incr, and a
    second pass right after runs none."""
    cluster = make_cluster("dmonce")
    estate = _estate(estate_builder, cluster, tmp_path)
    start_protected(estate, "erp", cluster)
    assert main(["--config", str(estate.path), "backup", "db", "erp", "--type", "full"]) == 0
    _mark_done(estate, "retention", "drill")
    _mark_done(estate, "backup-incr", at=datetime.now(UTC) - timedelta(hours=3, minutes=30))
    before = _backup_runs(estate, "incr")

    assert main(["--config", str(estate.path), "daemon", "--once"]) == 0
    after = _backup_runs(estate, "incr")
    assert len(after) == len(before) + 1
    assert after[0].status == "succeeded"
    with open_configured(estate.config) as catalog:
        assert [b.type for b in catalog.list_backups("erp")].count("incr") == 1
        heartbeats = cluster.scalar("SELECT count(*) FROM drd.drd_heartbeat")
    assert heartbeats >= 1  # the pass wrote a heartbeat too

    assert main(["--config", str(estate.path), "daemon", "--once"]) == 0
    assert len(_backup_runs(estate, "incr")) == len(after)  # nothing due any more


class DaemonProcess:
    """``drd daemon`` as a child process with its log in a file."""

    def __init__(self, config: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self.log_file = log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "drd", "--config", str(config), "daemon"],
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log().splitlines():
            if line.startswith("{") and f'"{name}"' in line:
                found.append(json.loads(line))
        return found

    def wait_event(self, name: str, timeout: float = 60, **match: Any) -> dict[str, Any]:
        def seen() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
            for event in self.events(name):
                if all(event.get(k) == v for k, v in match.items()):
                    return event
            return None

        try:
            return wait_until(seen, timeout=timeout, what=f"daemon event {name} {match}")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; daemon log:\n{self.log()[-3000:]}") from None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()
        return self.proc.returncode


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.stop()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - 127.0.0.1
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_second_daemon_on_one_state_dir_refuses(
    estate_builder: EstateBuilder,
    make_cluster: Callable[..., PgCluster],
    tmp_path: Path,
    daemons: list[DaemonProcess],
) -> None:
    cluster = make_cluster("dmlock")
    estate = _estate(estate_builder, cluster, tmp_path)
    start_protected(estate, "erp", cluster)
    _mark_done(estate, "retention", "drill", "backup-full", "backup-incr")
    first = DaemonProcess(estate.path, tmp_path / "first.log")
    daemons.append(first)
    first.wait_event("leader_catching_up")
    second = subprocess.run(
        [sys.executable, "-m", "drd", "--config", str(estate.path), "daemon"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == LockError.exit_code
    assert f"another drd daemon (pid {first.proc.pid})" in second.stderr
    port = estate.config.daemon.listen_port
    status, body = _get(f"http://127.0.0.1:{port}/readyz")
    assert status == 200, body
    assert first.stop() == 0


def test_sigterm_during_a_backup_lets_it_finish_then_exits_0(
    estate_builder: EstateBuilder,
    make_cluster: Callable[..., PgCluster],
    tmp_path: Path,
    daemons: list[DaemonProcess],
) -> None:
    cluster = make_cluster("dmterm")
    estate = _estate(estate_builder, cluster, tmp_path, shutdown_grace="120s")
    start_protected(estate, "erp", cluster)
    cluster.execute(
        "CREATE TABLE bulk AS SELECT g, md5(g::text) AS v FROM generate_series(1, 300000) g"
    )
    _mark_done(estate, "retention", "drill", "backup-incr")  # only the full is due
    daemon = DaemonProcess(estate.path, tmp_path / "term.log")
    daemons.append(daemon)
    wait_until(
        lambda: any(r.status == "running" for r in _backup_runs(estate, "full")),
        timeout=60,
        what="the full backup to start",
    )
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=120) == 0
    (run,) = _backup_runs(estate, "full")
    assert run.status == "succeeded"
    assert daemon.events("daemon_stopped")


def test_sighup_with_a_broken_config_keeps_the_old_one(
    estate_builder: EstateBuilder,
    make_cluster: Callable[..., PgCluster],
    tmp_path: Path,
    daemons: list[DaemonProcess],
) -> None:
    cluster = make_cluster("dmhup")
    estate = _estate(estate_builder, cluster, tmp_path)
    start_protected(estate, "erp", cluster)
    _mark_done(estate, "retention", "drill", "backup-full", "backup-incr")
    daemon = DaemonProcess(estate.path, tmp_path / "hup.log")
    daemons.append(daemon)
    daemon.wait_event("leader_catching_up")
    good = estate.path.read_text()
    estate.path.write_text(good.replace("workloads:", "workloadz:"))
    daemon.proc.send_signal(signal.SIGHUP)
    rejected = daemon.wait_event("config_reload_rejected")
    assert any("workloadz" in problem for problem in rejected["problems"])
    port = estate.config.daemon.listen_port
    assert _get(f"http://127.0.0.1:{port}/readyz")[0] == 200  # still serving, still ready

    def beats() -> int:
        try:
            return int(cluster.scalar("SELECT count(*) FROM drd.drd_heartbeat"))
        except Exception:  # the table appears with the first heartbeat
            return 0

    before = beats()
    wait_until(lambda: beats() > before, timeout=30, what="heartbeats under the old config")
    estate.path.write_text(good)
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_event("config_reloaded")
    assert daemon.stop() == 0


def test_two_daemons_on_a_postgres_catalog_one_leads_and_hands_over(
    estate_builder: EstateBuilder,
    make_cluster: Callable[..., PgCluster],
    pg_database: str,
    tmp_path: Path,
    daemons: list[DaemonProcess],
) -> None:
    """Both start with a full backup due: exactly one runs it. Killing the leader (-9) hands
    over within a bounded time and the new leader does not run the backup again."""
    cluster = make_cluster("dmlead")
    estate = _estate(estate_builder, cluster, tmp_path)
    estate_builder.extra["catalog"] = pg_database
    estate = estate_builder.load()
    start_protected(estate, "erp", cluster)
    with open_configured(estate.config) as catalog:
        for kind in ("retention", "drill"):
            catalog.finish_run(catalog.start_run(kind, "erp", {}), "succeeded")
        incr = catalog.start_run("backup", "erp", {"requested_type": "incr"})
        catalog.finish_run(incr, "succeeded")
    first = DaemonProcess(estate.path, tmp_path / "a.log")
    daemons.append(first)
    first.wait_event("leader_role_changed", role="leader")
    # The second replica gets its own HTTP port through a copy of the config.
    second_config = tmp_path / "b.yaml"
    port_b = free_port()
    second_config.write_text(
        estate.path.read_text().replace(
            f"listen_port: {estate.config.daemon.listen_port}", f"listen_port: {port_b}"
        )
    )
    second = DaemonProcess(second_config, tmp_path / "b.log")
    daemons.append(second)
    second.wait_event("leader_role_changed", role="follower")
    wait_until(
        lambda: [r.status for r in _backup_runs(estate, "full")] == ["succeeded"],
        timeout=120,
        what="the leader's full backup",
    )
    first.proc.kill()  # -9: no goodbye
    first.proc.wait()
    killed_at = time.monotonic()
    second.wait_event("leader_role_changed", timeout=30, role="leader")
    assert time.monotonic() - killed_at < 15
    second.wait_event("leader_catching_up")
    time.sleep(3)
    assert len(_backup_runs(estate, "full")) == 1  # not run again, never twice
    assert second.stop() == 0
