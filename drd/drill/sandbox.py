"""The local sandbox: a scratch PostgreSQL server that only the drill agent can reach.

The restored copy listens on a unix socket in its own directory and on no TCP address
(``listen_addresses = ''``), has archiving off and its own port number, so nothing -
not the application, not its cron - can connect before it is neutralized. Processes run
as the PostgreSQL OS user. ``teardown`` stops the server (immediate: the copy is thrown
away) and removes the directory; it is idempotent and safe after any failure, including
an interrupted start.

Waiting is polled finely (10 ms; ``pg_ctl -w`` polls every 100 ms): the RTO is measured
to the moment the copy is verified, so coarse polling would be measured as recovery.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from drd import command
from drd.errors import CommandError, PostgresError
from drd.fsutil import make_dir
from drd.log import get_logger

log = get_logger("drd.drill.sandbox")

_POLL = 0.01  # pid file, and pg_is_in_recovery() on an open connection
_CONNECT_POLL = 0.05  # between connection attempts (each refused one costs a backend fork)
_STOP_TIMEOUT = 15.0  # an immediate shutdown SIGKILLs stuck children after 5 s
_PM_STATUS_LINE = 7  # postmaster.pid: "starting", "ready" (accepting connections), ...
_UNLINK_THREADS = 4


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalSandbox:
    root: Path
    os_user: str
    bin_dir: Path
    port: int
    pid: int | None = None
    #: ``pg_ctl -w start``, running in a helper thread (see ``start``).
    _launch: Future[None] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def provision(cls, base: Path, drill_id: str, *, os_user: str, bin_dir: Path) -> LocalSandbox:
        make_dir(base, mode=0o711)
        root = make_dir(base / drill_id, owner=os_user, mode=0o711)
        for sub, mode in (("data", 0o700), ("run", 0o700), ("log", 0o700)):
            make_dir(root / sub, owner=os_user, mode=mode)
        make_dir(root / "filestore", mode=0o700)
        return cls(root=root, os_user=os_user, bin_dir=bin_dir, port=free_port())

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def filestore(self) -> Path:
        return self.root / "filestore"

    @property
    def log_file(self) -> Path:
        return self.root / "log" / "postgresql.log"

    def isolate(self) -> None:
        """Own port, unix socket only, no archiving: appended last, so it wins."""
        settings = {
            "port": str(self.port),
            "listen_addresses": "''",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "archive_mode": "off",
            "archive_command": "''",
        }
        with (self.data_dir / "postgresql.auto.conf").open("a", encoding="utf-8") as handle:
            handle.write("\n# drd drill sandbox\n")
            handle.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def start(self, timeout: float) -> None:
        """Start the server; return once it accepts connections (it may still be in recovery).

        ``pg_ctl -w start`` runs in a helper thread: it is what notices a server that
        exits before accepting connections, and its error is raised here as before. The
        pid file says when the server accepts connections, read every 10 ms instead of
        waiting for pg_ctl's next 100 ms check.
        """
        argv = [
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(int(timeout)),
            "start",
        ]
        launch: Future[None] = Future()

        def run() -> None:
            try:
                command.run(argv, timeout=timeout + 15, user=self.os_user)
            except BaseException as exc:  # handed to the waiting thread
                launch.set_exception(exc)
            else:
                launch.set_result(None)

        self._launch = launch
        threading.Thread(target=run, name="drd-drill-pg-ctl", daemon=True).start()
        deadline = time.monotonic() + timeout + 15
        while time.monotonic() < deadline:
            if launch.done():
                launch.result()  # pg_ctl's error: the server did not start
                break
            pid, status = self._pid_file()
            if pid is not None:
                self.pid = pid
            if status in ("ready", "standby"):  # what pg_ctl -w waits for
                return
            time.sleep(_POLL)
        else:
            raise PostgresError(
                f"restored server did not start within {timeout:g}s",
                hint=f"see {self.log_file}",
            )
        self.pid = self._pid_file()[0] or self.pid

    def connect(self, dbname: str = "postgres", *, timeout: float = 10) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user="postgres",
            dbname=dbname,
            connect_timeout=int(timeout),
            autocommit=True,
        )

    def wait_promoted(self, timeout: float) -> None:
        """Wait (bounded) until recovery has ended and the server accepts writes.

        One connection, asked ``pg_is_in_recovery()`` every 10 ms (a session opened
        during hot standby sees the promotion). A server that stops meanwhile (a FATAL
        error in recovery) fails the wait at once rather than at the timeout.
        """
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        conn: psycopg.Connection[Any] | None = None
        try:
            while time.monotonic() < deadline:
                if conn is None:
                    try:
                        conn = self.connect(timeout=5)
                    except psycopg.Error as exc:
                        last = exc
                if conn is not None:
                    try:
                        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                    except psycopg.Error as exc:
                        last = exc
                        conn.close()
                        conn = None
                    else:
                        if row is not None and row[0] is False:
                            return
                if not self._running():
                    raise PostgresError(
                        "restored server stopped before recovery ended"
                        + (f" (last error: {last})" if last else ""),
                        hint=f"see {self.log_file}",
                    )
                time.sleep(_POLL if conn is not None else _CONNECT_POLL)
        finally:
            if conn is not None:
                conn.close()
        raise PostgresError(
            f"restored server did not finish recovery within {timeout:g}s"
            + (f" (last error: {last})" if last else ""),
            hint=f"see {self.log_file}",
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def teardown(self, *, keep: bool = False) -> None:
        """Stop the server (immediate shutdown) and remove the sandbox; idempotent."""
        if keep:
            return
        launch, self._launch = self._launch, None
        if launch is not None and self.pid is None:
            # Interrupted right after pg_ctl was started: let the postmaster write its
            # pid file (or fail) so that it can be stopped, not left behind.
            deadline = time.monotonic() + 5
            while not launch.done() and self._pid_file()[0] is None:
                if time.monotonic() > deadline:
                    break
                time.sleep(_POLL)
        pid = self._pid_file()[0]  # the live pid file, as pg_ctl stop reads it
        if pid is not None and self._is_postmaster(pid):
            self._stop(pid)
        self.pid = None
        if launch is not None:
            with contextlib.suppress(Exception):
                launch.exception(timeout=10)  # pg_ctl notices the stop and exits
        _remove_tree(self.root)

    # -- internals --------------------------------------------------------------------

    def _pid_file(self) -> tuple[int | None, str | None]:
        """The postmaster's pid and status from ``postmaster.pid`` (None when absent)."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            return None, None
        pid = int(lines[0]) if lines and lines[0].strip().isdigit() else None
        status = lines[_PM_STATUS_LINE].strip() if len(lines) > _PM_STATUS_LINE else None
        return pid, status

    def _running(self) -> bool:
        pid = self._pid_file()[0]
        return pid is not None and self._is_postmaster(pid)

    def _is_postmaster(self, pid: int) -> bool:
        """Whether ``pid`` is this sandbox's live postmaster: it works in the data
        directory (a zombie has no working directory, a reused pid another one). Where
        /proc cannot tell, whether the process exists, as pg_ctl checks."""
        try:
            return os.readlink(f"/proc/{pid}/cwd") == os.path.realpath(self.data_dir)
        except FileNotFoundError:
            if os.path.isdir("/proc/self"):
                return False  # gone, or a zombie
        except OSError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _stop(self, pid: int) -> None:
        """What ``pg_ctl -m immediate stop`` does (SIGQUIT), then wait for the pid file
        to go, polled every 10 ms instead of pg_ctl's 100 ms."""
        try:
            os.kill(pid, signal.SIGQUIT)
        except ProcessLookupError:
            return
        except PermissionError:  # not ours to signal: let pg_ctl do it as the OS user
            self._pg_ctl_stop(pid)
            return
        deadline = time.monotonic() + _STOP_TIMEOUT
        while self._running():
            if time.monotonic() > deadline:
                log.warning("drill_sandbox_stop_timeout", pid=pid, sandbox=str(self.root))
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                return
            time.sleep(_POLL)

    def _pg_ctl_stop(self, pid: int) -> None:
        try:
            command.run(
                [
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
                timeout=60,
                user=self.os_user,
            )
        except CommandError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGQUIT)


def _remove_tree(root: Path) -> None:
    """``rm -rf root``: the files unlinked by a few threads (a restored data directory
    holds about a thousand; unlink waits on the file system and releases the GIL), then
    the directories. Symbolic links are removed, never followed."""
    files = [
        os.path.join(directory, name) for directory, _, names in os.walk(root) for name in names
    ]
    if len(files) > 64:
        with ThreadPoolExecutor(_UNLINK_THREADS, "drd-drill-rm") as pool:
            for _ in pool.map(_unlink, files, chunksize=32):
                pass
    shutil.rmtree(root, ignore_errors=True)


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
