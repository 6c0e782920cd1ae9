"""In-memory object store: the fake for unit tests (thread-safe, same contract)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

from drd.storage.base import LockMode, ObjectInfo, ObjectNotFoundError, ObjectStore, check_key


class MemoryStore(ObjectStore):
    def __init__(self, location: str = "memory://") -> None:
        self.location = location
        self._lock = threading.Lock()
        self._objects: dict[str, tuple[bytes, datetime]] = {}
        self.bytes_written = 0  # for tests that assert on upload volume
        self.puts = 0

    def put(
        self,
        key: str,
        data: bytes,
        *,
        retain_until: datetime | None = None,
        lock_mode: LockMode | None = None,
    ) -> None:
        del retain_until, lock_mode  # accepted, not enforced in memory
        with self._lock:
            self._objects[check_key(key)] = (bytes(data), datetime.now(UTC))
            self.bytes_written += len(data)
            self.puts += 1

    def put_if_absent(self, key: str, data: bytes) -> bool:
        with self._lock:
            if check_key(key) in self._objects:
                return False
            self._objects[key] = (bytes(data), datetime.now(UTC))
            self.bytes_written += len(data)
            self.puts += 1
            return True

    def get(self, key: str) -> bytes:
        with self._lock:
            try:
                return self._objects[check_key(key)][0]
            except KeyError:
                raise ObjectNotFoundError(f"{self.location}: object {key} not found") from None

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        return self.get(key)[offset : offset + length]

    def head(self, key: str) -> ObjectInfo | None:
        with self._lock:
            item = self._objects.get(check_key(key))
        if item is None:
            return None
        return ObjectInfo(key, len(item[0]), item[1], hashlib.md5(item[0]).hexdigest())  # noqa: S324

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        with self._lock:
            keys = sorted(k for k in self._objects if k.startswith(prefix))
        for key in keys:
            info = self.head(key)
            if info is not None:
                yield info

    def delete(self, key: str) -> None:
        with self._lock:
            self._objects.pop(check_key(key), None)
