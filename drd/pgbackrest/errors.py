"""pgBackRest exit codes: what they mean, whether to retry, what to tell the operator.

pgBackRest's exit code is its error code (``ERROR: [050]: ...``). The table groups the
codes drd meets in practice (checked against pgBackRest 2.45 on these machines); any
other code is reported with pgBackRest's own message.
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
    29: ErrorKind("configuration", "check the generated pgBackRest config (drd db setup)"),
    31: ErrorKind(
        "configuration", "an option is invalid; check the workload and repository config"
    ),
    32: ErrorKind(
        "configuration", "an option value is invalid; check the workload and repository config"
    ),
    37: ErrorKind("configuration", "a required option is missing; run `drd db setup WORKLOAD`"),
    38: ErrorKind("database", "is PostgreSQL running and reachable through its unix socket?"),
    39: ErrorKind("repository", "the repository path is invalid or not accessible"),
    41: ErrorKind("repository", "a repository file is missing; check the repository is complete"),
    44: ErrorKind("repository", "archive/backup info mismatch; run `drd db setup` (stanza-create)"),
    45: ErrorKind(
        "repository", "a repository file could not be read or decrypted: check the passphrase"
    ),
    49: ErrorKind("connection", "cannot connect to the repository host or storage endpoint"),
    50: ErrorKind("lock", "another pgBackRest command holds the lock; retry later"),
    51: ErrorKind("repository", "the stanza or backup set does not match; check the stanza name"),
    55: ErrorKind(
        "repository", "stanza missing or half-created: run `drd db setup WORKLOAD --apply`"
    ),
    56: ErrorKind("database", "the PostgreSQL version or system id does not match the stanza"),
    57: ErrorKind(
        "database", "PostgreSQL connection or query failed; check pg1-socket-path and user"
    ),
    62: ErrorKind("repository", "the backup set is in use or inconsistent"),
    73: ErrorKind("repository", "repository format or file error"),
    75: ErrorKind("repository", "a file in the repository is corrupt or was tampered with"),
    82: ErrorKind(
        "archive", "WAL archive mismatch: the archive belongs to another cluster or timeline"
    ),
    87: ErrorKind(
        "archive", "archive timeout: WAL did not reach the repository; check archive_command"
    ),
    95: ErrorKind("connection", "TLS or network error talking to the storage endpoint"),
    101: ErrorKind(
        "connection", "storage endpoint error (TLS, HTTP 5xx or timeout); retried with backoff"
    ),
    103: ErrorKind("repository", "the repository is invalid or empty"),
    104: ErrorKind(
        "database", "the archive command settings are wrong: run `drd db setup WORKLOAD`"
    ),
    105: ErrorKind(
        "connection", "the storage endpoint refused the request: check credentials and bucket"
    ),
}

_ERROR_LINE = re.compile(r"ERROR: \[(\d{3})\]: (.*)")


def describe(code: int | None) -> ErrorKind:
    if code is not None and code in KINDS:
        return KINDS[code]
    return ErrorKind("error", "see the pgBackRest log under the state directory")


def error_lines(output: str) -> list[tuple[int, str]]:
    """``(code, message)`` of each ``ERROR: [NNN]: message`` line, in order."""
    return [(int(m.group(1)), m.group(2).strip()) for m in _ERROR_LINE.finditer(output)]
