"""Read-only views of a repository's snapshots: list rows, one snapshot in detail, diffs.

Pure functions over ``Repository`` reads; rendering (tables, JSON) is the CLI's job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from drd.snapshot import format as fmt
from drd.snapshot.repository import Repository, SnapshotRef

SHORT_ID = 8


@dataclass(frozen=True)
class SnapshotRow:
    """One line of ``drd snapshot list``."""

    id: str
    short_id: str
    time: str
    workload: str
    tier: str
    tags: tuple[str, ...]
    files: int | None
    bytes: int | None
    parent: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _int(summary: Mapping[str, Any], name: str) -> int | None:
    value = summary.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def row(ref: SnapshotRef) -> SnapshotRow:
    m = ref.manifest
    return SnapshotRow(
        id=ref.id,
        short_id=ref.id[:SHORT_ID],
        time=m.time,
        workload=m.workload,
        tier=m.tier,
        tags=tuple(m.tags),
        files=_int(m.summary, "files"),
        bytes=_int(m.summary, "bytes"),
        parent=m.parent,
    )


def list_snapshots(repo: Repository, workload: str | None = None) -> list[SnapshotRow]:
    """Snapshots (of ``workload``), oldest first."""
    return [row(ref) for ref in repo.snapshots(workload)]


@dataclass(frozen=True)
class SnapshotDetail:
    """``drd snapshot show``: the manifest, its summary and the paired DB restore point."""

    id: str
    manifest: fmt.Manifest
    entries: int  # tree entries (files, dirs, symlinks)
    tree_blobs: int

    def as_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "id": self.id,
            "short_id": self.id[:SHORT_ID],
            "time": m.time,
            "workload": m.workload,
            "tier": m.tier,
            "source": m.source,
            "hostname": m.hostname,
            "parent": m.parent,
            "tags": list(m.tags),
            "db_restore_point": dict(m.db_restore_point) if m.db_restore_point else None,
            "summary": dict(m.summary),
            "entries": self.entries,
            "tree_blobs": self.tree_blobs,
            "format_version": m.version,
        }


def show(repo: Repository, snapshot_id: str) -> SnapshotDetail:
    """One snapshot by full id or unique prefix; reads its tree to count the entries."""
    full_id = repo.resolve(snapshot_id)
    manifest = repo.load_manifest(full_id)
    return SnapshotDetail(full_id, manifest, len(repo.tree(manifest)), len(manifest.tree))


@dataclass(frozen=True)
class Change:
    path: str
    old: fmt.TreeEntry
    new: fmt.TreeEntry
    fields: tuple[str, ...]  # what differs: type, size, content, mode, target

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "fields": list(self.fields),
            "old": _entry_dict(self.old),
            "new": _entry_dict(self.new),
        }


@dataclass(frozen=True)
class Diff:
    """Paths only in ``b`` (added), only in ``a`` (removed), in both but different."""

    a: str
    b: str
    added: tuple[fmt.TreeEntry, ...]
    removed: tuple[fmt.TreeEntry, ...]
    changed: tuple[Change, ...]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "added": [_entry_dict(e) for e in self.added],
            "removed": [_entry_dict(e) for e in self.removed],
            "changed": [c.as_dict() for c in self.changed],
            "summary": {
                "added": len(self.added),
                "removed": len(self.removed),
                "changed": len(self.changed),
            },
        }


def _entry_dict(entry: fmt.TreeEntry) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "path": entry.path,
        "type": entry.type,
        "mode": f"{entry.mode:04o}",
        "mtime_ns": entry.mtime_ns,
    }
    if entry.type == "file":
        doc["size"] = entry.size
    if entry.target is not None:
        doc["target"] = entry.target
    return doc


def _differences(old: fmt.TreeEntry, new: fmt.TreeEntry) -> tuple[str, ...]:
    """Fields that differ; an mtime alone is not a change (the content is the same)."""
    fields = []
    if old.type != new.type:
        fields.append("type")
    if old.size != new.size:
        fields.append("size")
    if old.content != new.content:
        fields.append("content")
    if old.mode != new.mode:
        fields.append("mode")
    if old.target != new.target:
        fields.append("target")
    return tuple(fields)


def diff_trees(
    a: Sequence[fmt.TreeEntry], b: Sequence[fmt.TreeEntry], *, a_id: str = "", b_id: str = ""
) -> Diff:
    old = {e.path: e for e in a}
    new = {e.path: e for e in b}
    changed = []
    for path in sorted(old.keys() & new.keys()):
        fields = _differences(old[path], new[path])
        if fields:
            changed.append(Change(path, old[path], new[path], fields))
    return Diff(
        a=a_id,
        b=b_id,
        added=tuple(new[p] for p in sorted(new.keys() - old.keys())),
        removed=tuple(old[p] for p in sorted(old.keys() - new.keys())),
        changed=tuple(changed),
    )


def diff(repo: Repository, a: str, b: str) -> Diff:
    """What changed from snapshot ``a`` to snapshot ``b`` (ids or unique prefixes)."""
    a_id, b_id = repo.resolve(a), repo.resolve(b)
    return diff_trees(
        repo.tree(repo.load_manifest(a_id)),
        repo.tree(repo.load_manifest(b_id)),
        a_id=a_id,
        b_id=b_id,
    )
