"""The audit log's hash chain: canonical JSON, entry hashes and verification (pure functions).

Each entry's ``hash`` is the SHA-256 (hex) of the canonical JSON of the object
``{"action", "actor", "details", "prev_hash", "seq", "subject", "ts"}`` where ``ts`` is
the fixed-width ISO-8601 UTC string of ``drd.catalog.records.format_ts``. Canonical
JSON is ``json.dumps`` with sorted keys, ``(",", ":")`` separators, ASCII only and no
NaN/Infinity, so anyone can recompute a hash with a few lines of any language. The
first entry's ``prev_hash`` is 64 zeros; every other entry carries its predecessor's
hash, so changing, removing or reordering any entry breaks the chain from there on.

Details are redacted (``drd.redact.redact_value``) and normalized to what JSON can
represent before they are hashed and stored, so the stored text hashes the same way
when it is read back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from drd.catalog.records import GENESIS_HASH, AuditEntry, format_ts
from drd.errors import AuditChainError
from drd.redact import redact, redact_value

_HINT = (
    "the audit log was changed outside drd; compare it with the last exported evidence "
    "bundle and investigate before trusting it"
)


def canonical_json(value: Any) -> str:
    """The one serialization used for hashing and for storing audit details."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def sanitize_json(value: Any) -> Any:
    """``value`` with secrets masked, normalized to plain JSON types.

    Secret-looking keys are masked whatever their value, registered secret values are
    masked anywhere; tuples become lists, unknown types their (redacted) ``str``.
    """
    return json.loads(canonical_json(redact_value("value", value)))


def sanitize_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """A details mapping through ``sanitize_json`` (``{}`` for None)."""
    clean: dict[str, Any] = sanitize_json({str(k): v for k, v in (details or {}).items()})
    return clean


def parse_details(text: str, seq: int) -> dict[str, Any]:
    """Stored details text back to a dict; ``AuditChainError`` if it is not a JSON object."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise AuditChainError(
            f"audit log broken at seq {seq}: details are not a JSON object", hint=_HINT
        )
    return value


def sanitize_text(value: str) -> str:
    """Free text (actor, subject, error messages) with registered secrets masked."""
    return redact(value)


def entry_hash(
    *,
    seq: int,
    ts: datetime,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, Any],
    prev_hash: str,
) -> str:
    """SHA-256 hex of the canonical JSON of one entry (every field but ``hash``)."""
    payload = {
        "action": action,
        "actor": actor,
        "details": details,
        "prev_hash": prev_hash,
        "seq": seq,
        "subject": subject,
        "ts": format_ts(ts),
    }
    return hashlib.sha256(canonical_json(payload).encode("ascii")).hexdigest()


def make_entry(
    *,
    seq: int,
    ts: datetime,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, Any],
    prev_hash: str,
) -> AuditEntry:
    """A new entry with its hash computed; ``details`` must already be sanitized."""
    digest = entry_hash(
        seq=seq,
        ts=ts,
        actor=actor,
        action=action,
        subject=subject,
        details=details,
        prev_hash=prev_hash,
    )
    return AuditEntry(
        seq=seq,
        ts=ts,
        actor=actor,
        action=action,
        subject=subject,
        details=dict(details),
        prev_hash=prev_hash,
        hash=digest,
    )


def verify_entries(entries: Iterable[AuditEntry]) -> int:
    """Check the chain of ``entries`` (ordered by seq, starting at 1); return the count.

    Raises ``AuditChainError`` naming the first bad seq and why: a gap in seq (entries
    deleted), a ``prev_hash`` that is not the previous entry's hash (entries removed or
    re-chained), or a ``hash`` that does not match the entry's content (entry changed).
    """
    expected_seq = 1
    prev_hash = GENESIS_HASH
    for entry in entries:
        if entry.seq != expected_seq:
            raise AuditChainError(
                f"audit log broken at seq {entry.seq}: gap in seq "
                f"(expected seq {expected_seq} next; entries are missing)",
                hint=_HINT,
            )
        if entry.prev_hash != prev_hash:
            raise AuditChainError(
                f"audit log broken at seq {entry.seq}: prev_hash mismatch "
                f"(stored {entry.prev_hash[:12]}..., previous entry's hash is {prev_hash[:12]}...)",
                hint=_HINT,
            )
        computed = entry_hash(
            seq=entry.seq,
            ts=entry.ts,
            actor=entry.actor,
            action=entry.action,
            subject=entry.subject,
            details=entry.details,
            prev_hash=entry.prev_hash,
        )
        if computed != entry.hash:
            raise AuditChainError(
                f"audit log broken at seq {entry.seq}: hash mismatch "
                f"(stored {entry.hash[:12]}..., content hashes to {computed[:12]}...)",
                hint=_HINT,
            )
        prev_hash = entry.hash
        expected_seq += 1
    return expected_seq - 1
