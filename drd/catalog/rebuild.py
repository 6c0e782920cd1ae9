"""``drd catalog rebuild``: make the catalog's index equal to what the repositories hold.

The repository is the truth and the catalog an index of it, so the index can be made
again from the repositories alone: after losing drd's host, after restoring an old
catalog, or to repair drift. For each chosen repository:

- backups: ``pgbackrest info`` of every configured workload's stanza, applied with
  ``drd.backup.db.sync_catalog``, the same path ``drd backup db`` takes;
- snapshots: every manifest under ``snapshots/``, recorded as ``drd snapshot create``
  records it (the manifest holds everything the row does); rows whose manifest is gone
  are forgotten;
- drills: every result object ``drills/<workload>/<stamp>-<id>.json`` that ``drd drill
  run`` writes, recorded as the drill service records it.

Everything is read before anything is written: a repository that cannot be read
aborts the rebuild with the catalog unchanged, because a half-read repository must not
look like an empty one. Rows are upserts, so run links survive (a None ``run_id`` keeps
the stored one) and a second rebuild changes nothing. One audit entry summarizes it.

Left alone, on purpose:

- drill rows without a result object (counted as ``orphaned``): the catalog cannot
  forget drills, and a drill whose result upload failed is still evidence;
- backup rows of workloads no longer configured: without the workload, drd cannot
  write the stanza's pgBackRest config to ask ``info``;
- rows of objects that exist but cannot be read (a damaged manifest, a malformed drill
  result): listed in ``problems``, neither rewritten nor forgotten.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from drd.backup.db import sync_catalog
from drd.catalog.base import Catalog
from drd.catalog.records import BackupRecord, DrillRecord, SnapshotRecord
from drd.config import Estate
from drd.drill.agent import DrillResult
from drd.errors import ConfigError, DrdError, EncryptionError, SnapshotError
from drd.log import get_logger
from drd.pgbackrest.info import StanzaInfo
from drd.pgbackrest.runner import Pgbackrest
from drd.pgbackrest.stanza import StanzaConfig, write_config
from drd.snapshot import format as fmt
from drd.snapshot.keys import CONFIG_KEY
from drd.snapshot.service import open_repo
from drd.storage.factory import open_store

log = get_logger("drd.catalog")

#: Where ``drd.drill.service.result_key`` puts drill results in a repository's store.
DRILLS_PREFIX = "drills/"
AUDIT_ACTION = "catalog.rebuild"

_Record = TypeVar("_Record", BackupRecord, SnapshotRecord, DrillRecord)


@dataclass
class Counts:
    """What a rebuild did to one kind of row."""

    added: int = 0
    updated: int = 0  # present before, some field differed from the repository
    removed: int = 0
    unchanged: int = 0
    #: Drills only: rows without a (readable) result object in the repository, kept.
    orphaned: int = 0


@dataclass
class RebuildReport:
    repositories: list[str]
    backups: Counts = field(default_factory=Counts)
    snapshots: Counts = field(default_factory=Counts)
    drills: Counts = field(default_factory=Counts)
    #: Objects that exist but could not be read; their rows were left as they were.
    problems: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        kinds = (self.backups, self.snapshots, self.drills)
        return any(c.added or c.updated or c.removed for c in kinds)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Holdings:
    """What one repository holds, read before the catalog is touched."""

    name: str
    snapshots: dict[str, SnapshotRecord] = field(default_factory=dict)
    unreadable_snapshots: set[str] = field(default_factory=set)
    drills: dict[tuple[str, datetime], DrillRecord] = field(default_factory=dict)


def rebuild_catalog(
    estate: Estate, catalog: Catalog, *, repository: str | None = None, actor: str = "drd"
) -> RebuildReport:
    """Make the catalog's backups, snapshots and drills of ``repository`` (all when
    None) what the repositories hold; idempotent. ``actor`` is who asked, for the audit.
    """
    names = _chosen(estate, repository)
    report = RebuildReport(repositories=names)
    workloads = [w.name for w in estate.config.workloads if w.repository in names]
    stanzas: list[tuple[StanzaConfig, StanzaInfo]] = []
    for name in workloads:
        cfg = write_config(estate, name)
        stanzas.append((cfg, Pgbackrest(cfg).info()))
    holdings = [_read_repository(estate, name, report.problems) for name in names]

    try:
        for cfg, info in stanzas:
            _sync_backups(catalog, cfg, info, report.backups)
        for held in holdings:
            _sync_snapshots(catalog, held, report.snapshots)
        _sync_drills(catalog, holdings, set(workloads), report.drills)
    except DrdError as exc:
        with contextlib.suppress(DrdError):  # the catalog itself may be what failed
            catalog.append_audit(
                actor, AUDIT_ACTION, repository or "*", {**report.as_dict(), "error": str(exc)}
            )
        raise
    catalog.append_audit(actor, AUDIT_ACTION, repository or "*", report.as_dict())
    log.info(
        "catalog_rebuilt",
        repositories=names,
        backups=asdict(report.backups),
        snapshots=asdict(report.snapshots),
        drills=asdict(report.drills),
        problems=len(report.problems),
    )
    return report


def snapshot_record(snapshot_id: str, manifest: fmt.Manifest, repository: str) -> SnapshotRecord:
    """The catalog row of a snapshot, from its manifest (as ``snapshot_workload`` makes it)."""
    summary = manifest.summary
    return SnapshotRecord(
        id=snapshot_id,
        workload=manifest.workload,
        repository=repository,
        created_at=datetime.fromisoformat(manifest.time),
        parent=manifest.parent,
        files=int(summary.get("files", 0)),
        bytes=int(summary.get("bytes", 0)),
        added_bytes=int(summary.get("bytes_new", 0)),
        db_restore_point=dict(manifest.db_restore_point) if manifest.db_restore_point else None,
        tags=tuple(manifest.tags),
    )


def drill_record(data: dict[str, Any]) -> DrillRecord:
    """The catalog row of a stored drill result (as ``run_drill`` makes it).

    The verdict is the one ``DrillResult`` recomputes from the reasons, never the
    stored word; ``details`` is the stored result itself. ``DrdError`` or ``ValueError``
    if ``data`` is not a drill result.
    """
    from drd.drill.service import drill_record as record  # noqa: PLC0415 - drill stack

    return record(DrillResult.from_dict(data), data)


def _chosen(estate: Estate, repository: str | None) -> list[str]:
    known = [r.name for r in estate.config.repositories]
    if repository is None:
        return known
    if repository not in known:
        raise ConfigError(
            f"unknown repository {repository!r} (known: {', '.join(known) or 'none'})"
        )
    return [repository]


def _read_repository(estate: Estate, name: str, problems: list[str]) -> _Holdings:
    held = _Holdings(name)
    store = open_store(estate.config.repository(name))
    try:
        # Not initialised (a repository only pgBackRest uses): no snapshots. Without its
        # config but with manifests it is damaged: open_repo below says so.
        manifests = next(iter(store.list("snapshots/")), None)
        if store.head(CONFIG_KEY) is not None or manifests is not None:
            _read_snapshots(estate, held, problems)
        for info in store.list(DRILLS_PREFIX):
            if not info.key.endswith(".json"):
                continue
            raw = store.get(info.key)  # a StorageError aborts: unreadable is not absent
            try:
                record = _load_drill(raw)
            except DrdError as exc:
                problems.append(f"repository {name}: drill result {info.key}: {exc}")
                continue
            held.drills[(record.workload, record.started_at)] = record
    finally:
        store.close()
    return held


def _load_drill(raw: bytes) -> DrillRecord:
    try:
        data = json.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError included
        raise DrdError(f"not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise DrdError(f"not a JSON object (a {type(data).__name__})")
    try:
        return drill_record(data)
    except ValueError as exc:  # a naive time, an unknown status
        raise DrdError(str(exc)) from exc


def _read_snapshots(estate: Estate, held: _Holdings, problems: list[str]) -> None:
    repo = open_repo(estate, held.name)
    try:
        for snapshot_id in repo.snapshot_ids():
            try:
                manifest = repo.load_manifest(snapshot_id)
                held.snapshots[snapshot_id] = snapshot_record(snapshot_id, manifest, held.name)
            except (SnapshotError, EncryptionError, ValueError) as exc:
                held.unreadable_snapshots.add(snapshot_id)
                problems.append(f"repository {held.name}: snapshot {snapshot_id}: {exc}")
    finally:
        repo.store.close()


def _sync_backups(catalog: Catalog, cfg: StanzaConfig, info: StanzaInfo, counts: Counts) -> None:
    def rows() -> dict[str, BackupRecord]:
        return {
            b.label: b
            for b in catalog.list_backups(cfg.workload)
            if b.stanza == cfg.stanza and b.repository == cfg.repository
        }

    before = rows()
    sync_catalog(catalog, cfg, info)
    after = rows()
    _tally(counts, before, after)
    counts.removed += len(before.keys() - after.keys())


def _sync_snapshots(catalog: Catalog, held: _Holdings, counts: Counts) -> None:
    before = {s.id: s for s in catalog.list_snapshots() if s.repository == held.name}
    after = {sid: catalog.record_snapshot(record) for sid, record in held.snapshots.items()}
    _tally(counts, before, after)
    for snapshot_id in before.keys() - after.keys() - held.unreadable_snapshots:
        if catalog.forget_snapshot(held.name, snapshot_id):
            counts.removed += 1


def _sync_drills(
    catalog: Catalog, holdings: list[_Holdings], workloads: set[str], counts: Counts
) -> None:
    found = {key: record for held in holdings for key, record in held.drills.items()}
    names = workloads | {workload for workload, _ in found}
    before = {(d.workload, d.started_at): d for d in catalog.list_drills() if d.workload in names}
    after = {key: catalog.record_drill(record) for key, record in found.items()}
    _tally(counts, before, after)
    counts.orphaned += len(before.keys() - after.keys())


def _tally(counts: Counts, before: Mapping[Any, _Record], after: Mapping[Any, _Record]) -> None:
    for key, record in after.items():
        old = before.get(key)
        if old is None:
            counts.added += 1
        elif _content(old) == _content(record):
            counts.unchanged += 1
        else:
            counts.updated += 1


def _content(record: _Record) -> _Record:
    """A record without what the catalog assigns: its row id and the run that made it."""
    if isinstance(record, SnapshotRecord):
        return replace(record, run_id=None)
    return replace(record, id=None, run_id=None)
