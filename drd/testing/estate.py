"""A real estate for tests: a harness cluster described by a drd config file.

``EstateBuilder`` writes a config (state dir in the scratch area so the PostgreSQL OS
user can reach its pgBackRest files) with one workload per cluster, on a filesystem
repository or on the harness S3 endpoint, and returns the loaded ``Estate``. Then
``start_protected`` generates the workload's pgBackRest config the way drd does,
initdb's the cluster archiving through it, starts it and creates the stanza.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drd.command import as_user_prefix
from drd.config import Estate, load
from drd.pgbackrest.runner import Pgbackrest
from drd.pgbackrest.stanza import StanzaConfig, write_config
from drd.testing.postgres import PgCluster
from drd.testing.processes import Scratch
from drd.testing.s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Endpoint

TIERS = Path(__file__).resolve().parents[2] / "tiers"
PASSPHRASE_ENV = "DRD_TEST_REPO_PASSPHRASE"  # noqa: S105 - a variable name
S3_KEY_ENV = "DRD_TEST_S3_KEY"
S3_SECRET_ENV = "DRD_TEST_S3_SECRET"  # noqa: S105 - a variable name


def tiers_with(directory: Path, **extra: str) -> Path:
    """A tiers directory: the shipped tiers plus ``name=yaml text`` ones, for tests that
    need a schedule or a keep rule of their own."""
    directory.mkdir(parents=True, exist_ok=True)
    for tier in TIERS.glob("*.yaml"):
        (directory / tier.name).write_text(tier.read_text())
    for name, text in extra.items():
        (directory / f"{name}.yaml").write_text(text)
    return directory


def write_config_only(
    directory: Path,
    repositories: list[dict[str, Any]],
    workloads: list[tuple[str, str, str, bool]],
    *,
    tiers_dir: Path = TIERS,
) -> Path:
    """A config whose (name, tier, repository, has filestore) workloads have no database
    behind them: for logic that reads only the configuration (lifecycle, lock policy)."""
    docs = []
    for name, tier, repository, filestore in workloads:
        doc: dict[str, Any] = {
            "name": name,
            "tier": tier,
            "repository": repository,
            "postgres": {"primary": {"port": 5432}, "pgdata": f"/srv/{name}/pgdata"},
        }
        if filestore:
            doc["filestore"] = {"path": f"/srv/{name}/filestore"}
        docs.append(doc)
    data = {
        "version": 1,
        "state_dir": str(directory / "state"),
        "tiers_dir": str(tiers_dir),
        "repositories": repositories,
        "workloads": docs,
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "drd.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def stop_kept_sandbox(os_user: str, bin_dir: Path, sandbox: str | Path) -> None:
    """Stop and remove a drill sandbox kept with ``keep=True`` (tests that looked inside)."""
    subprocess.run(
        [*as_user_prefix(os_user), str(bin_dir / "pg_ctl"), "-D", str(Path(sandbox) / "data"),
         "-m", "immediate", "stop"],
        check=False,
        capture_output=True,
    )  # fmt: skip
    shutil.rmtree(sandbox, ignore_errors=True)


@dataclass
class EstateBuilder:
    scratch: Scratch
    name: str = "estate"
    passphrase: str = "test-repository-passphrase"  # noqa: S105 - test-only
    tiers_dir: Path = TIERS
    repositories: list[dict[str, Any]] = field(default_factory=list)
    workloads: list[dict[str, Any]] = field(default_factory=list)
    #: Further top-level config sections (``kubernetes``, ``daemon`` ...).
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        os.environ[PASSPHRASE_ENV] = self.passphrase
        os.environ.setdefault(S3_KEY_ENV, ACCESS_KEY)
        os.environ.setdefault(S3_SECRET_ENV, SECRET_KEY)
        self.root = self.scratch.dir(self.name, mode=0o755)

    def filesystem_repo(self, name: str = "fs") -> str:
        self.repositories.append(
            {
                "name": name,
                "type": "filesystem",
                "path": str(self.root / f"repo-{name}"),
                "encryption": {"passphrase": {"env": PASSPHRASE_ENV}},
            }
        )
        return name

    def s3_repo(
        self,
        s3: S3Endpoint,
        bucket: str,
        name: str = "s3",
        *,
        key_env: str = S3_KEY_ENV,
        secret_env: str = S3_SECRET_ENV,
    ) -> str:
        self.repositories.append(
            {
                "name": name,
                "type": "s3",
                "bucket": bucket,
                "endpoint": s3.url,
                "region": REGION,
                "uri_style": "path",
                "ca_file": str(s3.tls.ca_cert),
                "credentials": {
                    "access_key_id": {"env": key_env},
                    "secret_access_key": {"env": secret_env},
                },
                "encryption": {"passphrase": {"env": PASSPHRASE_ENV}},
            }
        )
        return name

    def workload(
        self,
        name: str,
        cluster: PgCluster,
        repository: str,
        *,
        tier: str = "tier-1",
        dbname: str = "postgres",
        filestore: Path | None = None,
    ) -> str:
        doc: dict[str, Any] = {
            "name": name,
            "tier": tier,
            "repository": repository,
            "postgres": {
                "primary": {"host": "127.0.0.1", "port": cluster.port, "dbname": dbname},
                "pgdata": str(cluster.data_dir),
                "socket_dir": str(cluster.socket_dir),
                "os_user": cluster.os_user,
                "bin_dir": str(cluster.bin_dir),
            },
        }
        if filestore is not None:
            doc["filestore"] = {"path": str(filestore)}
        self.workloads.append(doc)
        return name

    def write(self) -> Path:
        data = {
            "version": 1,
            "state_dir": str(self.root / "state"),
            "tiers_dir": str(self.tiers_dir),
            "repositories": self.repositories,
            "workloads": self.workloads,
            **self.extra,
        }
        path = self.root / "drd.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def load(self) -> Estate:
        return load(self.write())


def start_protected(
    estate: Estate, workload: str, cluster: PgCluster, *, settings: dict[str, Any] | None = None
) -> tuple[StanzaConfig, Pgbackrest]:
    """drd's pgBackRest config for ``workload``, the cluster archiving through it, stanza made."""
    cfg = write_config(estate, workload)
    tier = estate.tier_of(workload)
    base: dict[str, Any] = {
        "archive_timeout": f"{int(tier.effective_archive_timeout().total_seconds())}s"
    }
    base.update(settings or {})
    cluster.initdb(archive_command=cfg.archive_command(), settings=base)
    cluster.start()
    pgbr = Pgbackrest(cfg)
    pgbr.stanza_create()
    return cfg, pgbr
