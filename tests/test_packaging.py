"""Packaging: the Dockerfile lints clean and every install path uses the same locked versions."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
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


def test_wheel_ships_every_data_file() -> None:
    """The image installs drd from its wheel: every non-Python file under drd/ (templates ...)
    must be package data in pyproject.toml, or the installed daemon cannot find it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data: dict[str, list[str]] = config["tool"]["setuptools"]["package-data"]
    shipped = {
        path
        for package, patterns in package_data.items()
        for pattern in patterns
        for path in (ROOT / package.replace(".", "/")).glob(pattern)
    }
    data_files = {
        path
        for path in (ROOT / "drd").rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    }
    missing = sorted(str(p.relative_to(ROOT)) for p in data_files - shipped)
    assert missing == [], f"add to [tool.setuptools.package-data] in pyproject.toml: {missing}"


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_installs_drd_from_a_wheel() -> None:
    """Multi-stage: the build stage builds drd's wheel and installs it; no source install."""
    steps = _instructions()
    stages = [args for op, args in steps if op == "FROM"]
    assert stages == ["python:3.11-slim-bookworm AS build", "python:3.11-slim-bookworm"]
    commands = [
        " ".join(command.split())
        for op, args in steps
        if op == "RUN"
        for command in args.split("&&")
    ]
    assert "/opt/drd/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels ." in commands
    assert "/opt/drd/bin/pip install --no-cache-dir --no-deps /wheels/drd-*.whl" in commands
    installs = [c for c in commands if " install " in c and "pip" in c]
    assert installs
    for command in installs:
        assert not re.search(r"\s(-e|--editable)\b", command), command
        assert not re.search(r"\s\.(/)?$", command), f"drd must come from the wheel: {command}"
    assert ("COPY", "--from=build /opt/drd /opt/drd") in steps
    assert ("COPY", "tiers /etc/drd/tiers") in steps


def test_dockerfile_runtime_has_postgres_pgbackrest_and_runs_drd() -> None:
    """PostgreSQL 15 server and client, pgBackRest; uid 10001 (the drill Jobs' uid); drd."""
    from drd.drill.kubernetes import RUN_AS_USER

    steps = _instructions()
    runs = " ".join(args for op, args in steps if op == "RUN")
    for package in ("pgbackrest", "postgresql-15", "postgresql-client-15"):
        assert re.search(rf"apt-get install [^&]*\b{package}\b", runs), package
    assert f"useradd --system --uid {RUN_AS_USER}" in runs
    assert ("USER", f"{RUN_AS_USER}:{RUN_AS_USER}") in steps
    assert ("ENTRYPOINT", '["drd"]') in steps
    assert ("CMD", '["daemon"]') in steps
    env = " ".join(args for op, args in steps if op == "ENV")
    assert "DRD_CONFIG=/etc/drd/drd.yaml" in env


def _healthcheck_code() -> str:
    (args,) = [args for op, args in _instructions() if op == "HEALTHCHECK"]
    assert "curl" not in args
    exec_form = json.loads(args[args.index("CMD") + len("CMD") :].strip())
    assert exec_form[:2] == ["python", "-c"]
    code: str = exec_form[2]
    assert "http://127.0.0.1:9187/healthz" in code  # DaemonSettings' default address
    return code


def test_dockerfile_healthcheck_calls_healthz() -> None:
    """The HEALTHCHECK's Python one-liner exits 0 on a 200 from /healthz, non-zero otherwise."""
    code = _healthcheck_code()
    statuses = {"/healthz": 200, "/broken": 503}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(statuses.get(self.path, 404))
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    def check(url: str) -> int:
        env = {**os.environ, "DRD_HEALTHCHECK_URL": url}
        run = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, timeout=30, check=False
        )
        return run.returncode

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert check(f"http://127.0.0.1:{port}/healthz") == 0
        assert check(f"http://127.0.0.1:{port}/broken") != 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert check(f"http://127.0.0.1:{port}/healthz") != 0  # nothing listening


def test_makefile_test_target_uses_the_lock() -> None:
    """`make test` installs from requirements.lock (so CI and the demo get the same versions)."""
    makefile = (ROOT / "Makefile").read_text()
    assert "-r requirements.lock" in makefile
    assert re.search(r"^test: deps", makefile, re.MULTILINE)
