"""Forget and prune: drop snapshots, then the packs and index entries no kept snapshot needs.

Retention is a plan that can be read before it is applied:

    plan_prune(repo, forget)   read-only (no lock): which manifests go, which packs are
                               deleted or repacked, which index objects are superseded,
                               what stays because it is Object-Locked or too young
    apply_prune(repo, plan)    under the *exclusive* repository lock: plan again, then act

Live data: every blob (tree chunks and file chunks) of every snapshot not forgotten. A
pack without a live blob is deleted; a pack whose live share (stored blob bytes) is
below ``repack_threshold`` is repacked: its live blobs are read, checked (decrypted and
hashed back to their id) and copied, still sealed, into new packs by the snapshot
writer's packer, and the old pack is deleted. A pack no index lists is a crash leftover
and goes like an unreferenced one. A blob stored twice (two writers raced) counts as
live in one pack only: the one whose pack is otherwise the most used.

Concurrent writers:
    * ``apply_prune`` holds the exclusive lock for the whole apply. ``drd.snapshot.lock``
      refuses it while any live shared lock exists (snapshot create, restore, verify):
      with ``lock_wait`` it retries until that deadline, then raises ``LockError`` naming
      the holder. While it is held, new snapshots are refused.
    * Under the lock the repository is planned again: a manifest written since the plan
      was read makes its packs live again. The plan given only bounds what may go:
      nothing the re-plan would remove is removed unless the given plan listed it.
    * Grace period: a pack modified less than ``grace`` ago is never deleted or repacked
      (reported in ``kept_for_grace``). This protects the packs of a writer whose lock
      went stale (paused for more than 30 minutes, host cut off) and is still running.
      It cannot protect an *old* blob that such a writer deduplicated against: that is
      what the lock is for (restic has the same limit).

Crash safety, in this order (a crash between any two steps leaves every remaining
snapshot restorable; running prune again finishes the job):
    1. delete the forgotten manifests (a snapshot ends when its manifest goes; what it
       alone used is now unreferenced and simply waits for this or the next prune);
    2. write the repacked packs, then index objects for them and for every kept pack
       that a superseded index lists (all live blobs are indexed at a pack that exists,
       twice for a moment: both copies exist, so either index entry reads);
    3. delete the superseded index objects (those naming a pack that goes): from here
       the old packs are unindexed, i.e. ordinary crash leftovers;
    4. delete the old packs.
    Index objects go *before* packs on purpose: readers take a blob's location from the
    first index object that lists it (by key order), so an index naming a deleted pack
    next to a new one could send a restore to the deleted copy.

Object Lock: every object about to be deleted is looked up (``head``) first, at
planning and again right before its delete; one whose ``retain_until`` is in the
future (or under legal hold) is never deleted and is reported as locked until that
date. A locked forgotten manifest keeps its snapshot (and so its packs); a locked
superseded index keeps every pack it lists. A delete the store still refuses
(``ObjectLockedError``: an older, hidden version is locked) is handled the same way:
a manifest that stays makes apply plan again before anything else goes. Other
deletion failures raise ``StorageError`` naming the object.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from drd.errors import LockError, SnapshotError, StorageError
from drd.log import get_logger
from drd.snapshot import format as fmt
from drd.snapshot.create import CreateStats, _Packer
from drd.snapshot.lock import RepositoryLock
from drd.snapshot.repository import Repository
from drd.storage import ObjectInfo, ObjectStore
from drd.storage.base import ObjectLockedError

log = get_logger("drd.snapshot.prune")

LOCK_POLL = 2.0  # seconds between attempts at the exclusive lock while waiting
INDEX_BLOBS = 50_000  # blob entries per index object written by prune
OnDelete = Callable[[str, str], None]  # (kind: snapshot | index | pack, object key)
Locked = tuple[str, datetime | None]  # (object key, retain-until date; None: legal hold)


@dataclass(frozen=True)
class PrunePlan:
    """What a prune would do; read-only, JSON-able with ``as_dict``.

    ``locked`` lists objects that would have been deleted but are Object-Locked (kept),
    with their retain-until date (None for a legal hold, which has no date);
    ``kept_for_grace`` packs that would have been deleted or repacked but were modified
    less than ``grace`` ago (they may belong to a snapshot being written).
    ``bytes_freed`` = bytes of the packs that go, less ``bytes_repacked`` (the live
    blobs copied into new packs).
    """

    forget: tuple[str, ...]
    delete_packs: tuple[str, ...]
    repack_packs: tuple[str, ...]
    delete_indexes: tuple[str, ...]
    locked: tuple[Locked, ...]
    kept_for_grace: tuple[str, ...]
    bytes_freed: int
    bytes_repacked: int
    repack_threshold: float = 0.5
    grace: timedelta = timedelta(hours=1)
    planned_at: datetime | None = None

    def locked_notes(self) -> list[str]:
        """One line per locked object: ``KEY: locked until DATE``."""
        return [f"{key}: {_locked_text(until)}" for key, until in self.locked]

    def as_dict(self) -> dict[str, Any]:
        return {
            "forget": list(self.forget),
            "delete_packs": list(self.delete_packs),
            "repack_packs": list(self.repack_packs),
            "delete_indexes": list(self.delete_indexes),
            "locked": _locked_dicts(self.locked),
            "kept_for_grace": list(self.kept_for_grace),
            "bytes_freed": self.bytes_freed,
            "bytes_repacked": self.bytes_repacked,
            "repack_threshold": self.repack_threshold,
            "grace_seconds": self.grace.total_seconds(),
            "planned_at": self.planned_at.isoformat() if self.planned_at else None,
        }


@dataclass
class PruneReport:
    """What ``apply_prune`` did. ``not_applied``: packs the given plan would remove that
    the plan made under the lock keeps (a new snapshot uses them, they are still within
    the grace period at apply time, or they became locked)."""

    location: str
    plan: PrunePlan  # the plan made under the lock, the one applied
    forgotten: list[str] = field(default_factory=list)
    deleted_indexes: list[str] = field(default_factory=list)
    deleted_packs: list[str] = field(default_factory=list)
    repacked_packs: list[str] = field(default_factory=list)
    packs_written: int = 0
    indexes_written: int = 0
    bytes_written: int = 0
    bytes_deleted: int = 0  # pack bytes deleted (repacked ones included)
    locked: list[Locked] = field(default_factory=list)
    not_applied: list[str] = field(default_factory=list)
    duration_seconds: float = 0.0

    @property
    def bytes_freed(self) -> int:
        return self.bytes_deleted - self.bytes_written

    def locked_notes(self) -> list[str]:
        return [f"{key}: {_locked_text(until)}" for key, until in self.locked]

    def as_dict(self) -> dict[str, Any]:
        doc = {k: v for k, v in self.__dict__.items() if k not in ("plan", "locked")}
        doc["plan"] = self.plan.as_dict()
        doc["locked"] = _locked_dicts(self.locked)
        doc["bytes_freed"] = self.bytes_freed
        return doc


def _locked_text(until: datetime | None) -> str:
    if until is None:
        return "locked (legal hold, no end date)"
    return f"locked until {until.astimezone(UTC):%Y-%m-%d %H:%M:%SZ}"


def _locked_dicts(locked: Iterable[Locked]) -> list[dict[str, str | None]]:
    return [
        {
            "key": key,
            "retain_until": until.isoformat() if until else None,
            "note": _locked_text(until),
        }
        for key, until in locked
    ]


def _lock_of(info: ObjectInfo | None, now: datetime) -> Locked | None:
    """(key, retain-until) if Object Lock forbids deleting the object at ``now``."""
    if info is None or not info.locked(now):
        return None
    return (info.key, None if info.legal_hold else info.retain_until)


# -- planning ------------------------------------------------------------------------------


@dataclass
class _Analysis:
    """A plan plus what applying it needs (entries of packs and indexes)."""

    plan: PrunePlan
    by_pack: dict[str, dict[str, fmt.BlobEntry]]  # every indexed entry, by pack then blob
    index_packs: dict[str, set[str]]  # index id -> packs it lists
    live: dict[str, list[fmt.BlobEntry]]  # repacked pack -> its live blobs
    sizes: dict[str, int]  # pack id -> stored size (packs present in data/)


class _Planner:
    def __init__(
        self,
        repo: Repository,
        *,
        threshold: float,
        grace: timedelta,
        now: datetime,
        allowed: set[str] | None,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("repack_threshold must be between 0 and 1")
        if grace < timedelta(0):
            raise ValueError("grace must not be negative")
        self.repo = repo
        self.store = repo.store
        self.threshold = threshold
        self.grace = grace
        self.now = now
        self.allowed = allowed  # packs that may go (apply: those the given plan listed)
        self.locked: dict[str, datetime | None] = {}

    def _lock_check(self, key: str) -> bool:
        """True if ``key`` is Object-Locked (and record it)."""
        lock = _lock_of(self.store.head(key), self.now)
        if lock is not None:
            self.locked[key] = lock[1]
            log.info("prune_object_locked", key=key, note=_locked_text(lock[1]))
        return lock is not None

    def forget_ids(
        self, forget: Iterable[str], existing: set[str], *, missing_ok: bool
    ) -> list[str]:
        out: list[str] = []
        for wanted in dict.fromkeys(forget):
            if wanted in existing:
                sid = wanted
            elif missing_ok:
                continue  # already gone (a previous prune, or a re-run after a crash)
            else:
                sid = self.repo.resolve(wanted)
            if sid not in out and not self._lock_check(fmt.snapshot_key(sid)):
                out.append(sid)
        return out

    def run(self, forget: Iterable[str], *, missing_ok: bool) -> _Analysis:
        existing = set(self.repo.snapshot_ids())
        forgotten = self.forget_ids(forget, existing, missing_ok=missing_ok)
        kept = sorted(existing - set(forgotten))

        index_packs: dict[str, set[str]] = {}
        by_pack: dict[str, dict[str, fmt.BlobEntry]] = {}
        first: dict[str, fmt.BlobEntry] = {}  # where readers look: first index wins
        for index_id in self.repo.index_ids():
            sealed = self.repo.open_doc(fmt.index_key(index_id), fmt.INDEX_AAD)
            packs = index_packs.setdefault(index_id, set())
            for entry in fmt.decode_index(sealed, index_id):
                packs.add(entry.pack)
                by_pack.setdefault(entry.pack, {}).setdefault(entry.id, entry)
                first.setdefault(entry.id, entry)
        listed = {info.key.rsplit("/", 1)[-1]: info for info in self.store.list("data/")}
        sizes = {pack: info.size for pack, info in listed.items()}

        used = self._used_blobs(kept, first)
        live_by_pack = self._choose_locations(used, by_pack, sizes)

        delete: set[str] = set()
        repack: set[str] = set()
        young: set[str] = set()
        for pack in sorted(set(by_pack) | set(listed)):
            live = live_by_pack.get(pack, [])
            info = listed.get(pack)
            if info is None:
                if not live:
                    delete.add(pack)  # indexed, already gone: only its entries go
                else:
                    log.warning("prune_live_pack_missing", pack=fmt.pack_key(pack))
                continue
            stored = sum(e.length for e in by_pack.get(pack, {}).values()) or info.size
            share = sum(e.length for e in live) / max(stored, 1)
            if live and share >= self.threshold:
                continue
            if info.last_modified is None or self.now - info.last_modified < self.grace:
                young.add(pack)
            elif self.allowed is not None and pack not in self.allowed:
                continue
            elif not self._lock_check(fmt.pack_key(pack)):
                (repack if live else delete).add(pack)

        superseded = self._superseded(index_packs, delete | repack)
        locked_indexes = {i for i in superseded if self._lock_check(fmt.index_key(i))}
        if locked_indexes:  # a locked index keeps every pack it lists
            pinned = {p for i in locked_indexes for p in index_packs[i]}
            delete -= pinned
            repack -= pinned
            superseded = self._superseded(index_packs, delete | repack) - locked_indexes

        to_copy = {pack: live_by_pack[pack] for pack in repack}
        bytes_repacked = sum(e.length for blobs in to_copy.values() for e in blobs)
        gone = sum(sizes.get(pack, 0) for pack in delete | repack)
        plan = PrunePlan(
            forget=tuple(forgotten),
            delete_packs=tuple(sorted(delete)),
            repack_packs=tuple(sorted(repack)),
            delete_indexes=tuple(sorted(superseded)),
            locked=tuple(sorted(self.locked.items())),
            kept_for_grace=tuple(sorted(young)),
            bytes_freed=gone - bytes_repacked,
            bytes_repacked=bytes_repacked,
            repack_threshold=self.threshold,
            grace=self.grace,
            planned_at=self.now,
        )
        return _Analysis(plan, by_pack, index_packs, to_copy, sizes)

    @staticmethod
    def _superseded(index_packs: Mapping[str, set[str]], removed: set[str]) -> set[str]:
        return {i for i, packs in index_packs.items() if packs & removed}

    def _used_blobs(self, kept: list[str], first: Mapping[str, fmt.BlobEntry]) -> set[str]:
        """Tree and content blobs of the kept snapshots; refuses if any is not indexed
        (a pack whose index is lost would otherwise look like garbage)."""
        used: set[str] = set()
        seen: set[tuple[str, ...]] = set()
        broken: list[str] = []
        for sid in kept:
            manifest = self.repo.load_manifest(sid)
            used.update(manifest.tree)
            if manifest.tree in seen:
                continue
            seen.add(manifest.tree)
            if any(t not in first for t in manifest.tree):
                broken.append(sid)
                continue
            data = b"".join(self._read(first[t]) for t in manifest.tree)
            entries = fmt.decode_tree(data, f"snapshot {sid[:8]}")
            content = {b for e in entries for b in e.content}
            if any(b not in first for b in content):
                broken.append(sid)
            used.update(content)
        if broken:
            raise SnapshotError(
                f"{len(broken)} kept snapshot(s) refer to blobs in no index of "
                f"{self.store.location} ({', '.join(s[:8] for s in broken)}): prune would "
                "not know what they use, nothing was changed",
                hint="run 'drd snapshot verify' and repair or forget the damaged snapshots",
            )
        return used

    def _read(self, entry: fmt.BlobEntry) -> bytes:
        key = fmt.pack_key(entry.pack)
        sealed = self.store.get_range(key, entry.offset, entry.length)
        if len(sealed) != entry.length:
            raise SnapshotError(f"pack {key}: truncated at blob {entry.id}")
        return self.repo.decode_blob(entry, sealed)

    @staticmethod
    def _choose_locations(
        used: set[str], by_pack: Mapping[str, Mapping[str, fmt.BlobEntry]], sizes: Mapping[str, int]
    ) -> dict[str, list[fmt.BlobEntry]]:
        """pack -> its live blobs, each live blob counted in one pack only: one that
        exists and is the most used (counting every copy), so duplicates left by racing
        writers or an interrupted prune end up in the fuller pack."""
        copies: dict[str, list[fmt.BlobEntry]] = {}
        share: dict[str, float] = {}
        for pack, blobs in by_pack.items():
            live = [e for e in blobs.values() if e.id in used]
            for entry in live:
                copies.setdefault(entry.id, []).append(entry)
            total = sum(e.length for e in blobs.values())
            share[pack] = sum(e.length for e in live) / max(total, 1)
        out: dict[str, list[fmt.BlobEntry]] = {}
        for entries in copies.values():
            best = max(entries, key=lambda e: (e.pack in sizes, share[e.pack], e.pack))
            out.setdefault(best.pack, []).append(best)
        return out


def plan_prune(
    repo: Repository,
    forget: Iterable[str],
    *,
    repack_threshold: float = 0.5,
    grace: timedelta = timedelta(hours=1),
    now: datetime | None = None,
) -> PrunePlan:
    """What forgetting ``forget`` (ids or unique prefixes) and pruning would do.

    Reads manifests, indexes and the tree blobs of kept snapshots, and HEADs the objects
    it would delete; changes nothing and takes no lock (``apply_prune`` plans again under
    its lock; a plan read while another prune applies may fail on a vanished object:
    plan again). ``SnapshotError`` for an unknown id or a kept snapshot with unindexed
    blobs. See the module docstring.
    """
    planner = _Planner(
        repo,
        threshold=repack_threshold,
        grace=grace,
        now=now or datetime.now(UTC),
        allowed=None,
    )
    plan = planner.run(forget, missing_ok=False).plan
    log.info(
        "prune_planned",
        location=repo.store.location,
        forget=len(plan.forget),
        delete_packs=len(plan.delete_packs),
        repack_packs=len(plan.repack_packs),
        locked=len(plan.locked),
        kept_for_grace=len(plan.kept_for_grace),
        bytes_freed=plan.bytes_freed,
    )
    return plan


# -- applying ------------------------------------------------------------------------------


def _exclusive_lock(store: ObjectStore, wait: float) -> RepositoryLock:
    deadline = time.monotonic() + wait
    while True:
        try:
            return RepositoryLock(store, "exclusive").acquire()
        except LockError as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockError(
                    f"prune needs the repository to itself: {exc.message}",
                    hint="prune waits for snapshots, restores and verifies to finish: "
                    "retry later or give a longer lock wait",
                ) from exc
            log.info("prune_waiting_for_lock", reason=exc.message)
            time.sleep(min(LOCK_POLL, remaining))


class _Applier:
    def __init__(
        self, repo: Repository, analysis: _Analysis, report: PruneReport, on_delete: OnDelete | None
    ) -> None:
        self.repo = repo
        self.store = repo.store
        self.analysis = analysis
        self.report = report
        self.on_delete = on_delete

    def delete(self, kind: str, key: str) -> bool:
        """Delete ``key`` unless Object-Locked; True if it is gone."""
        info = self.store.head(key)
        if info is None:
            return True  # already gone (a re-run after a crash)
        lock = _lock_of(info, datetime.now(UTC))
        if lock is None:
            try:
                self.store.delete(key)
            except ObjectLockedError as exc:  # e.g. an older, hidden version is locked
                lock = (key, None if exc.legal_hold else exc.retain_until)
            except StorageError as exc:
                where = f"{kind} object {key} in {self.store.location}"
                raise StorageError(
                    f"prune: cannot delete {where}: {exc.message}",
                    hint="fix the storage problem, then run prune again: it resumes safely",
                ) from exc
        if lock is not None:
            self.report.locked.append(lock)
            log.warning("prune_object_locked", key=key, note=_locked_text(lock[1]))
            return False
        if self.on_delete is not None:
            self.on_delete(kind, key)
        return True

    def forget(self) -> None:
        for sid in self.analysis.plan.forget:
            if self.delete("snapshot", fmt.snapshot_key(sid)):
                self.report.forgotten.append(sid)

    def repack(self) -> None:
        """New packs for the live blobs of repacked packs, then index objects for them and
        for the kept packs that superseded indexes list."""
        plan = self.analysis.plan
        stats = CreateStats()
        before = set(self.repo.index_ids())
        if plan.repack_packs:
            packer = _Packer(self.repo, self.repo.config.pack_size, 2, stats)
            try:
                for pack in plan.repack_packs:
                    key = fmt.pack_key(pack)
                    data = self.store.get(key)
                    for entry in sorted(self.analysis.live[pack], key=lambda e: e.offset):
                        sealed = data[entry.offset : entry.offset + entry.length]
                        if len(sealed) != entry.length:
                            raise SnapshotError(f"pack {key}: truncated at blob {entry.id}")
                        self.repo.decode_blob(entry, sealed)  # never copy a damaged blob
                        packer.add(
                            entry.id, entry.type, sealed, entry.raw_length, entry.compression
                        )
                packer.flush()
            finally:
                packer.close()
        self.report.packs_written = stats.packs_written
        self.report.bytes_written = stats.bytes_written
        self.report.indexes_written = len(set(self.repo.index_ids()) - before)
        removed = set(plan.delete_packs) | set(plan.repack_packs)
        keep = sorted(
            {p for i in plan.delete_indexes for p in self.analysis.index_packs[i]} - removed
        )
        batch: dict[str, list[fmt.BlobEntry]] = {}
        count = 0
        for pack in keep:
            batch[pack] = list(self.analysis.by_pack[pack].values())
            count += len(batch[pack])
            if count >= INDEX_BLOBS:
                self._write_index(batch)
                batch, count = {}, 0
        self._write_index(batch)

    def _write_index(self, packs: Mapping[str, list[fmt.BlobEntry]]) -> None:
        if not packs:
            return
        sealed = self.repo.keys.seal(fmt.encode_index(packs), fmt.INDEX_AAD)
        self.store.put(fmt.index_key(fmt.content_id(sealed)), sealed)
        self.report.indexes_written += 1
        self.report.bytes_written += len(sealed)

    def drop(self) -> None:
        """Superseded index objects first, then the packs (see the module docstring)."""
        plan = self.analysis.plan
        pinned: set[str] = set()  # packs a (newly) locked old index still lists
        for index_id in plan.delete_indexes:
            if self.delete("index", fmt.index_key(index_id)):
                self.report.deleted_indexes.append(index_id)
            else:
                pinned |= self.analysis.index_packs[index_id]
        repacked = set(plan.repack_packs)
        for pack in sorted(set(plan.delete_packs) | repacked):
            if pack in pinned or not self.delete("pack", fmt.pack_key(pack)):
                continue
            self.report.bytes_deleted += self.analysis.sizes.get(pack, 0)
            (self.report.repacked_packs if pack in repacked else self.report.deleted_packs).append(
                pack
            )


def apply_prune(
    repo: Repository,
    plan: PrunePlan,
    *,
    on_delete: OnDelete | None = None,
    lock_wait: float = 0.0,
) -> PruneReport:
    """Apply ``plan`` under the exclusive lock: forget, repack, drop indexes, drop packs.

    Plans again under the lock (with the plan's threshold and grace, at the current
    time) and removes only what both plans agree on, in the crash-safe order of the
    module docstring. ``lock_wait``: seconds to keep retrying the lock while snapshots,
    restores or verifies hold it (then ``LockError`` naming the holder). ``on_delete``
    is called with (``snapshot`` | ``index`` | ``pack``, key) after each deletion, e.g.
    to audit it; an exception from it stops the prune (a re-run continues).
    """
    started = time.monotonic()
    approved = set(plan.delete_packs) | set(plan.repack_packs)
    # packs the plan kept only for Object Lock: looked at again, to report them
    was_locked = {key.rsplit("/", 1)[-1] for key, _ in plan.locked if key.startswith("data/")}

    def replan(forget: Iterable[str]) -> _Analysis:
        planner = _Planner(
            repo,
            threshold=plan.repack_threshold,
            grace=plan.grace,
            now=datetime.now(UTC),
            allowed=approved | was_locked,
        )
        return planner.run(forget, missing_ok=True)

    lock = _exclusive_lock(repo.store, lock_wait)
    try:
        analysis = replan(plan.forget)
        report = PruneReport(repo.store.location, analysis.plan, locked=list(analysis.plan.locked))
        applier = _Applier(repo, analysis, report, on_delete)
        applier.forget()
        if len(report.forgotten) < len(analysis.plan.forget):
            # A manifest the store refused to delete stays: its snapshot is kept, so
            # plan once more (the deleted manifests are gone already).
            analysis = replan(())
            applier.analysis = analysis
            report.plan = analysis.plan
            report.locked += [x for x in analysis.plan.locked if x not in report.locked]
        still_there = set(analysis.sizes) | set(analysis.by_pack)
        current = analysis.plan
        report.not_applied = sorted(
            (approved & still_there) - set(current.delete_packs) - set(current.repack_packs)
        )
        applier.repack()
        applier.drop()
    finally:
        lock.release()
        repo.invalidate_index()
    report.duration_seconds = time.monotonic() - started
    log.info(
        "prune_applied",
        location=repo.store.location,
        forgotten=len(report.forgotten),
        deleted_packs=len(report.deleted_packs),
        repacked_packs=len(report.repacked_packs),
        packs_written=report.packs_written,
        deleted_indexes=len(report.deleted_indexes),
        locked=len(report.locked),
        not_applied=len(report.not_applied),
        bytes_freed=report.bytes_freed,
        duration=round(report.duration_seconds, 3),
    )
    return report
