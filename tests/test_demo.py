"""`make demo` runs end to end: setup drift and apply, heartbeat, backup, check, status."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_demo_protects_a_fresh_cluster_end_to_end() -> None:
    """The demo exits 0; setup fixes archiving; the incr becomes a full; check and status pass."""
    env = {k: v for k, v in os.environ.items() if k != "DRD_DEMO_KEEP"}
    result = subprocess.run(
        [sys.executable, "-m", "drd.demo"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "valid (5 tiers, 1 repositories, 1 workloads)" in out
    assert "would change archive_command: '/bin/false'" in out
    assert "changed archive_timeout: '3600s' -> '10s'" in out
    assert "stanza acme-erp: created" in out
    assert "no prior full backup: took a full backup instead of incr" in out
    assert "FAILED" not in out
    assert re.search(r"read 1 changed files of \d+", out)
    # the daemon ran the drill, measured against the demo tier's objectives
    daemon_part = out[out.find("== the daemon") : out.find("== retention")]
    assert re.search(
        r"by the daemon: PASS; RPO \d+\.\ds \(objective 300s\), RTO \d+\.\ds \(objective 1800s\)",
        out,
    ), daemon_part
    assert "check attachments: ok" in out
    assert re.search(r"status page: http://127\.0\.0\.1:\d+/", out)
    assert "acme-erp: OK; rpo OK" in out  # the status page's verdicts
    assert "daemon stopped by SIGTERM (exit 0)" in out
    assert "restored tree identical to the filestore: True" in out
    assert "no problems found" in out
    assert re.search(r"database: keep \d backup set\(s\), expire 0", out)  # retention plan
    assert re.search(r"filestore: keep \d snapshot\(s\), forget 0", out)
    status_line = next(line for line in out.splitlines() if line.startswith("acme-erp "))
    assert " demo " in status_line
    assert "primary" in status_line
    assert status_line.rstrip().endswith(" ok")
    assert "Traceback" not in result.stderr
