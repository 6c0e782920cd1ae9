"""In-memory object store: the fake for unit tests (thread-safe, same contract).

Object Lock is modelled as S3 does it on an Object Lock bucket: every put is a new
version, and a lock belongs to the version it was put on. ``delete`` removes every
version of a key, so it is refused (``ObjectLockedError``) while *any* of them is
locked, even one an unlocked overwrite hid. ``object_lock=False`` behaves like a bucket
without Object Lock (lock arguments are refused); ``clock`` replaces the wall clock.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from drd.errors import StorageError
from drd.storage.base import (
    BucketLockStatus,
    LockMode,
    ObjectInfo,
    ObjectLockedError,
    ObjectNotFoundError,
    ObjectStore,
    check_key,
    check_lock_args,
)


@dataclass
class _Object:
    data: bytes
    modified: datetime
    mode: LockMode | None = None
    retain_until: datetime | None = None
    # locks of versions this one replaced: S3 keeps those versions until they expire
    hidden: list[tuple[LockMode, datetime]] = field(default_factory=list)


class MemoryStore(ObjectStore):
    def __init__(
        self,
        location: str = "memory://",
        *,
        object_lock: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.location = location
        self.object_lock = object_lock
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._objects: dict[str, _Object] = {}
        self.bytes_written = 0  # for tests that assert on upload volume
        self.puts = 0

    def _check_lock(self, retain_until: datetime | None, lock_mode: LockMode | None) -> bool:
        wanted = check_lock_args(self.location, retain_until, lock_mode)
        if wanted and not self.object_lock:
            raise StorageError(f"{self.location}: the bucket has no Object Lock configuration")
        return wanted

    def put(
        self,
        key: str,
        data: bytes,
        *,
        retain_until: datetime | None = None,
        lock_mode: LockMode | None = None,
    ) -> None:
        locked = self._check_lock(retain_until, lock_mode)
        now = self._clock()
        with self._lock:
            old = self._objects.get(check_key(key))
            hidden = [] if old is None else [*old.hidden, *_active(old, now)]
            self._objects[key] = _Object(
                bytes(data),
                now,
                lock_mode if locked else None,
                retain_until if locked else None,
                hidden,
            )
            self.bytes_written += len(data)
            self.puts += 1

    def put_if_absent(self, key: str, data: bytes) -> bool:
        with self._lock:
            if check_key(key) in self._objects:
                return False
            self._objects[key] = _Object(bytes(data), self._clock())
            self.bytes_written += len(data)
            self.puts += 1
            return True

    def get(self, key: str) -> bytes:
        with self._lock:
            try:
                return self._objects[check_key(key)].data
            except KeyError:
                raise ObjectNotFoundError(f"{self.location}: object {key} not found") from None

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        return self.get(key)[offset : offset + length]

    def head(self, key: str) -> ObjectInfo | None:
        with self._lock:
            item = self._objects.get(check_key(key))
        if item is None:
            return None
        return ObjectInfo(
            key,
            len(item.data),
            item.modified,
            hashlib.md5(item.data).hexdigest(),  # noqa: S324 - S3's ETag of a plain PUT
            item.mode,
            item.retain_until,
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        with self._lock:
            keys = sorted(k for k in self._objects if k.startswith(prefix))
        for key in keys:
            info = self.head(key)
            if info is not None:
                yield info

    def delete(self, key: str) -> None:
        now = self._clock()
        with self._lock:
            item = self._objects.get(check_key(key))
            if item is None:
                return
            locks = [*_active(item, now), *item.hidden]
            locks = [(mode, until) for mode, until in locks if until > now]
            if locks:
                mode, until = max(locks, key=lambda lock: lock[1])
                raise ObjectLockedError(key, until, mode, location=self.location)
            del self._objects[key]

    # -- immutability ------------------------------------------------------------------

    def bucket_lock_status(self) -> BucketLockStatus:
        return BucketLockStatus(self.location, self.object_lock, self.object_lock)

    def set_retention(self, key: str, retain_until: datetime, mode: LockMode) -> bool:
        self._check_lock(retain_until, mode)
        now = self._clock()
        with self._lock:
            item = self._objects.get(check_key(key))
            if item is None:
                raise ObjectNotFoundError(f"{self.location}: object {key} not found")
            active = item.retain_until is not None and item.retain_until > now
            if active and item.retain_until is not None and item.retain_until >= retain_until:
                return False
            if active and item.mode is not None:
                mode = item.mode  # an active lock keeps its mode, as on S3
            item.mode, item.retain_until = mode, retain_until
            return True


def _active(item: _Object, now: datetime) -> list[tuple[LockMode, datetime]]:
    if item.mode is not None and item.retain_until is not None and item.retain_until > now:
        return [(item.mode, item.retain_until)]
    return []
