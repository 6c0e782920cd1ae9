"""Object storage: one interface (``ObjectStore``), filesystem / S3 / memory backends."""

from drd.storage.base import (
    LifecycleTransition,
    LockMode,
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    check_key,
)
from drd.storage.memory import MemoryStore

__all__ = [
    "LifecycleTransition",
    "LockMode",
    "MemoryStore",
    "ObjectInfo",
    "ObjectNotFoundError",
    "ObjectStore",
    "check_key",
]
