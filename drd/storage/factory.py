"""Open the object store of a configured repository.

Snapshots live under ``filestore/`` in the repository: pgBackRest keeps its own data
under ``pgbackrest/`` in the same directory or bucket prefix, so the two never collide.
"""

from __future__ import annotations

from drd.config.models import FilesystemRepository, S3Repository
from drd.storage.base import ObjectStore
from drd.storage.filesystem import FilesystemStore

STORE_DIR = "filestore"


def open_store(repo: FilesystemRepository | S3Repository, *, max_workers: int = 8) -> ObjectStore:
    """The store for ``repo``; S3 secrets are read from their references now."""
    if isinstance(repo, FilesystemRepository):
        return FilesystemStore(repo.path / STORE_DIR)
    # boto3 takes ~0.3 s to import: only when a repository is S3
    from drd.storage.s3 import S3Store  # noqa: PLC0415

    access_key = secret_key = session_token = None
    if repo.credentials is not None:
        access_key = repo.credentials.access_key_id.get().get_secret_value()
        secret_key = repo.credentials.secret_access_key.get().get_secret_value()
        if repo.credentials.session_token is not None:
            session_token = repo.credentials.session_token.get().get_secret_value()
    return S3Store(
        repo.bucket,
        "/".join(part for part in (repo.prefix, STORE_DIR) if part),
        endpoint_url=repo.endpoint,
        region=repo.region,
        path_style=repo.uri_style == "path",
        ca_file=repo.ca_file,
        verify_tls=repo.verify_tls,
        access_key=access_key,
        secret_key=secret_key,
        session_token=session_token,
        max_workers=max_workers,
    )
