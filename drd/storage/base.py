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
    the object version written; ``set_retention`` extends it later (never shortens);
    ``get_retention`` reads it; ``bucket_lock_status`` says whether the bucket can lock
    at all. ``delete`` of a locked object raises ``ObjectLockedError`` naming the key
    and the date: nothing is bypassed, ever. On an Object Lock bucket ``delete``
    removes the object's versions, not just the current name, so deleted data does not
    linger (and cost) as hidden versions.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from drd.errors import StorageError

LockMode = Literal["governance", "compliance"]


class ObjectNotFoundError(StorageError):
    """The key does not exist in the store."""


class ObjectLockUnsupportedError(StorageError):
    """This store cannot lock objects at all (a filesystem, a store without the API)."""


def format_lock_date(when: datetime) -> str:
    """A retain-until date as people and logs read it: ``2026-01-31T12:00:00Z``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ObjectLockedError(StorageError):
    """A delete was refused: Object Lock (retention or legal hold) protects the object.

    ``retain_until`` and ``mode`` are None for a legal hold (no date); ``others`` counts
    further locked objects of the same ``delete_many`` call.
    """

    def __init__(
        self,
        key: str,
        retain_until: datetime | None,
        mode: LockMode | None,
        *,
        location: str = "",
        legal_hold: bool = False,
        others: int = 0,
    ) -> None:
        if retain_until is not None:
            message = f"{key} is locked until {format_lock_date(retain_until)} ({mode})"
        else:
            message = f"{key} is locked (legal hold)" if legal_hold else f"{key} is locked"
        if location:
            message += f" in {location}"
        if others:
            message += f"; {others} more object(s) are locked too"
        super().__init__(
            message,
            hint="Object Lock cannot be bypassed by drd; the object can be deleted after "
            "its retain-until date (retention deletes it then)",
        )
        self.key = key
        self.retain_until = retain_until
        self.mode = mode
        self.legal_hold = legal_hold
        self.others = others


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime | None = None
    etag: str | None = None
    lock_mode: LockMode | None = None
    retain_until: datetime | None = None
    legal_hold: bool = False
    version_id: str | None = None

    def locked(self, now: datetime) -> bool:
        """True while Object Lock forbids deleting this version (at ``now``)."""
        if self.legal_hold:
            return True
        return self.retain_until is not None and self.retain_until > now


@dataclass(frozen=True)
class ObjectRetention:
    """An object version's Object Lock retention: mode and retain-until date."""

    mode: LockMode
    retain_until: datetime


@dataclass(frozen=True)
class BucketLockStatus:
    """What a bucket can do for immutability.

    Object Lock needs versioning (S3 turns it on with Object Lock, for good).
    ``default_mode``/``default_days`` are the bucket's default retention, if any
    (a default in years is given as 365 days a year).
    """

    bucket: str
    versioning: bool
    object_lock: bool
    default_mode: LockMode | None = None
    default_days: int | None = None

    @property
    def can_lock(self) -> bool:
        return self.versioning and self.object_lock


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


def check_lock_args(
    location: str, retain_until: datetime | None, lock_mode: LockMode | None
) -> bool:
    """True if a put asks for Object Lock; ``StorageError`` for half or naive arguments."""
    if retain_until is None and lock_mode is None:
        return False
    if retain_until is None or lock_mode is None:
        raise StorageError(f"{location}: object lock needs both retain_until and lock_mode")
    if retain_until.tzinfo is None:
        raise StorageError(f"{location}: retain_until must be timezone-aware")
    return True


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
        """Remove ``key``; a missing key is not an error, a locked one ``ObjectLockedError``."""

    def delete_many(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.delete(key)

    # -- immutability (S3 Object Lock; the memory fake too) -------------------------------

    def bucket_lock_status(self) -> BucketLockStatus:
        """Versioning and Object Lock of the bucket behind this store."""
        raise ObjectLockUnsupportedError(f"{self.location}: Object Lock is not supported here")

    def set_retention(self, key: str, retain_until: datetime, mode: LockMode) -> bool:
        """Lock ``key``'s current version until ``retain_until``; only ever extends.

        A later existing date is kept, and so is an active lock's mode (S3 does not let
        compliance become governance, nor governance become compliance without a
        bypass drd never uses). True if the retention changed.
        """
        raise ObjectLockUnsupportedError(f"{self.location}: Object Lock is not supported here")

    def get_retention(self, key: str) -> ObjectRetention | None:
        """``key``'s retention (None when it has none); ``ObjectNotFoundError`` if missing."""
        info = self.head(key)
        if info is None:
            raise ObjectNotFoundError(f"{self.location}: object {key} not found")
        if info.retain_until is None or info.lock_mode is None:
            return None
        return ObjectRetention(info.lock_mode, info.retain_until)

    # -- lifecycle ---------------------------------------------------------------------

    def set_lifecycle(self, transitions: Sequence[LifecycleTransition]) -> None:
        raise StorageError(f"{self.location}: storage-class lifecycle is not supported here")

    def get_lifecycle(self) -> builtins.list[LifecycleTransition]:
        return []

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (thread pools, sockets)."""
