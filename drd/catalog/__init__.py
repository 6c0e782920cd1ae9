"""The catalog: an index of runs, backups, snapshots, drills, incidents and the audit log.

One interface (``Catalog``), two backends: SQLite (the default, a file in WAL mode;
``sqlite:///:memory:`` is the in-memory fake for unit tests) and PostgreSQL (cluster
mode). ``open_catalog`` picks the backend from the URL and applies pending schema
migrations before returning. The repository stays the truth: the catalog can be
rebuilt from it, and its audit log is hash-chained so that tampering is detected.

    from drd.catalog import open_catalog

    with open_catalog(config.catalog_url(), password=secret) as catalog:
        run_id = catalog.start_run("backup", "erp-prod", {"type": "full"})
        ...
        catalog.finish_run(run_id, "succeeded")
"""

from __future__ import annotations

from pydantic import SecretStr

from drd.catalog.base import Catalog
from drd.catalog.migrations import LATEST_VERSION
from drd.catalog.postgres import PostgresCatalog
from drd.catalog.records import (
    GENESIS_HASH,
    AuditEntry,
    BackupRecord,
    BackupType,
    DrillRecord,
    DrillStatus,
    FinalStatus,
    IncidentKind,
    IncidentRecord,
    IncidentStatus,
    Run,
    RunStatus,
    SnapshotRecord,
)
from drd.catalog.sqlite import SqliteCatalog
from drd.config.models import DrdConfig
from drd.errors import CatalogError
from drd.redact import redact

__all__ = [
    "GENESIS_HASH",
    "LATEST_VERSION",
    "AuditEntry",
    "BackupRecord",
    "BackupType",
    "Catalog",
    "DrillRecord",
    "DrillStatus",
    "FinalStatus",
    "IncidentKind",
    "IncidentRecord",
    "IncidentStatus",
    "Run",
    "RunStatus",
    "SnapshotRecord",
    "open_catalog",
    "open_configured",
]


def open_catalog(url: str, *, password: SecretStr | None = None) -> Catalog:
    """Open (creating and migrating as needed) the catalog at ``url``.

    ``sqlite:///abs/path`` or ``sqlite:///:memory:``; ``postgresql://user@host/db``
    with ``password`` given separately (never in the URL). Raises ``CatalogError`` if
    the catalog cannot be reached or created, or its schema is newer than this drd.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        if password is not None:
            raise CatalogError(
                f"a catalog password was given for the SQLite catalog {redact(url)}",
                hint="catalog_password is for a postgresql:// catalog; remove it",
            )
        return SqliteCatalog(url)
    if scheme in ("postgresql", "postgres"):
        return PostgresCatalog(url, password=password)
    raise CatalogError(
        f"unsupported catalog URL {redact(url)!r}",
        hint="use sqlite:///absolute/path or postgresql://user@host:port/dbname",
    )


def open_configured(config: DrdConfig) -> Catalog:
    """The catalog a config names: SQLite under ``state_dir`` unless a URL is set."""
    password = config.catalog_password.get() if config.catalog_password else None
    return open_catalog(config.catalog_url(), password=password)
