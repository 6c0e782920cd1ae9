"""Real PostgreSQL 15 clusters for tests and the demo.

Server-side commands run as the ``postgres`` OS user when we are root (initdb refuses
root); each cluster has its own port and unix socket directory and listens on
127.0.0.1 only. Every wait is bounded.
"""

from __future__ import annotations

import os
import pwd
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from drd import command
from drd.config.models import DEFAULT_PG_BIN
from drd.errors import CommandError, PostgresError
from drd.testing.processes import REGISTRY, Scratch, free_port, stop_pid, wait_until


def default_os_user() -> str:
    """``postgres`` when we are root, otherwise whoever we are."""
    return "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


def _conf_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


@dataclass
class PgCluster:
    """One PostgreSQL cluster in a scratch directory; create with ``PgCluster.create``."""

    name: str
    root: Path
    port: int
    os_user: str = field(default_factory=default_os_user)
    bin_dir: Path = DEFAULT_PG_BIN
    pid: int | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_file(self) -> Path:
        return self.root / "log" / "postgresql.log"

    @classmethod
    def allocate(cls, scratch: Scratch, name: str, *, os_user: str | None = None) -> PgCluster:
        """Reserve a port and directories (empty data dir) without running initdb."""
        user = os_user or default_os_user()
        root = scratch.dir(name, owner=user, mode=0o755)
        cluster = cls(name=name, root=root, port=free_port(), os_user=user)
        scratch.dir(f"{name}/run", owner=user, mode=0o755)
        scratch.dir(f"{name}/log", owner=user, mode=0o755)
        scratch.dir(f"{name}/data", owner=user, mode=0o700)
        return cluster

    @classmethod
    def create(
        cls,
        scratch: Scratch,
        name: str,
        *,
        archive_command: str | None = None,
        settings: Mapping[str, str | int | bool] | None = None,
    ) -> PgCluster:
        cluster = cls.allocate(scratch, name)
        cluster.initdb(archive_command=archive_command, settings=settings)
        return cluster

    # -- server control ------------------------------------------------------------

    def _bin(self, program: str) -> str:
        return str(self.bin_dir / program)

    def _run(self, args: Sequence[str], timeout: float = 120) -> command.CommandResult:
        return command.run(args, timeout=timeout, user=self.os_user, error_cls=_PgCommandError)

    def initdb(
        self,
        *,
        archive_command: str | None = None,
        settings: Mapping[str, str | int | bool] | None = None,
    ) -> None:
        self._run(
            [
                self._bin("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ]
        )
        base: dict[str, str | int | bool] = {
            "wal_level": "replica",
            "max_wal_senders": 10,
            "max_replication_slots": 10,
            "wal_keep_size": "64MB",
            "hot_standby": True,
            "archive_mode": archive_command is not None,
            "archive_command": archive_command or "",
            # Test clusters trade durability for speed; every other behaviour is real.
            "fsync": False,
            "synchronous_commit": False,
            "full_page_writes": True,
            "shared_buffers": "32MB",
            "max_connections": 40,
            "log_min_messages": "warning",
        }
        base.update(settings or {})
        self.configure(base, file="postgresql.conf")

    def configure(
        self, settings: Mapping[str, str | int | bool], *, file: str = "postgresql.auto.conf"
    ) -> None:
        """Append settings; later lines win, and ``postgresql.auto.conf`` wins over the rest.

        Port, listen address and socket directory are always (re)written, because restored
        and standby copies inherit them from the primary.
        """
        own: dict[str, str | int | bool] = {
            "port": self.port,
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.socket_dir),
        }
        lines = [f"{key} = {_conf_value(value)}" for key, value in {**own, **settings}.items()]
        target = self.data_dir / file
        with target.open("a", encoding="utf-8") as handle:
            handle.write("\n# drd harness\n" + "\n".join(lines) + "\n")

    def start(self, timeout: float = 60) -> None:
        self._run(
            [
                self._bin("pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                str(int(timeout)),
                "start",
            ],
            timeout=timeout + 10,
        )
        self.pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        REGISTRY.add(self.pid, f"postgres {self.name}")

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """Stop the server (``fast`` or ``immediate``); kill it by PID if pg_ctl fails."""
        if self.pid is None:
            return
        try:
            self._run(
                [
                    self._bin("pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    mode,
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "stop",
                ],
                timeout=timeout + 10,
            )
        except _PgCommandError:
            stop_pid(self.pid, sig=signal.SIGQUIT)
        REGISTRY.discard(self.pid)
        self.pid = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- SQL -----------------------------------------------------------------------

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname} connect_timeout=10"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(self.conninfo(dbname), autocommit=True)

    def execute(
        self, sql: str, params: Sequence[Any] | None = None, *, dbname: str = "postgres"
    ) -> None:
        with self.connect(dbname) as conn:
            conn.execute(sql.encode(), params)

    def query(
        self, sql: str, params: Sequence[Any] | None = None, *, dbname: str = "postgres"
    ) -> list[tuple[Any, ...]]:
        with self.connect(dbname) as conn:
            return conn.execute(sql.encode(), params).fetchall()

    def scalar(
        self, sql: str, params: Sequence[Any] | None = None, *, dbname: str = "postgres"
    ) -> Any:
        rows = self.query(sql, params, dbname=dbname)
        return rows[0][0] if rows else None

    def wait_ready(self, timeout: float = 60) -> None:
        wait_until(
            lambda: self.scalar("SELECT 1") == 1,
            timeout=timeout,
            what=f"{self.name} to accept queries",
        )

    def wait_out_of_recovery(self, timeout: float = 120) -> None:
        wait_until(
            lambda: self.scalar("SELECT NOT pg_is_in_recovery()"),
            timeout=timeout,
            what=f"{self.name} to finish recovery",
        )

    def switch_wal_and_wait_archived(self, timeout: float = 60) -> str:
        """Switch to a new WAL segment (own statement) and wait until it is archived.

        Returns the name of the segment that was switched out. A commit and
        ``pg_switch_wal()`` in one statement would share a transaction, so the commit
        would not be in the switched segment: callers commit first, then call this.
        """
        segment = str(self.scalar("SELECT pg_walfile_name(pg_switch_wal())"))

        def archived() -> bool:
            last = str(self.scalar("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver"))
            # Segment names are TTTTTTTT + 16 hex digits of position; positions only grow,
            # across timelines too. A backup history file ("<segment>.00000028.backup") is
            # archived after its segment; a timeline history file ("00000002.history") says
            # nothing about positions.
            name = last[:24]
            if len(name) < 24 or not all(c in "0123456789ABCDEF" for c in name):
                return False
            return name[8:] >= segment[8:]

        try:
            wait_until(archived, timeout=timeout, what=f"WAL segment {segment} to be archived")
        except TimeoutError as exc:
            failed = self.query("SELECT last_failed_wal, failed_count FROM pg_stat_archiver")[0]
            raise PostgresError(
                f"{exc}; archiver failures: {failed}; server log:\n{self.log_tail()}"
            ) from exc
        return segment

    # -- replicas --------------------------------------------------------------------

    def make_standby(self, scratch: Scratch, name: str, timeout: float = 120) -> PgCluster:
        """A streaming standby via ``pg_basebackup -R``, on its own port, not archiving."""
        standby = PgCluster.allocate(scratch, name, os_user=self.os_user)
        standby.bin_dir = self.bin_dir
        self._run(
            [
                self._bin("pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-D",
                str(standby.data_dir),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ],
            timeout=timeout,
        )
        standby.configure({"archive_mode": False})
        standby.start()
        standby.wait_ready()
        return standby


class _PgCommandError(CommandError):
    """A PostgreSQL server program (initdb, pg_ctl, pg_basebackup) failed."""
