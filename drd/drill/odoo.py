"""Odoo in a restored copy: neutralize it before anything can reach it, check its files.

A restored Odoo database is a live ERP the moment a server starts on it: its crons
would send reminders and invoices, its mail servers would send and fetch mail, and the
autovacuum cron's filestore GC deletes every file the database does not reference. So
a drill neutralizes the copy first, in one transaction, as Odoo's own
``odoo-bin neutralize`` does: every ``ir_cron`` and mail server inactive,
``database.is_neutralized`` set, and a new ``database.uuid`` (the copy must not pass
for production with licensing, IAP or the mobile apps).

``verify_attachments`` then checks that the restored filestore holds every file the
restored database references, with the right size and sha1 (Odoo names files by the
sha1 of their content; a name is not trusted without hashing the bytes).

Guarantees, by function:

- atomic: ``neutralize`` changes everything or nothing (one transaction).
- idempotent: ``neutralize`` run twice leaves the same state (a new uuid each time).
- bounded in time: ``neutralize`` runs under a statement timeout.
- read-only: ``verify_attachments`` never writes to the filestore, and never opens a
  path outside it: a ``store_fname`` that is absolute, contains ``..`` or resolves
  (through symlinks) outside the filestore root is reported as unsafe, not read.
"""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import psycopg

from drd.errors import PostgresError
from drd.log import get_logger
from drd.redact import redact

log = get_logger("drd.drill.odoo")

Connection = psycopg.Connection[Any]

#: Tables whose rows neutralize turns inactive, in order.
INACTIVE_TABLES = ("ir_cron", "ir_mail_server", "fetchmail_server")
CONFIG_TABLE = "ir_config_parameter"
READ_SIZE = 1024 * 1024
DEFAULT_TIMEOUT = 60.0

# Failure kinds in an AttachmentReport.
MISSING = "missing"
CORRUPT = "corrupt"
UNSAFE = "unsafe_path"
UNREADABLE = "unreadable"


# -- neutralize ----------------------------------------------------------------------


@dataclass(frozen=True)
class NeutralizeReport:
    """What ``neutralize`` changed: rows turned inactive per table, tables not there."""

    disabled: dict[str, int]
    missing_tables: tuple[str, ...]
    old_uuid: str | None
    new_uuid: str | None

    @property
    def flagged(self) -> bool:
        """``database.is_neutralized`` was set (False only without ir_config_parameter)."""
        return self.new_uuid is not None


def is_odoo_database(conn: Connection) -> bool:
    """True when the database has Odoo's ``ir_attachment`` and ``ir_config_parameter``."""
    try:
        row = conn.execute(
            b"SELECT to_regclass('ir_attachment') IS NOT NULL"
            b" AND to_regclass('ir_config_parameter') IS NOT NULL"
        ).fetchone()
    except psycopg.Error as exc:
        raise _error("checking for an Odoo database in", conn, exc) from exc
    return bool(row and row[0])


def neutralize(conn: Connection, *, timeout: float = DEFAULT_TIMEOUT) -> NeutralizeReport:
    """Make a restored Odoo copy harmless, in one transaction; return what changed.

    Run it before the copy is reachable by anything else (no Odoo server, no users).
    A table that does not exist is skipped and named in ``missing_tables``.
    """
    disabled: dict[str, int] = {}
    missing: list[str] = []
    old_uuid: str | None = None
    new_uuid: str | None = None
    try:
        with conn.transaction():
            conn.execute(
                b"SELECT set_config('statement_timeout', %s, true)", (f"{int(timeout * 1000)}",)
            )
            present = _existing_tables(conn, (*INACTIVE_TABLES, CONFIG_TABLE))
            for table in INACTIVE_TABLES:
                if table not in present:
                    missing.append(table)
                    continue
                sql = f"UPDATE {table} SET active = false WHERE active IS DISTINCT FROM false"
                cur = conn.execute(sql.encode())
                disabled[table] = cur.rowcount
            if CONFIG_TABLE in present:
                row = conn.execute(
                    b"SELECT value FROM ir_config_parameter WHERE key = 'database.uuid'"
                ).fetchone()
                old_uuid = str(row[0]) if row else None
                new_uuid = str(uuid.uuid4())
                for key, value in (
                    ("database.is_neutralized", "true"),
                    ("database.uuid", new_uuid),
                ):
                    conn.execute(
                        b"INSERT INTO ir_config_parameter (key, value) VALUES (%s, %s)"
                        b" ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                        (key, value),
                    )
            else:
                missing.append(CONFIG_TABLE)
    except psycopg.Error as exc:
        raise _error("neutralizing the Odoo database", conn, exc) from exc
    report = NeutralizeReport(disabled, tuple(missing), old_uuid, new_uuid)
    log.info(
        "odoo_neutralized",
        disabled=disabled,
        missing_tables=list(missing),
        flagged=report.flagged,
    )
    if missing:
        log.warning("odoo_neutralize_tables_missing", tables=list(missing))
    return report


def _existing_tables(conn: Connection, tables: Iterable[str]) -> set[str]:
    names = list(tables)
    rows = conn.execute(
        b"SELECT t FROM unnest(%s::text[]) AS t WHERE to_regclass(t) IS NOT NULL", (names,)
    ).fetchall()
    return {str(r[0]) for r in rows}


# -- attachments ---------------------------------------------------------------------


@dataclass(frozen=True)
class AttachmentProblem:
    """One ``ir_attachment`` row whose file is missing, corrupt, unsafe or unreadable."""

    attachment_id: int
    res_model: str | None
    store_fname: str
    kind: str
    reason: str


@dataclass(frozen=True)
class AttachmentReport:
    """Result of ``verify_attachments``; ``ok`` when no row has a problem.

    ``rows``: rows with a ``store_fname``; ``files``: distinct files checked;
    ``bytes``: bytes hashed; ``db_stored``: rows whose content is in the database.
    """

    rows: int
    files: int
    bytes: int
    db_stored: int
    problems: tuple[AttachmentProblem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def missing(self) -> tuple[AttachmentProblem, ...]:
        return tuple(p for p in self.problems if p.kind == MISSING)

    @property
    def corrupt(self) -> tuple[AttachmentProblem, ...]:
        return tuple(p for p in self.problems if p.kind == CORRUPT)

    @property
    def unsafe(self) -> tuple[AttachmentProblem, ...]:
        return tuple(p for p in self.problems if p.kind == UNSAFE)

    def by_model(self) -> dict[str, list[AttachmentProblem]]:
        """Problems grouped by ``res_model`` ('' for rows without one)."""
        grouped: dict[str, list[AttachmentProblem]] = defaultdict(list)
        for problem in self.problems:
            grouped[problem.res_model or ""].append(problem)
        return dict(grouped)

    def summary(self) -> str:
        """One line for logs and drill evidence."""
        if self.ok:
            return f"{self.rows} attachment rows, {self.files} files, {self.bytes} bytes: all ok"
        parts = ", ".join(
            f"{model or '(none)'}: {len(items)}" for model, items in sorted(self.by_model().items())
        )
        return (
            f"{len(self.problems)} of {self.rows} attachment rows failed "
            f"({len(self.missing)} missing, {len(self.corrupt)} corrupt, "
            f"{len(self.unsafe)} unsafe) by model: {parts}"
        )

    def describe(self, limit: int = 10) -> str:
        """``summary`` plus the first ``limit`` failing rows (id, model, file, reason)."""
        lines = [self.summary()]
        for p in self.problems[:limit]:
            lines.append(
                f"  #{p.attachment_id} {p.res_model or '(none)'} {p.store_fname}: "
                f"{p.kind}: {p.reason}"
            )
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Row:
    id: int
    res_model: str | None
    store_fname: str
    checksum: str | None
    file_size: int | None


@dataclass(frozen=True)
class _FileResult:
    size: int | None = None
    sha1: str | None = None
    kind: str | None = None  # a failure kind when the file could not be hashed
    reason: str = ""


def verify_attachments(
    conn: Connection, filestore_root: Path, *, workers: int = 4
) -> AttachmentReport:
    """Check every filestore-backed ``ir_attachment`` row against ``filestore_root``.

    Each distinct file is hashed once (sha1, 1 MiB reads, ``workers`` threads); every
    row sharing it is compared with the result, and each failing row is reported.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    try:
        rows = [
            _Row(int(r[0]), r[1], str(r[2]), r[3], None if r[4] is None else int(r[4]))
            for r in conn.execute(
                b"SELECT id, res_model, store_fname, checksum, file_size FROM ir_attachment"
                b" WHERE store_fname IS NOT NULL ORDER BY id"
            ).fetchall()
        ]
        db_row = conn.execute(
            b"SELECT count(*) FROM ir_attachment WHERE store_fname IS NULL"
        ).fetchone()
    except psycopg.Error as exc:
        raise _error("reading ir_attachment from", conn, exc) from exc
    db_stored = int(db_row[0]) if db_row else 0

    root = filestore_root.resolve()
    by_file: dict[str, list[_Row]] = defaultdict(list)
    for row in rows:
        by_file[row.store_fname].append(row)

    results: dict[str, _FileResult] = {}
    to_hash: dict[str, Path] = {}
    for fname in by_file:
        path_or_reason = _safe_path(root, fname)
        if isinstance(path_or_reason, str):
            results[fname] = _FileResult(kind=UNSAFE, reason=path_or_reason)
        else:
            to_hash[fname] = path_or_reason
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drd-sha1") as pool:
        for fname, result in zip(to_hash, pool.map(_hash_file, to_hash.values()), strict=True):
            results[fname] = result

    problems: list[AttachmentProblem] = []
    hashed_bytes = 0
    for fname, group in by_file.items():
        result = results[fname]
        if result.size is not None:
            hashed_bytes += result.size
        for row in group:
            problem = _compare(row, result)
            if problem is not None:
                problems.append(problem)
    problems.sort(key=lambda p: p.attachment_id)
    report = AttachmentReport(
        rows=len(rows),
        files=len(to_hash),
        bytes=hashed_bytes,
        db_stored=db_stored,
        problems=tuple(problems),
    )
    event = log.info if report.ok else log.warning
    event(
        "odoo_attachments_verified",
        rows=report.rows,
        files=report.files,
        bytes=report.bytes,
        problems=len(report.problems),
        summary=report.summary(),
    )
    return report


def _safe_path(root: Path, store_fname: str) -> Path | str:
    """The file's path under ``root``, or the reason it is refused (never opened)."""
    pure = PurePosixPath(store_fname)
    if (
        not store_fname
        or "\x00" in store_fname
        or "\\" in store_fname
        or pure.is_absolute()
        or ".." in pure.parts
    ):
        return (
            f"unsafe store_fname {store_fname!r}: absolute or contains '..'; "
            "not read (it would point outside the filestore)"
        )
    candidate = root.joinpath(*pure.parts)
    try:
        resolved = candidate.resolve()
    except (OSError, RuntimeError) as exc:  # symlink loop
        return f"unsafe store_fname {store_fname!r}: cannot resolve ({exc})"
    if not resolved.is_relative_to(root):
        return (
            f"unsafe store_fname {store_fname!r}: resolves outside the filestore "
            "(symlink); not read"
        )
    return resolved


def _hash_file(path: Path) -> _FileResult:
    try:
        st = path.stat()
    except FileNotFoundError:
        return _FileResult(kind=MISSING, reason=f"file {path} does not exist")
    except OSError as exc:
        return _FileResult(kind=UNREADABLE, reason=f"cannot stat {path}: {exc.strerror}")
    if not stat.S_ISREG(st.st_mode):
        return _FileResult(kind=CORRUPT, reason=f"{path} is not a regular file")
    digest = hashlib.sha1(usedforsecurity=False)
    size = 0
    buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    try:
        # O_NONBLOCK: a FIFO swapped in after the stat must not hang the drill.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
        with open(fd, "rb", buffering=0) as handle:
            while n := handle.readinto(view):
                digest.update(view[:n])
                size += n
    except OSError as exc:
        return _FileResult(kind=UNREADABLE, reason=f"cannot read {path}: {exc.strerror}")
    return _FileResult(size=size, sha1=digest.hexdigest())


def _compare(row: _Row, result: _FileResult) -> AttachmentProblem | None:
    def problem(kind: str, reason: str) -> AttachmentProblem:
        return AttachmentProblem(row.id, row.res_model, row.store_fname, kind, reason)

    if result.kind is not None:
        return problem(result.kind, result.reason)
    # Without a recorded checksum, Odoo's file name is the sha1: check against that.
    expected = (row.checksum or PurePosixPath(row.store_fname).name).strip().lower()
    if row.file_size is not None and result.size != row.file_size:
        return problem(CORRUPT, f"size {result.size} bytes, expected {row.file_size}")
    if len(expected) == 40 and result.sha1 != expected:
        return problem(CORRUPT, f"sha1 {result.sha1}, expected {expected}")
    return None


def _describe(conn: Connection) -> str:
    info = conn.info
    return f"{info.host}:{info.port}/{info.dbname}"


def _error(action: str, conn: Connection, exc: psycopg.Error) -> PostgresError:
    text = str(exc).strip()
    detail = redact(text.splitlines()[0] if text else type(exc).__name__)
    return PostgresError(f"{action} {_describe(conn)} failed: {detail}")
