"""Run pgBackRest for one workload: always ``--config`` and ``--stanza``, as the
PostgreSQL OS user, bounded in time, errors mapped to clear messages.

Exit codes 50 (lock held) and 101 (TLS/HTTP 5xx/timeout) are retried with the shared
retry policy; every other failure raises ``BackupError`` naming the command, stanza,
repository, pgBackRest's error code and category, its message, and a hint.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from drd import command
from drd.errors import BackupError, CommandError
from drd.log import get_logger
from drd.pgbackrest import errors, info
from drd.pgbackrest.stanza import StanzaConfig
from drd.redact import redact
from drd.retry import RetryPolicy

log = get_logger("drd.pgbackrest")

DEFAULT_TIMEOUT = 6 * 3600.0


def _info_hint(code: int, detail: str, workload: str) -> str:
    if code == info.STATUS_MISSING_STANZA_DATA:
        return f"the stanza is half-created: run `drd db setup {workload} --apply`"
    if "FormatError" in detail or "CryptoError" in detail:
        return "the repository could not be decrypted: is the repository passphrase the right one?"
    if any(
        word in detail
        for word in ("403", "SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId")
    ):
        return "the storage endpoint refused the credentials: check the repository's access keys"
    if any(
        word in detail for word in ("HostConnectError", "unable to connect", "TLS", "certificate")
    ):
        return "cannot reach the storage endpoint: check endpoint, port, CA file and network"
    return "see the pgBackRest log under the state directory"


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, BackupError) and exc.returncode in errors.RETRYABLE


@dataclass
class Pgbackrest:
    cfg: StanzaConfig
    retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(
            attempts=4, deadline=600, base_delay=2, retryable=is_retryable
        )
    )
    runner: Callable[..., command.CommandResult] = command.run

    def run(self, name: str, *args: str, timeout: float = DEFAULT_TIMEOUT) -> command.CommandResult:
        """Run ``pgbackrest <name> [args]``; retry lock/endpoint errors, map the rest."""
        argv = [
            "pgbackrest",
            f"--config={self.cfg.path}",
            f"--stanza={self.cfg.stanza}",
            name,
            *args,  # after the command: repo-ls takes a positional path
        ]

        def attempt() -> command.CommandResult:
            try:
                return self.runner(
                    argv, timeout=timeout, user=self.cfg.os_user, error_cls=CommandError
                )
            except CommandError as exc:
                raise self._error(name, exc) from None

        def on_retry(n: int, exc: BaseException, wait: float) -> None:
            log.warning(
                "pgbackrest_retry", command=name, attempt=n, wait=round(wait, 1), error=str(exc)
            )

        return self.retry.call(attempt, on_retry=on_retry)

    def _error(self, name: str, exc: CommandError) -> BackupError:
        where = (
            f"pgbackrest {name} for workload {self.cfg.workload} "
            f"(stanza {self.cfg.stanza}, repository {self.cfg.repository})"
        )
        if exc.returncode is None:
            return BackupError(f"{where}: {exc.message}", stderr_tail=exc.stderr_tail)
        found = errors.error_lines(exc.stderr_tail)
        detail = found[-1][1] if found else (exc.stderr_tail.strip().splitlines() or [""])[-1]
        kind = errors.describe(exc.returncode)
        return BackupError(
            f"{where} failed: error {exc.returncode} ({kind.category}): {redact(str(detail))}",
            returncode=exc.returncode,
            stderr_tail=exc.stderr_tail,
            hint=kind.hint,
        )

    # -- commands ----------------------------------------------------------------------

    def info(self, timeout: float = 120) -> info.StanzaInfo:
        result = self.run("info", "--output=json", timeout=timeout)
        try:
            # strict=False: a repository read with the wrong key puts raw bytes (control
            # characters) into the status message.
            data = json.loads(result.stdout, strict=False)
        except json.JSONDecodeError as exc:
            raise BackupError(
                f"pgbackrest info for workload {self.cfg.workload} "
                f"(repository {self.cfg.repository})"
                f" printed invalid JSON: {exc}"
            ) from exc
        parsed = info.parse(data, self.cfg.stanza)
        if parsed.status_code not in info.HEALTHY_STATUS:
            detail = parsed.repo_detail or parsed.status_message
            raise BackupError(
                f"pgbackrest info for workload {self.cfg.workload} (stanza {self.cfg.stanza}, "
                f"repository {self.cfg.repository}): status {parsed.status_code} "
                f"({parsed.status_message}): {redact(detail)}",
                hint=_info_hint(parsed.status_code, detail, self.cfg.workload),
            )
        return parsed

    def stanza_create(self, timeout: float = 300) -> None:
        self.run("stanza-create", timeout=timeout)

    def check(self, timeout: float = 300) -> None:
        """pgBackRest's own check: forces a WAL switch and waits for it in the repository."""
        self.run("check", f"--archive-timeout={int(min(timeout, 600))}", timeout=timeout + 30)

    def backup(self, backup_type: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.run("backup", f"--type={backup_type}", timeout=timeout)

    def repo_ls(
        self, path: str, *, recurse: bool = False, timeout: float = 300
    ) -> dict[str, dict[str, object]]:
        args = ["--output=json", *(["--recurse"] if recurse else []), path]
        result = self.run("repo-ls", *args, timeout=timeout)
        data: dict[str, dict[str, object]] = json.loads(result.stdout)
        return data
