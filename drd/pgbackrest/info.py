"""Typed view of ``pgbackrest info --output=json`` (format of pgBackRest 2.45)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from drd.errors import BackupError

STATUS_OK = 0
STATUS_MISSING_STANZA = 1
STATUS_NO_BACKUP = 2
STATUS_MISSING_STANZA_DATA = 3
#: Codes that describe a usable repository; anything else (4, 5, 99 ...) is an error
#: that `info` reports with exit code 0, so it must be checked here.
HEALTHY_STATUS = frozenset({STATUS_OK, STATUS_MISSING_STANZA, STATUS_NO_BACKUP})


@dataclass(frozen=True)
class BackupSet:
    label: str
    type: str  # full / diff / incr
    started_at: datetime
    stopped_at: datetime
    lsn_start: str | None
    lsn_stop: str | None
    wal_start: str | None
    wal_stop: str | None
    size: int | None
    delta: int | None
    repo_size: int | None
    repo_delta: int | None
    prior: str | None
    error: bool


@dataclass(frozen=True)
class StanzaInfo:
    name: str
    status_code: int
    status_message: str
    cipher: str
    backups: tuple[BackupSet, ...]
    archive_id: str | None
    archive_min: str | None
    archive_max: str | None
    system_id: int | None
    repo_detail: str = ""  # the repository's own status message when it is not ok

    @property
    def exists(self) -> bool:
        return self.status_code != STATUS_MISSING_STANZA

    def latest(self, backup_type: str | None = None) -> BackupSet | None:
        for backup in reversed(self.backups):
            if backup_type is None or backup.type == backup_type:
                return backup
        return None


def _ts(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value), UTC)


def _backup(raw: dict[str, Any]) -> BackupSet:
    info = raw.get("info") or {}
    repo = info.get("repository") or {}
    archive = raw.get("archive") or {}
    lsn = raw.get("lsn") or {}
    return BackupSet(
        label=str(raw["label"]),
        type=str(raw["type"]),
        started_at=_ts(raw["timestamp"]["start"]),
        stopped_at=_ts(raw["timestamp"]["stop"]),
        lsn_start=lsn.get("start"),
        lsn_stop=lsn.get("stop"),
        wal_start=archive.get("start"),
        wal_stop=archive.get("stop"),
        size=info.get("size"),
        delta=info.get("delta"),
        repo_size=repo.get("size"),
        repo_delta=repo.get("delta"),
        prior=raw.get("prior"),
        error=bool(raw.get("error", False)),
    )


def _printable(text: str) -> str:
    """Decrypting with a wrong key yields bytes that must not reach a terminal or log."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _repo_detail(raw: dict[str, Any]) -> str:
    for repo in raw.get("repo") or []:
        status = repo.get("status") or {}
        if status.get("code", 0) != STATUS_OK:
            lines = [line for line in str(status.get("message", "")).splitlines() if line.strip()]
            hints = [line for line in lines if line.startswith("HINT:")]
            return _printable(" ".join(lines[:1] + hints))[:500]
    return ""


def parse(data: Any, stanza: str) -> StanzaInfo:
    """Parse the JSON array ``info`` prints; raise BackupError if ``stanza`` is absent."""
    if not isinstance(data, list):
        raise BackupError("unexpected `pgbackrest info` output: not a JSON array")
    for raw in data:
        if raw.get("name") != stanza:
            continue
        archives = [a for a in raw.get("archive") or [] if a.get("max")]
        current = archives[-1] if archives else {}
        dbs = raw.get("db") or []
        return StanzaInfo(
            name=stanza,
            status_code=int(raw["status"]["code"]),
            status_message=str(raw["status"]["message"]),
            cipher=str(raw.get("cipher", "none")),
            backups=tuple(_backup(b) for b in raw.get("backup") or []),
            archive_id=current.get("id"),
            archive_min=min((a["min"] for a in archives), default=None),
            archive_max=current.get("max"),
            system_id=int(dbs[-1]["system-id"]) if dbs else None,
            repo_detail=_repo_detail(raw),
        )
    raise BackupError(f"`pgbackrest info` has no stanza {stanza!r}")
