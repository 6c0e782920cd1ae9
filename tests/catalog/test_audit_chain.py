"""The audit log: hash format, chaining, tamper detection, append-only triggers, concurrency."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import psycopg
import pytest

from drd.catalog import GENESIS_HASH, AuditEntry, Catalog, open_catalog
from drd.catalog import sql as catalog_sql
from drd.catalog.audit import canonical_json, make_entry, sanitize_details, verify_entries
from drd.errors import AuditChainError
from drd.redact import MASK, register_secret

if TYPE_CHECKING:
    from conftest import Target

TS = datetime(2024, 5, 1, 3, 0, 0, 5, tzinfo=UTC)


def _chain(count: int) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    prev = GENESIS_HASH
    for seq in range(1, count + 1):
        entry = make_entry(
            seq=seq,
            ts=TS + timedelta(seconds=seq),
            actor="drd",
            action="backup.start",
            subject=f"erp/{seq}",
            details={"n": seq},
            prev_hash=prev,
        )
        entries.append(entry)
        prev = entry.hash
    return entries


# -- pure functions --------------------------------------------------------------------------


def test_hash_is_sha256_of_canonical_json() -> None:
    """An entry hash is sha256 over sorted, compact JSON of every field but the hash."""
    entry = make_entry(
        seq=1,
        ts=TS,
        actor="alice",
        action="failover.start",
        subject="erp",
        details={"b": [1, 2.5], "a": "é"},
        prev_hash=GENESIS_HASH,
    )
    expected = (
        '{"action":"failover.start","actor":"alice","details":{"a":"\\u00e9","b":[1,2.5]},'
        f'"prev_hash":"{"0" * 64}","seq":1,"subject":"erp",'
        '"ts":"2024-05-01T03:00:00.000005+00:00"}'
    )
    assert entry.hash == hashlib.sha256(expected.encode()).hexdigest()
    assert GENESIS_HASH == "0" * 64


def test_canonical_json_is_stable_and_strict() -> None:
    """Key order does not matter; NaN is refused rather than serialized ambiguously."""
    assert canonical_json({"b": 1, "a": {"d": 2, "c": 3}}) == '{"a":{"c":3,"d":2},"b":1}'
    with pytest.raises(ValueError, match="not JSON compliant"):
        canonical_json({"x": float("nan")})


def test_sanitize_details_masks_and_normalizes() -> None:
    """Details lose secrets (by key and by registered value) and become plain JSON."""
    register_secret("value-of-a-secret")
    clean = sanitize_details(
        {
            "password": "hunter2",
            "nested": {"api_key": "k", "ok": ("a", 1)},
            "url": "postgresql://drd:pw123@db/x",
            "text": "uses value-of-a-secret here",
            "when": TS,
        }
    )
    assert clean == {
        "password": MASK,
        "nested": {"api_key": MASK, "ok": ["a", 1]},
        "url": f"postgresql://drd:{MASK}@db/x",
        "text": f"uses {MASK} here",
        "when": str(TS),
    }


def test_verify_entries_accepts_a_good_chain() -> None:
    """A well-formed chain verifies and returns its length; an empty one is 0."""
    assert verify_entries(_chain(5)) == 5
    assert verify_entries([]) == 0


def test_verify_entries_names_each_kind_of_break() -> None:
    """Changed content, a re-chained entry and a missing entry each name the first bad seq."""
    chain = _chain(5)
    changed = [*chain[:2], replace(chain[2], subject="other"), *chain[3:]]
    with pytest.raises(AuditChainError, match=r"seq 3: hash mismatch"):
        verify_entries(changed)
    rehashed = make_entry(
        seq=3,
        ts=chain[2].ts,
        actor="mallory",
        action=chain[2].action,
        subject=chain[2].subject,
        details=chain[2].details,
        prev_hash=chain[2].prev_hash,
    )
    with pytest.raises(AuditChainError, match=r"seq 4: prev_hash mismatch"):
        verify_entries([*chain[:2], rehashed, *chain[3:]])
    with pytest.raises(AuditChainError, match=r"seq 4: gap in seq \(expected seq 3"):
        verify_entries([*chain[:2], *chain[3:]])
    with pytest.raises(AuditChainError, match=r"seq 2: gap in seq \(expected seq 1"):
        verify_entries(chain[1:])


# -- on both backends -----------------------------------------------------------------------------


def test_appends_link_hashes(catalog: Catalog) -> None:
    """Each entry carries the previous entry's hash; the first carries 64 zeros."""
    first = catalog.append_audit("alice", "failover.plan", "erp", {"dry_run": True})
    second = catalog.append_audit("drd", "retention.delete", "erp/backup/L1")
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert first.ts.tzinfo is UTC
    assert catalog.audit_entries() == [first, second]
    assert catalog.audit_entries(since_seq=1) == [second]
    assert catalog.audit_entries(limit=1) == [first]
    assert catalog.verify_audit_chain() == 2


def test_empty_chain_verifies(catalog: Catalog) -> None:
    """A catalog without audit entries verifies with count 0."""
    assert catalog.verify_audit_chain() == 0


def test_awkward_details_still_verify(catalog: Catalog) -> None:
    """Floats, big numbers, unicode and nesting read back to the same hash."""
    details = {"f": 0.1, "big": 1e16, "int": 2**70, "u": "Zürich ✓", "l": [[], {}, None]}
    entry = catalog.append_audit("drd", "drill.finish", "erp", details)
    assert catalog.audit_entries() == [entry]
    assert entry.details == details
    assert catalog.verify_audit_chain() == 1


def test_verify_pages_through_the_log(catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    """Verification reads the log in pages and still checks links across page boundaries."""
    monkeypatch.setattr(catalog_sql, "_AUDIT_PAGE", 3)
    for n in range(7):
        catalog.append_audit("drd", "tick", "erp", {"n": n})
    assert catalog.verify_audit_chain() == 7


def test_changed_details_are_detected(catalog: Catalog, target: Target) -> None:
    """Editing an entry's details behind drd's back fails verification at that seq."""
    for n in range(3):
        catalog.append_audit("drd", "backup.finish", "erp", {"n": n})
    target.tamper("UPDATE audit_log SET details = ? WHERE seq = 2", ('{"n":99}',))
    with pytest.raises(AuditChainError, match=r"seq 2: hash mismatch"):
        catalog.verify_audit_chain()


def test_rechained_entry_is_detected(catalog: Catalog, target: Target) -> None:
    """An edited entry whose hash was recomputed breaks the next entry's prev_hash."""
    entries = [catalog.append_audit("drd", "snapshot", "erp", {"n": n}) for n in range(3)]
    forged = make_entry(
        seq=2,
        ts=entries[1].ts,
        actor="mallory",
        action=entries[1].action,
        subject=entries[1].subject,
        details=entries[1].details,
        prev_hash=entries[1].prev_hash,
    )
    target.tamper(
        "UPDATE audit_log SET actor = ?, hash = ? WHERE seq = 2", (forged.actor, forged.hash)
    )
    with pytest.raises(AuditChainError, match=r"seq 3: prev_hash mismatch"):
        catalog.verify_audit_chain()


def test_deleted_entry_is_detected(catalog: Catalog, target: Target) -> None:
    """Deleting an entry behind drd's back is reported as a gap at the next seq."""
    for n in range(4):
        catalog.append_audit("drd", "retention", "erp", {"n": n})
    target.tamper("DELETE FROM audit_log WHERE seq = 2")
    with pytest.raises(AuditChainError, match=r"seq 3: gap in seq"):
        catalog.verify_audit_chain()


def test_update_and_delete_are_rejected_by_triggers(catalog: Catalog, target: Target) -> None:
    """The database itself refuses UPDATE and DELETE (and TRUNCATE) on audit_log."""
    catalog.append_audit("drd", "backup.start", "erp")
    statements = ["UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"]
    if target.backend == "postgresql":
        statements.append("TRUNCATE audit_log")
    for statement in statements:
        with pytest.raises((sqlite3.DatabaseError, psycopg.Error), match="append-only"):
            target.raw(statement)
    assert target.raw("SELECT actor FROM audit_log") == [("drd",)]
    assert catalog.verify_audit_chain() == 1


def test_concurrent_appends_make_one_chain(catalog: Catalog, target: Target) -> None:
    """Threads appending through two catalog objects at once never fork the chain."""
    second = open_catalog(target.url)
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def appender(cat: Catalog, worker: int) -> None:
        try:
            barrier.wait(timeout=10)
            for n in range(15):
                cat.append_audit(f"worker-{worker}", "tick", "erp", {"n": n})
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=appender, args=(catalog if w % 2 else second, w)) for w in range(6)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        second.close()
    assert errors == []
    assert catalog.verify_audit_chain() == 90
    assert [e.seq for e in catalog.audit_entries()] == list(range(1, 91))


def test_secrets_are_masked_in_the_audit_log(catalog: Catalog, target: Target) -> None:
    """Secret-looking keys and registered secrets are stored masked, and still verify."""
    register_secret("registered-s3cret")
    entry = catalog.append_audit(
        "alice",
        "repository.rotate_key",
        "main",
        {"passphrase": "old-pass", "s3": {"secret_access_key": "AKIA"}, "n": "registered-s3cret"},
    )
    assert entry.details == {"passphrase": MASK, "s3": {"secret_access_key": MASK}, "n": MASK}
    stored = target.raw("SELECT details FROM audit_log")[0][0]
    assert json.loads(stored) == entry.details
    for secret in ("old-pass", "AKIA", "registered-s3cret"):
        assert secret not in stored
    assert catalog.verify_audit_chain() == 1
