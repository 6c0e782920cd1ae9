"""Error hierarchy and the process exit codes they map to.

Every failure drd reports on purpose is a ``DrdError``; the CLI prints its message as
one line and exits with its ``exit_code``. Anything else is a bug (exit 1, with a
traceback only at ``--log-level debug``).

    DrdError                      exit 1   base class, never raised directly
    ├── ConfigError               exit 2   bad config/tier file, unknown tier, bad cron ...
    ├── CatalogError              exit 3   catalog unreachable, migration failed
    │   └── AuditChainError       exit 3   the audit log's hash chain is broken
    ├── StorageError              exit 4   object storage / filesystem repository
    ├── PostgresError             exit 5   connect, query, server control
    ├── CommandError              exit 6   an external program failed or timed out
    │   └── BackupError           exit 6   pgBackRest reported an error
    ├── SnapshotError             exit 7   filestore snapshot format or content
    ├── EncryptionError           exit 8   wrong passphrase, authentication tag mismatch
    ├── LockError                 exit 9   another drd holds the lock: retry later
    ├── SafetyError               exit 10  a safety check refused a destructive action
    └── ChecksFailedError         exit 11  ``drd check``: a critical check failed

Exit code 0 means success; 130 means interrupted (Ctrl-C / SIGINT). The table is
documented in docs/configuration.md ("Exit codes") and checked by a test.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERRUPTED = 130


class DrdError(Exception):
    """Base of every error drd reports on purpose.

    ``hint`` says what would make the operation succeed; it is printed after the message.
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message


class ConfigError(DrdError):
    """The configuration or a tier file is invalid; ``problems`` holds one line each."""

    exit_code = 2

    def __init__(self, message: str, problems: list[str] | None = None, **kw: str) -> None:
        super().__init__(message, **kw)
        self.problems = problems or [message]


class CatalogError(DrdError):
    exit_code = 3


class AuditChainError(CatalogError):
    """An audit log entry does not carry the hash of its predecessor (tampering or loss)."""


class StorageError(DrdError):
    exit_code = 4


class PostgresError(DrdError):
    exit_code = 5


class CommandError(DrdError):
    """An external program failed, was killed, or ran past its timeout."""

    exit_code = 6

    def __init__(
        self,
        message: str,
        *,
        returncode: int | None = None,
        stderr_tail: str = "",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.returncode = returncode
        self.stderr_tail = stderr_tail


class BackupError(CommandError):
    pass


class SnapshotError(DrdError):
    exit_code = 7


class EncryptionError(DrdError):
    exit_code = 8


class LockError(DrdError):
    exit_code = 9


class SafetyError(DrdError):
    exit_code = 10


class ChecksFailedError(DrdError):
    """A critical health check failed (``drd check``); the message lists which."""

    exit_code = 11


#: One place for the documented table (docs and ``drd --help`` are checked against it).
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    DrdError.exit_code: "internal error (a bug: please report it with --log-level debug output)",
    ConfigError.exit_code: "invalid configuration, tier file or command-line usage",
    CatalogError.exit_code: "catalog unreachable, migration failed or audit chain broken",
    StorageError.exit_code: "object storage or repository error",
    PostgresError.exit_code: "PostgreSQL connection, query or server-control error",
    CommandError.exit_code: "an external program (pgBackRest, pg_ctl ...) failed or timed out",
    SnapshotError.exit_code: "filestore snapshot error",
    EncryptionError.exit_code: "encryption error (wrong passphrase or tampered data)",
    LockError.exit_code: "another drd holds the lock; retry later",
    SafetyError.exit_code: "a safety check refused the action; the message says which",
    ChecksFailedError.exit_code: "a critical check failed (drd check); the output says which",
    EXIT_INTERRUPTED: "interrupted",
}
