"""pgBackRest runner (retries, error mapping) and per-workload config generation."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path
from typing import Any

import pytest

from drd.command import CommandResult
from drd.errors import BackupError, CommandError, ConfigError
from drd.pgbackrest.runner import Pgbackrest, is_retryable
from drd.pgbackrest.stanza import StanzaConfig, build_sections, write_config
from drd.retry import RetryPolicy
from drd.testing import PgCluster, S3Endpoint, Scratch
from drd.testing.estate import EstateBuilder

CFG = StanzaConfig("erp", "erp", "vault", pwd.getpwuid(os.geteuid()).pw_name, Path("/nonexistent"))


class FakeRunner:
    """Plays back exit codes: an int fails with that code, None succeeds."""

    def __init__(self, codes: list[int | None]) -> None:
        self.codes = codes
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], **_: Any) -> CommandResult:
        self.calls.append(argv)
        code = self.codes.pop(0)
        if code is None:
            return CommandResult(tuple(argv), 0, "", "", 0.1)
        raise CommandError(
            f"pgbackrest exited with code {code}",
            returncode=code,
            stderr_tail=f"ERROR: [{code:03d}]: something about code {code}\n",
        )


def _pgbr(codes: list[int | None]) -> tuple[Pgbackrest, FakeRunner, list[float]]:
    slept: list[float] = []
    fake = FakeRunner(codes)
    policy = RetryPolicy(
        attempts=4,
        deadline=1000,
        base_delay=1,
        retryable=is_retryable,
        sleep=slept.append,
    )
    return Pgbackrest(CFG, retry=policy, runner=fake), fake, slept


@pytest.mark.parametrize("code", [50, 101])
def test_lock_and_service_errors_are_retried(code: int) -> None:
    """Exit codes 50 (lock) and 101 (TLS/5xx) are retried, then the command succeeds."""
    pgbr, fake, slept = _pgbr([code, code, None])
    pgbr.backup("full")
    assert len(fake.calls) == 3
    assert len(slept) == 2
    assert fake.calls[0][-2:] == ["backup", "--type=full"]
    assert fake.calls[0][1:3] == [f"--config={CFG.path}", "--stanza=erp"]


def test_other_errors_are_mapped_not_retried() -> None:
    """Error 55 fails at once with workload, stanza, repository, code name and hint."""
    pgbr, fake, slept = _pgbr([55])
    with pytest.raises(BackupError) as info:
        pgbr.backup("incr")
    assert len(fake.calls) == 1
    assert slept == []
    message = str(info.value)
    assert "pgbackrest backup for workload erp (stanza erp, repository vault) failed" in message
    assert "error 55 (file-missing): something about code 55" in message
    assert "drd db setup WORKLOAD --apply" in message
    assert info.value.returncode == 55


def test_retries_give_up_with_the_last_error() -> None:
    """A lock that never frees ends in a BackupError after the attempts."""
    pgbr, fake, _ = _pgbr([50, 50, 50, 50])
    with pytest.raises(BackupError, match="lock-acquire"):
        pgbr.check()
    assert len(fake.calls) == 4


def test_s3_sections_hold_secrets_only_in_the_file(scratch: Scratch, s3: S3Endpoint) -> None:
    """S3 options come from the repository; keys and cipher pass are in the file, mode 600."""
    builder = EstateBuilder(scratch, name="cfgtest")
    cluster = PgCluster.allocate(scratch, "cfgtest-pg")
    builder.workload("erp", cluster, builder.s3_repo(s3, "some-bucket"))
    estate = builder.load()
    cfg = write_config(estate, "erp")
    sections = build_sections(estate, estate.config.workload("erp"), cfg)
    glob = sections["global"]
    assert glob["repo1-type"] == "s3"
    assert glob["repo1-s3-endpoint"] == "localhost"
    assert glob["repo1-storage-port"] == s3.tls_port
    assert glob["repo1-path"] == "/pgbackrest"
    assert glob["repo1-cipher-type"] == "aes-256-cbc"
    assert glob["compress-type"] == "zst"
    assert sections["erp"]["pg1-socket-path"] == cluster.socket_dir
    mode = stat.S_IMODE(cfg.path.stat().st_mode)
    assert mode == 0o600
    assert cfg.path.stat().st_uid == pwd.getpwnam(cluster.os_user).pw_uid
    text = cfg.path.read_text()
    assert f"repo1-cipher-pass={builder.passphrase}" in text
    assert builder.passphrase not in cfg.archive_command()


def test_plain_http_endpoint_is_refused_for_pgbackrest(scratch: Scratch, s3: S3Endpoint) -> None:
    """pgBackRest 2.45 cannot speak plain-HTTP S3: config generation says so."""
    builder = EstateBuilder(scratch, name="cfghttp")
    cluster = PgCluster.allocate(scratch, "cfghttp-pg")
    builder.workload("erp", cluster, builder.s3_repo(s3, "some-bucket"))
    builder.repositories[0]["endpoint"] = s3.http_url
    estate = builder.load()
    with pytest.raises(ConfigError, match="needs an https:// S3 endpoint"):
        write_config(estate, "erp")
