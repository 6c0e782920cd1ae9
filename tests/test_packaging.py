"""Packaging: the Dockerfile lints clean and every install path uses the same locked versions."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)", line)
        if match:
            pins[match.group(1).lower().split("[")[0]] = match.group(2)
    return pins


def test_runtime_lock_agrees_with_dev_lock() -> None:
    """The image's runtime lock pins the same versions as the lock CI and the demo use."""
    runtime = _pins(ROOT / "requirements-runtime.lock")
    dev = _pins(ROOT / "requirements.lock")
    assert {"pydantic", "psycopg", "boto3", "typer", "structlog", "apscheduler"} <= set(runtime)
    mismatched = {
        name: (version, dev.get(name))
        for name, version in runtime.items()
        if dev.get(name) != version
    }
    assert mismatched == {}


def test_dockerfile_lints_clean_and_uses_the_lock() -> None:
    """hadolint finds nothing; the image installs from requirements-runtime.lock as non-root."""
    hadolint = str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        hadolint = shutil.which("hadolint") or "hadolint"
    result = subprocess.run(
        [hadolint, str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = (ROOT / "Dockerfile").read_text()
    assert "-r requirements-runtime.lock" in text
    assert re.search(r"^USER 10001", text, re.MULTILINE)


def test_makefile_test_target_uses_the_lock() -> None:
    """`make test` installs from requirements.lock (so CI and the demo get the same versions)."""
    makefile = (ROOT / "Makefile").read_text()
    assert "-r requirements.lock" in makefile
    assert re.search(r"^test: deps", makefile, re.MULTILINE)
