"""Repository locks: many snapshots at once, or one prune, never both.

Scheme (restic-like, on any ObjectStore): a lock is an object ``locks/<random id>``
holding JSON ``{kind, host, pid, workload, created, refreshed}``.

* ``shared`` (snapshot create): refused while a live ``exclusive`` lock exists.
  Several shared locks coexist, so concurrent snapshots of different workloads into
  one repository are safe: packs and index objects are content-addressed and never
  overwritten with other content.
* ``exclusive`` (prune/GC): written, then every *other* live lock is looked for; if
  any exists the exclusive lock is removed again and ``LockError`` raised. A shared
  locker checks for exclusive locks *after* writing its own, so of two racing lockers
  at least one sees the other and backs off.
* Liveness: the holder rewrites its lock every ``REFRESH`` seconds. A lock not
  refreshed for ``STALE`` seconds, or one from this host whose PID is gone, is stale:
  ignored by others and deleted by the next exclusive locker. Pack objects written by
  a crashed snapshot are unreferenced; GC removes them only under an exclusive lock,
  and never while any live shared lock exists.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Literal

from drd.errors import LockError, StorageError
from drd.log import get_logger
from drd.storage import ObjectStore

log = get_logger("drd.snapshot.lock")

REFRESH = 300.0
STALE = timedelta(minutes=30)
LockKind = Literal["shared", "exclusive"]


@dataclass(frozen=True)
class LockInfo:
    key: str
    kind: LockKind
    host: str
    pid: int
    workload: str | None
    refreshed: datetime

    def stale(self, now: datetime) -> bool:
        if now - self.refreshed > STALE:
            return True
        if self.host == socket.gethostname():
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return False

    def describe(self) -> str:
        who = f"{self.host} pid {self.pid}" + (f" ({self.workload})" if self.workload else "")
        when = f"{self.refreshed:%Y-%m-%d %H:%M:%SZ}"
        return f"{self.kind} lock {self.key} held by {who}, refreshed {when}"


def list_locks(store: ObjectStore) -> list[LockInfo]:
    out = []
    for info in store.list("locks/"):
        try:
            doc = json.loads(store.get(info.key))
            out.append(
                LockInfo(
                    key=info.key,
                    kind=doc["kind"],
                    host=str(doc["host"]),
                    pid=int(doc["pid"]),
                    workload=doc.get("workload"),
                    refreshed=datetime.fromisoformat(doc["refreshed"]),
                )
            )
        except (ValueError, KeyError, TypeError):
            log.warning("lock_unreadable", key=info.key)
        except StorageError:
            continue  # deleted between list and get: released meanwhile
    return out


class RepositoryLock:
    """Context manager holding one lock, refreshed in the background until released."""

    def __init__(self, store: ObjectStore, kind: LockKind, *, workload: str | None = None) -> None:
        self.store = store
        self.kind = kind
        self.workload = workload
        self.key = f"locks/{secrets.token_hex(16)}"
        self.created = datetime.now(UTC)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self) -> None:
        doc = {
            "kind": self.kind,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "workload": self.workload,
            "created": self.created.isoformat(),
            "refreshed": datetime.now(UTC).isoformat(),
        }
        self.store.put(self.key, json.dumps(doc).encode())

    def _conflicts(self) -> list[LockInfo]:
        now = datetime.now(UTC)
        others = [lock for lock in list_locks(self.store) if lock.key != self.key]
        live = [lock for lock in others if not lock.stale(now)]
        if self.kind == "exclusive":
            for lock in others:
                if lock.stale(now):
                    log.info("stale_lock_removed", lock=lock.describe())
                    self.store.delete(lock.key)
            return live
        return [lock for lock in live if lock.kind == "exclusive"]

    def acquire(self) -> RepositoryLock:
        self._write()
        conflicts = self._conflicts()
        if conflicts:
            self.store.delete(self.key)
            raise LockError(
                f"repository {self.store.location} is locked: {conflicts[0].describe()}",
                hint="wait for it to finish; a lock not refreshed for 30 minutes is ignored",
            )
        self._thread = threading.Thread(target=self._refresh, name="drd-lock-refresh", daemon=True)
        self._thread.start()
        return self

    def _refresh(self) -> None:
        while not self._stop.wait(REFRESH):
            try:
                self._write()
            except Exception as exc:
                log.warning("lock_refresh_failed", key=self.key, error=str(exc))

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.store.delete(self.key)

    def __enter__(self) -> RepositoryLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
