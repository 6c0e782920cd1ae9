"""The object store interface the snapshot engine (and retention, evidence) writes through.

Keys are relative, '/'-separated paths (``data/3f/3fa9...``). Backends: ``filesystem``
(the embedded default), ``s3`` (boto3) and ``memory`` (the unit-test fake). Every
backend passes the same contract suite (tests/storage/test_contract.py).

Guarantees, grouped as callers rely on them:

Atomic (a reader sees the whole object or nothing, never a prefix):
    ``put``, ``put_if_absent``.
Conditional (at most one of several concurrent creators wins; the basis of locks):
    ``put_if_absent`` returns False when the key exists. The filesystem backend uses
    ``link()``/``O_EXCL``; S3 uses ``If-None-Match: *``.
Idempotent:
    ``delete`` (deleting a missing key is not an error), ``set_lifecycle``.
Bounded in time:
    every network call has a timeout and goes through the shared retry policy.
Reads:
    ``get``/``get_range`` raise ``ObjectNotFoundError`` (a ``StorageError``) naming the
    key; ``head`` returns None for a missing key; ``list`` yields in key order.
Immutability (where supported, else ``StorageError``):
    ``put(..., retain_until=..., lock_mode=...)`` sets S3 Object Lock retention on
    the object version written.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from drd.errors import StorageError

LockMode = Literal["governance", "compliance"]


class ObjectNotFoundError(StorageError):
    """The key does not exist in the store."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime | None = None
    etag: str | None = None
    lock_mode: LockMode | None = None
    retain_until: datetime | None = None


@dataclass(frozen=True)
class LifecycleTransition:
    """Move objects under ``prefix`` to ``storage_class`` ``days`` after creation."""

    prefix: str
    days: int
    storage_class: str


def check_key(key: str) -> str:
    """Refuse keys that could escape a filesystem root or confuse S3 listings."""
    if not key or key.startswith("/") or key.endswith("/") or "\\" in key:
        raise StorageError(f"invalid object key {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise StorageError(f"invalid object key {key!r}")
    return key


class ObjectStore(ABC):
    """One bucket/prefix or one directory; see the module docstring for guarantees."""

    #: Human-readable location for messages (``s3://bucket/prefix``, a path); no secrets.
    location: str

    @abstractmethod
    def put(
        self,
        key: str,
        data: bytes,
        *,
        retain_until: datetime | None = None,
        lock_mode: LockMode | None = None,
    ) -> None:
        """Write (or replace) ``key`` atomically."""

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create ``key`` only if it does not exist; True if this call created it."""

    @abstractmethod
    def get(self, key: str) -> bytes: ...

    @abstractmethod
    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset``; fewer only at the end of the object."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None: ...

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in key order."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""

    def delete_many(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.delete(key)

    def set_lifecycle(self, transitions: Sequence[LifecycleTransition]) -> None:
        raise StorageError(f"{self.location}: storage-class lifecycle is not supported here")

    def get_lifecycle(self) -> builtins.list[LifecycleTransition]:
        return []

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (thread pools, sockets)."""
