"""Ports, bounded waits, scratch directories and a registry of started processes."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from drd.fsutil import make_dir

T = TypeVar("T")

_port_lock = threading.Lock()
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now and not handed out before by this process."""
    with _port_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError("no free port found")


def wait_until(
    predicate: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
) -> T:
    """Poll ``predicate`` until it returns a truthy value; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as exc:
            last_error = exc
        else:
            if value:
                return value
        time.sleep(interval)
    detail = f" (last error: {last_error})" if last_error else ""
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}{detail}")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class ProcessRegistry:
    """PIDs of everything the harness started, so nothing outlives a failed test."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pids: dict[int, str] = {}

    def add(self, pid: int, label: str) -> None:
        with self._lock:
            self._pids[pid] = label

    def discard(self, pid: int) -> None:
        with self._lock:
            self._pids.pop(pid, None)

    def alive(self) -> dict[int, str]:
        with self._lock:
            return {pid: label for pid, label in self._pids.items() if pid_alive(pid)}

    def kill_all(self, timeout: float = 10.0) -> None:
        with self._lock:
            pids = list(self._pids)
        for pid in pids:
            stop_pid(pid, timeout=timeout)
            self.discard(pid)


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie.

    A server started by ``pg_ctl`` is not our child: once it exits it may linger as a
    zombie until its parent (often PID 1 in a container) reaps it, so ``kill(pid, 0)``
    alone would call it alive. We never reap here: that belongs to the Popen owner.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def stop_pid(pid: int, *, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Send ``sig``, wait (bounded), then SIGKILL. Safe on already-dead PIDs."""
    for current, wait in ((sig, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, current)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.05)


REGISTRY = ProcessRegistry()
atexit.register(REGISTRY.kill_all)


class Scratch:
    """A scratch directory that the ``postgres`` OS user can traverse.

    pytest's ``tmp_path`` lives under a root-only (0700) directory, which PostgreSQL
    running as ``postgres`` cannot enter; this one is 0755 under the system temp dir.
    """

    def __init__(self, prefix: str = "drd-") -> None:
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        os.chmod(self.path, 0o755)  # noqa: S103 - the postgres OS user must traverse it

    def dir(self, name: str, *, owner: str | None = None, mode: int = 0o755) -> Path:
        return make_dir(self.path / name, owner=owner, mode=mode)

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
