"""pgBackRest exit codes: what they mean, whether to retry, what to tell the operator.

pgBackRest's exit code is its error code (``ERROR: [050]: ...``). Names follow
pgBackRest's ``src/build/error/error.yaml``; the hints are drd's. Any other code is
reported with pgBackRest's own message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RETRYABLE = frozenset({50, 101})  # lock held by another process; TLS/HTTP 5xx


@dataclass(frozen=True)
class ErrorKind:
    category: str
    hint: str


KINDS: dict[int, ErrorKind] = {
    29: ErrorKind("format", "a repository file is unreadable: wrong passphrase or a damaged file?"),
    31: ErrorKind(
        "option-invalid", "an option is invalid; check the workload and repository config"
    ),
    32: ErrorKind("option-invalid-value", "an option value is invalid; check the config"),
    37: ErrorKind("option-required", "a required option is missing; run `drd db setup WORKLOAD`"),
    38: ErrorKind("pg-running", "PostgreSQL is running where it must be stopped (restore target?)"),
    39: ErrorKind("protocol", "pgBackRest's remote protocol failed; check the pgBackRest log"),
    41: ErrorKind("file-open", "a file could not be opened: check permissions and the repository"),
    44: ErrorKind(
        "archive-mismatch", "the archive belongs to another cluster: check the stanza name"
    ),
    45: ErrorKind("archive-duplicate", "a WAL segment was already archived with other content"),
    49: ErrorKind("host-connect", "cannot connect to the repository host or storage endpoint"),
    50: ErrorKind(
        "lock-acquire", "another pgBackRest command holds the lock; retried, retry later"
    ),
    51: ErrorKind("backup-mismatch", "the repository belongs to another cluster: check the stanza"),
    55: ErrorKind(
        "file-missing", "stanza missing or half-created: run `drd db setup WORKLOAD --apply`"
    ),
    56: ErrorKind("db-connect", "cannot connect to PostgreSQL: check socket_dir, port and os_user"),
    57: ErrorKind("db-query", "a query to PostgreSQL failed; see the PostgreSQL log"),
    58: ErrorKind("db-mismatch", "PostgreSQL version or system id differs from the stanza"),
    62: ErrorKind("stop", "pgBackRest was stopped (`pgbackrest stop`); run `pgbackrest start`"),
    68: ErrorKind(
        "archive-command-invalid", "archive_command is wrong: run `drd db setup WORKLOAD`"
    ),
    73: ErrorKind("path-missing", "a path is missing: check the repository and data directory"),
    75: ErrorKind(
        "backup-set-invalid", "a backup set is invalid or damaged; take a new full backup"
    ),
    82: ErrorKind(
        "archive-timeout", "WAL did not reach the repository in time: is archiving working?"
    ),
    87: ErrorKind("archive-disabled", "archiving is disabled: archive_mode=on, then restart"),
    95: ErrorKind("crypto", "encryption or TLS failed: check the passphrase and CA file"),
    99: ErrorKind("json-format", "invalid JSON from the repository or endpoint"),
    101: ErrorKind("service", "storage endpoint error (HTTP 5xx, timeout); retried with backoff"),
    103: ErrorKind("repo-invalid", "no valid repository: check the repository settings"),
    104: ErrorKind("command", "the command reported errors; see the pgBackRest log"),
    105: ErrorKind("access", "the storage endpoint refused the request: check credentials/bucket"),
}

_ERROR_LINE = re.compile(r"ERROR: \[(\d{3})\]: (.*)")


def describe(code: int | None) -> ErrorKind:
    if code is not None and code in KINDS:
        return KINDS[code]
    return ErrorKind("error", "see the pgBackRest log under the state directory")


def error_lines(output: str) -> list[tuple[int, str]]:
    """``(code, message)`` of each ``ERROR: [NNN]: message`` line, in order."""
    return [(int(m.group(1)), m.group(2).strip()) for m in _ERROR_LINE.finditer(output)]
