"""`drd catalog` against a real catalog file: info, audit chain verification, tampering."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml

from drd.catalog import open_configured
from drd.cli.app import main
from drd.config import load

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DRD_LOCAL_PASSPHRASE", "catalog-test-passphrase")
    data = yaml.safe_load((ROOT / "examples" / "local" / "drd.yaml").read_text())
    data["state_dir"] = str(tmp_path / "state")
    data["tiers_dir"] = str(ROOT / "tiers")
    path = tmp_path / "drd.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_catalog_info_and_audit_verification(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`catalog info` shows the SQLite catalog; `verify-audit` passes, then fails on tampering."""
    config = load(config_path).config
    with open_configured(config) as catalog:
        catalog.append_audit(
            "ops@example.com", "config.apply", "acme-erp", {"setting": "archive_timeout"}
        )
        catalog.append_audit("drd", "backup.start", "acme-erp", {"type": "full"})
    assert main(["--config", str(config_path), "-o", "json", "catalog", "info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backend"] == "sqlite"
    assert info["audit_entries"] == 2
    assert main(["--config", str(config_path), "catalog", "verify-audit"]) == 0
    assert "2 entries verified" in capsys.readouterr().out

    db = config.catalog_url().removeprefix("sqlite:///")
    with sqlite3.connect(db) as raw:
        triggers = [
            r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='trigger'")
        ]
        for name in triggers:
            raw.execute(f'DROP TRIGGER "{name}"')
        raw.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1")
    assert main(["--config", str(config_path), "catalog", "verify-audit"]) == 3
    assert "seq 1" in capsys.readouterr().err
