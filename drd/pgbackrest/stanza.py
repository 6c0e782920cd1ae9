"""Per-workload pgBackRest configuration, generated from workload, repository and tier.

Layout under the state directory (the PostgreSQL OS user must reach its own part, so
``state_dir`` is created 0711: traversable, not listable)::

    state_dir/pgbackrest/<workload>/          0700, owned by the PostgreSQL OS user
        pgbackrest.conf                        0600: holds the cipher pass and S3 keys
        log/  lock/  spool/

Retention is drd's (GFS rules by tier), so pgBackRest's own count retention is set to
its maximum and never expires anything by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from drd.config import Estate
from drd.config.models import FilesystemRepository, S3Repository, Workload
from drd.errors import ConfigError
from drd.fsutil import make_dir
from drd.pgbackrest import config as pgbr_config

RETENTION_FULL_MAX = 9999999  # pgBackRest's maximum: drd expires sets itself
REPO_SUBDIR = "pgbackrest"  # inside the repository path or S3 prefix


@dataclass(frozen=True)
class StanzaConfig:
    """Where one workload's pgBackRest config lives and who runs pgBackRest for it."""

    workload: str
    stanza: str
    repository: str
    os_user: str
    work_dir: Path

    @property
    def path(self) -> Path:
        return self.work_dir / "pgbackrest.conf"

    def archive_command(self) -> str:
        """The archive_command PostgreSQL must use for this stanza (exactly)."""
        return f"pgbackrest --config={self.path} --stanza={self.stanza} archive-push %p"

    def restore_command(self) -> str:
        return f'pgbackrest --config={self.path} --stanza={self.stanza} archive-get %f "%p"'


def stanza_config(estate: Estate, workload_name: str) -> StanzaConfig:
    """Paths and names only; no I/O."""
    workload = estate.config.workload(workload_name)
    return StanzaConfig(
        workload=workload.name,
        stanza=workload.stanza(),
        repository=workload.repository,
        os_user=workload.postgres.os_user,
        work_dir=estate.config.state_dir / "pgbackrest" / workload.name,
    )


def _repo_options(repo: FilesystemRepository | S3Repository) -> dict[str, Any]:
    if isinstance(repo, FilesystemRepository):
        return {"repo1-type": "posix", "repo1-path": repo.path / REPO_SUBDIR}
    if repo.endpoint:
        parts = urlsplit(repo.endpoint)
        if parts.scheme != "https":
            raise ConfigError(
                f"repository {repo.name}: pgBackRest 2.45 needs an https:// S3 endpoint, "
                f"got {repo.endpoint}",
                hint="put a TLS proxy in front of the store, or upgrade to pgBackRest >= 2.58",
            )
        host, port = parts.hostname or "", parts.port or 443
    else:
        host, port = f"s3.{repo.region}.amazonaws.com", 443
    options: dict[str, Any] = {
        "repo1-type": "s3",
        "repo1-path": "/" + "/".join(p for p in (repo.prefix, REPO_SUBDIR) if p),
        "repo1-s3-bucket": repo.bucket,
        "repo1-s3-endpoint": host,
        "repo1-storage-port": port,
        "repo1-s3-region": repo.region,
        "repo1-s3-uri-style": repo.uri_style,
        "repo1-storage-verify-tls": repo.verify_tls,
    }
    if repo.ca_file:
        options["repo1-storage-ca-file"] = repo.ca_file
    if repo.credentials is None:
        options["repo1-s3-key-type"] = "auto"  # instance profile / IRSA
    else:
        options["repo1-s3-key"] = repo.credentials.access_key_id.get().get_secret_value()
        options["repo1-s3-key-secret"] = repo.credentials.secret_access_key.get().get_secret_value()
        if repo.credentials.session_token is not None:
            options["repo1-s3-token"] = repo.credentials.session_token.get().get_secret_value()
    return options


def build_sections(
    estate: Estate, workload: Workload, cfg: StanzaConfig
) -> dict[str, dict[str, Any]]:
    """The whole config file as sections; secrets are read from their references here."""
    repo = estate.config.repository(workload.repository)
    pg = workload.postgres
    return {
        "global": {
            **_repo_options(repo),
            "repo1-cipher-type": "aes-256-cbc",
            "repo1-cipher-pass": repo.encryption.passphrase.get().get_secret_value(),
            "repo1-retention-full": RETENTION_FULL_MAX,
            "compress-type": "zst",
            "process-max": pg.process_max,
            "start-fast": True,
            "archive-async": False,  # synchronous push: success means "in the repository"
            "log-path": cfg.work_dir / "log",
            "lock-path": cfg.work_dir / "lock",
            "spool-path": cfg.work_dir / "spool",
            "log-level-console": "warn",
            "log-level-stderr": "error",
            "log-level-file": "info",
        },
        cfg.stanza: {
            "pg1-path": pg.pgdata,
            "pg1-port": pg.primary.port,
            "pg1-socket-path": pg.socket_dir,
            "pg1-user": pg.primary.user,
        },
    }


def write_config(estate: Estate, workload_name: str) -> StanzaConfig:
    """Write (atomically, 0600, owned by the PostgreSQL OS user) the workload's config."""
    cfg = stanza_config(estate, workload_name)
    workload = estate.config.workload(workload_name)
    state_dir = estate.config.state_dir
    make_dir(state_dir, mode=0o711)
    make_dir(state_dir / "pgbackrest", mode=0o711)
    make_dir(cfg.work_dir, owner=cfg.os_user, mode=0o700)
    for sub in ("log", "lock", "spool"):
        make_dir(cfg.work_dir / sub, owner=cfg.os_user, mode=0o700)
    repo = estate.config.repository(workload.repository)
    if isinstance(repo, FilesystemRepository):
        make_dir(repo.path, mode=0o711)
        make_dir(repo.path / REPO_SUBDIR, owner=cfg.os_user, mode=0o750)
    pgbr_config.write(cfg.path, build_sections(estate, workload, cfg), owner=cfg.os_user)
    return cfg
