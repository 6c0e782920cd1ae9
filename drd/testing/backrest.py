"""pgBackRest for tests and the demo: config, stanza-create, backup, restore.

Writes a config file (mode 600, owned by the PostgreSQL OS user, secrets inside) for
one stanza and either an S3 repository (through the harness TLS proxy) or a posix
repository, and runs the real ``pgbackrest`` binary as the PostgreSQL OS user.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drd import command
from drd.errors import BackupError
from drd.pgbackrest import config as pgbr_config
from drd.testing.postgres import PgCluster
from drd.testing.processes import Scratch
from drd.testing.s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Endpoint

CIPHER_PASS = "drd-harness-cipher-passphrase"  # noqa: S105 - a test-only passphrase


@dataclass
class BackrestStanza:
    stanza: str
    config_path: Path
    os_user: str
    work_dir: Path

    @classmethod
    def for_cluster(
        cls,
        scratch: Scratch,
        cluster: PgCluster,
        *,
        stanza: str,
        s3: S3Endpoint | None = None,
        bucket: str | None = None,
        repo_path: Path | None = None,
        cipher_pass: str = CIPHER_PASS,
    ) -> BackrestStanza:
        """Write the config for ``cluster``: S3 when ``s3``/``bucket`` given, else posix."""
        work = scratch.dir(f"pgbackrest-{stanza}", owner=cluster.os_user, mode=0o700)
        for sub in ("log", "lock", "spool"):
            scratch.dir(f"pgbackrest-{stanza}/{sub}", owner=cluster.os_user, mode=0o700)
        repo: dict[str, Any]
        if s3 is not None:
            if bucket is None:
                raise ValueError("an S3 repository needs a bucket")
            repo = {
                "repo1-type": "s3",
                "repo1-path": f"/{stanza}",
                "repo1-s3-bucket": bucket,
                "repo1-s3-endpoint": "localhost",
                "repo1-storage-port": s3.tls_port,
                "repo1-storage-ca-file": s3.tls.ca_cert,
                "repo1-s3-region": REGION,
                "repo1-s3-uri-style": "path",
                "repo1-s3-key": ACCESS_KEY,
                "repo1-s3-key-secret": SECRET_KEY,
            }
        else:
            path = repo_path or scratch.dir(f"repo-{stanza}", owner=cluster.os_user, mode=0o750)
            repo = {"repo1-type": "posix", "repo1-path": path}
        sections = {
            "global": {
                **repo,
                "repo1-cipher-type": "aes-256-cbc",
                "repo1-cipher-pass": cipher_pass,
                "repo1-retention-full": 2,
                "compress-type": "zst",
                "process-max": 2,
                "start-fast": True,
                "log-path": work / "log",
                "lock-path": work / "lock",
                "spool-path": work / "spool",
                "log-level-console": "warn",
                "log-level-file": "info",
            },
            stanza: {
                "pg1-path": cluster.data_dir,
                "pg1-port": cluster.port,
                "pg1-socket-path": cluster.socket_dir,
                "pg1-user": "postgres",
            },
        }
        config_path = work / "pgbackrest.conf"
        pgbr_config.write(config_path, sections, owner=cluster.os_user)
        return cls(stanza=stanza, config_path=config_path, os_user=cluster.os_user, work_dir=work)

    def archive_command(self) -> str:
        return f"pgbackrest --config={self.config_path} --stanza={self.stanza} archive-push %p"

    def run(self, *args: str, timeout: float = 300) -> command.CommandResult:
        return command.run(
            ["pgbackrest", f"--config={self.config_path}", f"--stanza={self.stanza}", *args],
            timeout=timeout,
            user=self.os_user,
            error_cls=BackupError,
        )

    def stanza_create(self) -> None:
        self.run("stanza-create")

    def backup(self, backup_type: str = "full") -> None:
        self.run(f"--type={backup_type}", "backup")

    def info(self) -> list[dict[str, Any]]:
        result = self.run("--output=json", "info", timeout=120)
        data: list[dict[str, Any]] = json.loads(result.stdout)
        return data

    def restore(self, target: PgCluster, *extra: str, timeout: float = 600) -> None:
        """Restore into ``target``'s (empty) data dir; it must not archive as the primary."""
        self.run(
            f"--pg1-path={target.data_dir}",
            "--archive-mode=off",
            *extra,
            "restore",
            timeout=timeout,
        )
