"""Object storage: one interface (``ObjectStore``), filesystem / S3 / memory backends.

``S3Store`` lives in ``drd.storage.s3`` and is not imported here, so that importing
this package does not import boto3; ``open_store`` imports it when a repository is S3.
"""

from drd.storage.base import (
    LifecycleTransition,
    LockMode,
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    check_key,
)
from drd.storage.factory import open_store
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
