"""The estate configuration: daemon settings, repositories and workloads.

Cross references (a workload's tier and repository) are checked while validating,
with the names of known tiers and repositories passed in the validation context by the
loader, so that an unknown tier is reported at ``workloads[2].tier`` like any other
field error, together with every other problem in the file.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from drd.config.types import CronExpr, Duration, SecretRef, StrictModel
from drd.errors import ConfigError

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
DEFAULT_PG_BIN = Path("/usr/lib/postgresql/15/bin")


class Encryption(StrictModel):
    """Each repository has its own keys; the passphrase unlocks them."""

    passphrase: SecretRef = Field(description="passphrase for pgBackRest cipher and snapshot keys")


class FilesystemRepository(StrictModel):
    type: Literal["filesystem"]
    name: str = Field(pattern=NAME_PATTERN)
    path: Path = Field(description="absolute directory of the repository")
    encryption: Encryption

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value


class S3Credentials(StrictModel):
    access_key_id: SecretRef
    secret_access_key: SecretRef
    session_token: SecretRef | None = None


class S3Repository(StrictModel):
    type: Literal["s3"]
    name: str = Field(pattern=NAME_PATTERN)
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    prefix: str = Field(default="", description="key prefix inside the bucket, no leading slash")
    endpoint: str | None = Field(default=None, description="https://host[:port]; empty for AWS")
    region: str = "us-east-1"
    uri_style: Literal["host", "path"] = "host"
    ca_file: Path | None = Field(default=None, description="CA bundle for a private endpoint")
    verify_tls: bool = True
    credentials: S3Credentials | None = Field(
        default=None, description="static keys; omit to use the ambient AWS chain (IRSA, profile)"
    )
    encryption: Encryption

    @field_validator("prefix")
    @classmethod
    def _clean_prefix(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError("prefix must be relative and must not contain '..'")
        return value.strip("/")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("endpoint must be a URL like https://s3.example.com:9000")
        if parts.username or parts.password:
            raise ValueError("endpoint must not carry credentials: use 'credentials'")
        return value.rstrip("/")


Repository = Annotated[FilesystemRepository | S3Repository, Field(discriminator="type")]


class PostgresEndpoint(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(default=5432, ge=1, le=65535)
    user: str = "postgres"
    dbname: str = "postgres"
    password: SecretRef | None = None
    sslmode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] = "prefer"

    def describe(self) -> str:
        return f"{self.host}:{self.port}/{self.dbname}"


class WorkloadPostgres(StrictModel):
    primary: PostgresEndpoint
    standbys: list[PostgresEndpoint] = Field(default_factory=list)
    pgdata: Path = Field(description="data directory on the database host")
    stanza: str | None = Field(
        default=None, description="pgBackRest stanza; default: workload name"
    )
    os_user: str = Field(default="postgres", description="OS user that owns pgdata")
    socket_dir: Path = Field(
        default=Path("/var/run/postgresql"),
        description="unix socket directory pgBackRest uses to reach the local server",
    )
    bin_dir: Path = Field(default=DEFAULT_PG_BIN, description="PostgreSQL server binaries")
    process_max: int = Field(default=2, ge=1, le=64, description="pgBackRest process-max")


class Filestore(StrictModel):
    path: Path = Field(description="filestore directory (for Odoo: data_dir/filestore/<db>)")


class Odoo(StrictModel):
    database: str = Field(description="Odoo database name; enables Odoo-specific checks")


class DrillCheck(StrictModel):
    """A workload-specific verification run in every drill's restored copy (read-only)."""

    name: str = Field(pattern=NAME_PATTERN)
    sql: str = Field(description="a read-only query; the first column of the first row is compared")
    expected: str = Field(description="expected value as PostgreSQL prints it (booleans: t/f)")
    database: str | None = Field(default=None, description="default: the workload's database")


class Workload(StrictModel):
    name: str = Field(pattern=NAME_PATTERN)
    tier: str
    repository: str
    tenant: str | None = None
    site: str | None = Field(default=None, description="site or region the primary runs in")
    postgres: WorkloadPostgres
    filestore: Filestore | None = None
    odoo: Odoo | None = None
    checks: list[DrillCheck] = Field(default_factory=list, description="extra drill checks")

    @field_validator("tier", "repository")
    @classmethod
    def _known_name(cls, value: str, info: ValidationInfo) -> str:
        """Cross-reference: the loader passes the known tier/repository names in context."""
        kind = "tier" if info.field_name == "tier" else "repository"
        known_names = (info.context or {}).get("tiers" if kind == "tier" else "repositories")
        if known_names is not None and value not in known_names:
            known = ", ".join(sorted(n for n in known_names if n)) or "none"
            raise ValueError(f"unknown {kind} {value!r} (known: {known})")
        return value

    def stanza(self) -> str:
        return self.postgres.stanza or self.name


class LogSettings(StrictModel):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class DaemonSettings(StrictModel):
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=9187, ge=1, le=65535)
    max_concurrent_jobs: int = Field(default=4, ge=1)
    max_jobs_per_repository: int = Field(default=2, ge=1)
    job_timeout: Duration = timedelta(hours=6)
    jitter: Duration = Field(
        default=timedelta(seconds=30), description="random delay for shared crons"
    )
    shutdown_grace: Duration = Field(
        default=timedelta(minutes=5),
        description="on SIGTERM, running jobs get this long to finish before they are killed",
    )
    retention_cron: CronExpr = Field(
        default="30 4 * * *", description="when retention is applied to each workload"
    )


class KubernetesDrills(StrictModel):
    """Where and how drills with ``sandbox: kubernetes`` run (see docs/operations.md).

    The Job runs the drill agent from ``image`` (the drd image: it contains PostgreSQL and
    pgBackRest); its pod must be able to reach the repository's S3 endpoint.
    """

    image: str = Field(description="drd image for the drill agent, e.g. ghcr.io/acme/drd:1.2.3")
    context: str | None = Field(
        default=None, description="kubeconfig context; default: in-cluster, else current context"
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    namespace_ttl: Duration = Field(
        default=timedelta(hours=6),
        description="the sweeper deletes drill namespaces older than this (raised to the "
        "tier's drill timeout + 1h when shorter)",
    )
    os_user: str = Field(default="drd", description="user the agent runs as in the image")
    pg_bin_dir: Path = Field(default=DEFAULT_PG_BIN, description="PostgreSQL binaries in the image")
    cpu_request: str = "500m"
    cpu_limit: str = "2"
    memory_request: str = "1Gi"
    memory_limit: str = "4Gi"
    scratch_size: str = Field(default="20Gi", description="emptyDir for the restored copy")
    dns_peer: Literal["kube-dns", "any"] = Field(
        default="kube-dns",
        description="DNS egress to kube-dns pods only, or port 53 anywhere (NodeLocal DNSCache)",
    )
    poll_interval: Duration = Field(default=timedelta(seconds=5), description="Job status polling")


class DrdConfig(StrictModel):
    version: Literal[1] = 1
    state_dir: Path = Field(description="catalog, pgBackRest configs, locks and logs live here")
    catalog: str | None = Field(
        default=None,
        description="omit for SQLite under state_dir, or a postgresql:// URL (no password in it)",
    )
    catalog_password: SecretRef | None = None
    tiers_dir: Path = Field(default=Path("tiers"), description="relative to this config file")
    log: LogSettings = Field(default_factory=LogSettings)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    repositories: list[Repository] = Field(default_factory=list)
    workloads: list[Workload] = Field(default_factory=list)
    kubernetes: KubernetesDrills | None = Field(
        default=None, description="needed by drills whose sandbox is kubernetes"
    )

    @field_validator("catalog")
    @classmethod
    def _catalog_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("postgresql", "postgres", "sqlite"):
            raise ValueError("catalog must be a postgresql:// URL or sqlite:///path")
        if parts.password:
            raise ValueError(
                "put the catalog password in catalog_password (a secret reference), not the URL"
            )
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> DrdConfig:
        for label, items in (("repositories", self.repositories), ("workloads", self.workloads)):
            names = [item.name for item in items]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {label} names: {', '.join(dupes)}")
        return self

    def repository(self, name: str) -> FilesystemRepository | S3Repository:
        return next(r for r in self.repositories if r.name == name)

    def workload(self, name: str) -> Workload:
        for workload in self.workloads:
            if workload.name == name:
                return workload
        known = ", ".join(w.name for w in self.workloads) or "none"
        raise ConfigError(f"unknown workload {name!r} (known: {known})")

    def catalog_url(self) -> str:
        """The catalog location; SQLite under ``state_dir`` unless a URL is configured."""
        return self.catalog or f"sqlite:///{self.state_dir / 'catalog.sqlite3'}"
