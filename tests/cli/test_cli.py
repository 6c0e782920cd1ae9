"""The drd command line: global options, config commands, exit codes, no tracebacks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from drd.cli.app import main
from drd.errors import EXIT_CODES

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "local" / "drd.yaml"


@pytest.fixture
def passphrase(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DRD_LOCAL_PASSPHRASE", "cli-test-passphrase")
    return "cli-test-passphrase"


def test_validate_ok(passphrase: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A valid config exits 0 and says so."""
    assert main(["--config", str(EXAMPLE), "config", "validate"]) == 0
    assert "valid (4 tiers, 1 repositories, 1 workloads)" in capsys.readouterr().out


def test_validate_json(passphrase: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--output json gives a machine-readable summary."""
    assert main(["--output", "json", "--config", str(EXAMPLE), "config", "validate"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["valid"] is True
    assert data["workloads"] == ["acme-erp"]


def test_validate_reports_each_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid config exits 2 with one stderr line per problem, nothing on stdout."""
    shutil.copytree(ROOT / "tiers", tmp_path / "tiers")
    bad = EXAMPLE.read_text().replace("tiers_dir: ../../tiers", "tiers_dir: tiers")
    bad = bad.replace("tier: tier-1", "tier: platinum").replace(
        "tenant: acme", "tenant: acme\n    colour: red"
    )
    path = tmp_path / "drd.yaml"
    path.write_text(bad)
    assert main(["config", "validate", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == ""
    assert len(lines) == 3, lines  # unknown tier, unknown field, missing secret
    assert any("workloads[0].tier: unknown tier 'platinum'" in line for line in lines)
    assert any("workloads[0].colour: unknown field 'colour'" in line for line in lines)
    assert any("DRD_LOCAL_PASSPHRASE is not set" in line for line in lines)
    assert all(line.startswith(f"{path}:") for line in lines)


def test_skip_secrets(tmp_path: Path) -> None:
    """--skip-secrets validates structure without the secrets being present."""
    assert main(["config", "validate", "--skip-secrets", "--config", str(EXAMPLE)]) == 0


def test_schema_is_json_schema_with_tiers(capsys: pytest.CaptureFixture[str]) -> None:
    """`drd config schema` prints a JSON Schema that also describes tier files."""
    assert main(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["type"] == "object"
    assert "workloads" in schema["properties"]
    assert "Tier" in schema["$defs"]
    assert schema["additionalProperties"] is False


def test_missing_config_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A command that needs a config that is missing prints one clear line and exits 2."""
    assert main(["--config", str(tmp_path / "nope.yaml"), "status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("drd: error: ")
    assert "config file not found" in err
    assert "Traceback" not in err


def test_bad_option_value_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Usage errors (bad --output) exit 2 like config errors."""
    assert main(["--output", "yaml", "config", "schema"]) == 2
    assert "yaml" in capsys.readouterr().err


def test_unbuilt_commands_are_not_shown(capsys: pytest.CaptureFixture[str]) -> None:
    """Only commands that exist are registered; --help documents the exit codes."""
    import typer

    from drd.cli.app import app

    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert commands == {
        "config",
        "catalog",
        "status",
        "db",
        "backup",
        "check",
        "heartbeat",
        "repo",
        "snapshot",
        "drill",
        "retention",
        "daemon",
    }
    assert main(["--help"]) == 0
    assert "Exit codes" in capsys.readouterr().out


def test_console_script_exit_code(tmp_path: Path) -> None:
    """The installed `python -m drd` process exits with the documented code."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "drd",
            "--config",
            str(tmp_path / "missing.yaml"),
            "config",
            "validate",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "config file not found" in result.stderr


def test_exit_code_table_is_documented() -> None:
    """Every exit code in drd.errors appears in docs/configuration.md's table."""
    doc = (ROOT / "docs" / "configuration.md").read_text()
    for code, meaning in EXIT_CODES.items():
        assert f"| {code} |" in doc, f"exit code {code} ({meaning}) is not documented"


def test_traceback_only_at_debug(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], passphrase: str
) -> None:
    """A DrdError is one line normally; --log-level debug adds the traceback."""
    from drd.testing.processes import free_port

    text = EXAMPLE.read_text().replace("tiers_dir: ../../tiers", f"tiers_dir: {ROOT / 'tiers'}")
    text = text.replace(
        "state_dir: /var/lib/drd",
        f"state_dir: {tmp_path}\ncatalog: postgresql://drd@127.0.0.1:{free_port()}/drd",
    )
    config = tmp_path / "drd.yaml"
    config.write_text(text)
    assert main(["--config", str(config), "catalog", "info"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("drd: error: ")
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert main(["--log-level", "debug", "--config", str(config), "catalog", "info"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert err.strip().splitlines()[-1].startswith("drd: error: ")
