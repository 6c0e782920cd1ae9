"""The command runner: timeouts kill the process group, codes are checked, secrets stay out."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from drd import command
from drd.errors import CommandError, DrdError
from drd.redact import register_secret
from drd.testing.processes import pid_alive


def test_success_captures_output() -> None:
    """stdout and stderr are captured and the code returned."""
    result = command.run(
        [sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"],
        timeout=30,
    )
    assert result.returncode == 0
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"


def test_unexpected_code_raises_with_stderr_tail() -> None:
    """A code outside ok_codes raises CommandError with the code and the last stderr line."""
    with pytest.raises(CommandError) as info:
        command.run(
            [sys.executable, "-c", "import sys; sys.stderr.write('boom here\\n'); sys.exit(3)"],
            timeout=30,
        )
    assert info.value.returncode == 3
    assert "exited with code 3: boom here" in str(info.value)


def test_allowed_codes_do_not_raise() -> None:
    """ok_codes widens what counts as success."""
    assert (
        command.run(
            [sys.executable, "-c", "raise SystemExit(5)"], timeout=30, ok_codes=(0, 5)
        ).returncode
        == 5
    )


def test_timeout_kills_the_whole_process_group(tmp_path: object) -> None:
    """A command past its timeout is killed with its children (no orphans left)."""
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    with pytest.raises(CommandError, match="timed out after 1s") as info:
        command.run([sys.executable, "-c", script], timeout=1)
    assert info.value.returncode is None


def test_child_of_timed_out_command_is_gone() -> None:
    """The grandchild of a killed command does not survive it."""
    marker = f"/tmp/drd-test-child-{os.getpid()}"
    script = (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({marker!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    with pytest.raises(CommandError):
        command.run([sys.executable, "-c", script], timeout=1.5)
    with open(marker) as handle:
        child = int(handle.read())
    os.unlink(marker)
    deadline = time.monotonic() + 10
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(child)


def test_cancel_stops_the_command() -> None:
    """Setting the cancel event ends a running command promptly."""
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    with pytest.raises(CommandError, match="cancelled"):
        command.run(
            [sys.executable, "-c", "import time; time.sleep(60)"], timeout=60, cancel=cancel
        )


def test_secret_on_command_line_is_refused() -> None:
    """An argument carrying a registered secret is refused before anything runs."""
    register_secret("hunter2-very-secret")
    with pytest.raises(DrdError, match="refusing to pass a secret") as info:
        command.run(["echo", "--cipher=hunter2-very-secret"], timeout=5)
    assert "hunter2" not in str(info.value)


def test_secret_in_error_output_is_redacted() -> None:
    """stderr echoed into the error message is redacted."""
    register_secret("leaky-secret-value")
    with pytest.raises(CommandError) as info:
        command.run(
            [sys.executable, "-c", "import os,sys; sys.stderr.write(os.environ['X']); sys.exit(1)"],
            timeout=30,
            env={"X": "auth failed for leaky-secret-value"},
        )
    assert "leaky-secret-value" not in str(info.value)
    assert "***" in str(info.value)


def test_missing_program_is_a_command_error() -> None:
    """A program that does not exist raises CommandError, not OSError."""
    with pytest.raises(CommandError, match="cannot start"):
        command.run(["/nonexistent/program"], timeout=5)
