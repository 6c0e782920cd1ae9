"""The local sandbox: a scratch PostgreSQL server that only the drill agent can reach.

The restored copy listens on a unix socket in its own directory and on no TCP address
(``listen_addresses = ''``), has archiving off and its own port number, so nothing -
not the application, not its cron - can connect before it is neutralized. Processes run
as the PostgreSQL OS user. ``teardown`` stops the server (immediate) and removes the
directory; it is idempotent and safe after any failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from drd import command
from drd.errors import CommandError, PostgresError
from drd.fsutil import make_dir


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
        command.run(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.root / "log" / "postgresql.log"),
                "-w",
                "-t",
                str(int(timeout)),
                "start",
            ],
            timeout=timeout + 15,
            user=self.os_user,
        )
        self.pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])

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
        """Wait (bounded) until recovery has ended and the server accepts writes."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with self.connect(timeout=5) as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if row is not None and row[0] is False:
                    return
            except psycopg.Error as exc:
                last = exc
            time.sleep(0.1)
        raise PostgresError(
            f"restored server did not finish recovery within {timeout:g}s"
            + (f" (last error: {last})" if last else ""),
            hint=f"see {self.root / 'log' / 'postgresql.log'}",
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.root / "log" / "postgresql.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def teardown(self, *, keep: bool = False) -> None:
        if self.pid is not None and not keep:
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
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGQUIT)
            self.pid = None
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)
