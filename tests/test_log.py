"""Secrets configured in drd never reach log output, whatever path they take."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from drd import log
from drd.config import load
from drd.redact import redact

ROOT = Path(__file__).resolve().parents[1]
SECRET = "Tr0ub4dor-and-3-horses"


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    stream = io.StringIO()
    log.configure("debug", json=True, stream=stream)
    yield stream
    log.configure("info", json=True)


def _fail(message: str) -> None:
    raise RuntimeError(message)


@pytest.mark.parametrize("json_output", [True, False])
def test_configured_secret_never_appears_in_logs(
    monkeypatch: pytest.MonkeyPatch, json_output: bool
) -> None:
    """A config-loaded passphrase is masked in events, fields, nesting, stdlib and tracebacks."""
    stream = io.StringIO()
    log.configure("debug", json=json_output, stream=stream)
    try:
        monkeypatch.setenv("DRD_LOCAL_PASSPHRASE", SECRET)
        estate = load(ROOT / "examples" / "local" / "drd.yaml")
        secret = estate.config.repositories[0].encryption.passphrase.get()
        value = secret.get_secret_value()
        logger = log.get_logger("test")
        logger.info(f"event mentioning {value}")
        logger.info("kv_event", detail=f"prefix {value} suffix", passphrase=value)
        logger.info("nested_event", data={"inner": [value, {"deeper": value}]})
        logger.info("secret_obj", secret=secret)
        logging.getLogger("botocore").warning("stdlib says %s", value)
        try:
            _fail(f"failed with {value}")
        except RuntimeError:
            logger.exception("with_traceback")
        logger.info(
            "conninfo", dsn=f"postgresql://drd:{value}@db/drd", libpq=f"host=db password={value}"
        )
    finally:
        log.configure("info", json=True)
    output = stream.getvalue()
    assert "kv_event" in output
    assert "with_traceback" in output
    assert "stdlib says" in output
    assert SECRET not in output
    assert "***" in output


def test_unregistered_password_shapes_are_masked() -> None:
    """Passwords in URLs and key=value strings are masked even if never registered."""
    assert redact("postgresql://u:pw-never-seen@h/db") == "postgresql://u:***@h/db"
    assert redact("host=h password=abc123xyz user=u") == "host=h password=*** user=u"
    assert redact("repo1-cipher-pass=zzz-top") == "repo1-cipher-pass=***"


def test_context_is_bound(captured: io.StringIO) -> None:
    """run_id and workload bound once appear on every later event."""
    log.bind_context(run_id=42, workload="acme")
    try:
        log.get_logger().info("backup_started")
    finally:
        log.clear_context()
    line = captured.getvalue().strip().splitlines()[-1]
    assert '"run_id": 42' in line
    assert '"workload": "acme"' in line
    assert '"backup_started"' in line
