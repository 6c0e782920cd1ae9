"""`drd status` and `drd catalog` against a real PostgreSQL server and a real catalog file."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from drd.catalog import BackupRecord, open_configured
from drd.cli.app import main
from drd.config import load
from drd.testing import PgCluster

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def estate_file(
    tmp_path: Path, make_cluster: Callable[..., PgCluster], monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, PgCluster]:
    monkeypatch.setenv("DRD_LOCAL_PASSPHRASE", "status-test-passphrase")
    cluster = make_cluster("status")
    cluster.initdb(archive_command="/bin/true")
    cluster.start()
    cluster.execute("CREATE DATABASE acme")
    cluster.switch_wal_and_wait_archived()
    data = yaml.safe_load((ROOT / "examples" / "local" / "drd.yaml").read_text())
    data["state_dir"] = str(tmp_path / "state")
    data["tiers_dir"] = str(ROOT / "tiers")
    data["workloads"][0]["postgres"]["primary"]["port"] = cluster.port
    path = tmp_path / "drd.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, cluster


def _status(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(["--config", str(path), "--output", "json", "status"]) == 0
    rows: list[dict[str, object]] = json.loads(capsys.readouterr().out)["workloads"]
    assert len(rows) == 1
    return rows[0]


def test_status_shows_live_archive_age_and_catalog_backup(
    estate_file: tuple[Path, PgCluster], capsys: pytest.CaptureFixture[str]
) -> None:
    """A healthy primary is 'ok' with a small archive age; the newest catalog backup is shown."""
    path, _ = estate_file
    with open_configured(load(path).config) as catalog:
        now = datetime.now(UTC)
        catalog.record_backup(
            BackupRecord(
                workload="acme-erp",
                stanza="acme-erp",
                repository="local",
                label="20261129-010000F",
                type="full",
                started_at=now - timedelta(minutes=2),
                stopped_at=now - timedelta(minutes=1),
            )
        )
    row = _status(path, capsys)
    assert row["primary_state"] == "primary"
    assert row["verdict"] == "ok"
    assert isinstance(row["archive_age"], float)
    assert 0 <= row["archive_age"] < 120
    assert row["last_backup"] == "20261129-010000F (full)"
    assert row["rpo"] == 900.0  # tier-1: 15 minutes, from the tier file


def test_status_of_a_dead_primary_is_critical(
    estate_file: tuple[Path, PgCluster], capsys: pytest.CaptureFixture[str]
) -> None:
    """When the primary is down, status still answers: 'down' and 'critical', exit 0."""
    path, cluster = estate_file
    cluster.stop(mode="immediate")
    row = _status(path, capsys)
    assert row["primary_state"] == "down"
    assert row["verdict"] == "critical"
    assert row["primary_error"]


def test_status_table_has_one_row_per_workload(
    estate_file: tuple[Path, PgCluster], capsys: pytest.CaptureFixture[str]
) -> None:
    """The table view has a header and the workload's row."""
    path, _ = estate_file
    assert main(["--config", str(path), "status"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("WORKLOAD")
    assert lines[1].startswith("acme-erp")


def test_catalog_info_and_audit_verification(
    estate_file: tuple[Path, PgCluster], capsys: pytest.CaptureFixture[str]
) -> None:
    """`catalog info` shows the SQLite catalog; `verify-audit` passes, then fails on tampering."""
    path, _ = estate_file
    config = load(path).config
    with open_configured(config) as catalog:
        catalog.append_audit(
            "ops@example.com", "config.apply", "acme-erp", {"setting": "archive_timeout"}
        )
        catalog.append_audit("drd", "backup.start", "acme-erp", {"type": "full"})
    assert main(["--config", str(path), "-o", "json", "catalog", "info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backend"] == "sqlite"
    assert info["audit_entries"] == 2
    assert main(["--config", str(path), "catalog", "verify-audit"]) == 0
    assert "2 entries verified" in capsys.readouterr().out

    db = config.catalog_url().removeprefix("sqlite:///")
    with sqlite3.connect(db) as raw:
        triggers = [
            r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='trigger'")
        ]
        for name in triggers:
            raw.execute(f'DROP TRIGGER "{name}"')
        raw.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1")
    assert main(["--config", str(path), "catalog", "verify-audit"]) == 3
    err = capsys.readouterr().err
    assert "seq 1" in err
