"""`make demo` runs end to end: real cluster, pgBackRest backup, validate, status."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_demo_runs_and_shows_a_healthy_status() -> None:
    """The demo exits 0, validates the example config, and shows the workload as ok."""
    env = {k: v for k, v in os.environ.items() if k != "DRD_DEMO_KEEP"}
    result = subprocess.run(
        [sys.executable, "-m", "drd.demo"],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "valid (4 tiers, 1 repositories, 1 workloads)" in out
    status_line = next(line for line in out.splitlines() if line.startswith("acme-erp"))
    assert "tier-1" in status_line
    assert "primary" in status_line
    assert status_line.rstrip().endswith("ok")
    assert "Traceback" not in result.stderr
