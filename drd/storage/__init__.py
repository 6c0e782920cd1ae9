"""Object storage: one interface (``ObjectStore``), filesystem / S3 / memory backends.

``S3Store`` lives in ``drd.storage.s3`` and is not imported here, so that importing
this package does not import boto3; ``open_store`` imports it when a repository is S3.
``open_store`` itself (``drd.storage.factory``) needs the config models, so it is
imported on first use too: a snapshot subprocess starts ~0.25 s faster.
"""

from typing import Any

from drd.storage.base import (
    LifecycleTransition,
    LockMode,
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    check_key,
)
from drd.storage.filesystem import FilesystemStore
from drd.storage.memory import MemoryStore

__all__ = [
    "FilesystemStore",
    "LifecycleTransition",
    "LockMode",
    "MemoryStore",
    "ObjectInfo",
    "ObjectNotFoundError",
    "ObjectStore",
    "check_key",
    "open_store",
]


def __getattr__(name: str) -> Any:
    if name == "open_store":
        from drd.storage.factory import open_store  # noqa: PLC0415 - deliberately lazy

        return open_store
    raise AttributeError(name)
