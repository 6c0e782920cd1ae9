"""Repository verification: structure always, content (``read_data``) on request.

Every problem is reported as (object key, what is wrong); a damaged object never stops
the checks of the others, so one run lists all the damage.

Structure (reads indexes, manifests and tree blobs; packs only by listing):
    * every index object: SHA-256 matches its name, decrypts, decodes;
    * every snapshot manifest: SHA-256 matches its name, decrypts, decodes;
    * every tree blob of every snapshot is indexed, reads back and decodes, and every
      content blob of every file it lists is indexed;
    * every pack an index names exists, at least as long as the end of its last blob.
Data (``read_data``; ``subset_percent`` reads only that share of the packs, chosen
deterministically from their ids and ``subset_seed``):
    * SHA-256 of the whole pack matches its id (checkable without keys);
    * the header decrypts and lists exactly the blobs the index has for that pack;
    * every blob decrypts, decompresses and hashes back to its keyed id.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import math
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from drd.errors import DrdError, SnapshotError
from drd.log import get_logger
from drd.snapshot import format as fmt
from drd.snapshot.lock import RepositoryLock
from drd.snapshot.repository import Repository

log = get_logger("drd.snapshot.verify")

#: (packs read, bytes read, packs to read, bytes to read); called from worker threads.
VerifyProgress = Callable[[int, int, int, int], None]
_MAX_IDS = 5  # blob ids named in one problem line
# What reading one damaged object can raise: reported as a problem of that object.
_FAILURES = (DrdError, ValueError, TypeError, KeyError)


@dataclass(frozen=True)
class Problem:
    key: str  # the object key that is damaged (or that refers to missing data)
    problem: str

    def __str__(self) -> str:
        return f"{self.key}: {self.problem}"


@dataclass
class VerifyReport:
    location: str
    read_data: bool = False
    subset_percent: float | None = None
    indexes: int = 0
    snapshots: int = 0
    packs: int = 0  # referenced by an index
    blobs: int = 0  # indexed
    unreferenced_packs: int = 0  # in data/ but in no index (crash leftovers for GC)
    packs_read: int = 0
    bytes_read: int = 0
    blobs_checked: int = 0
    duration_seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def damaged_keys(self) -> list[str]:
        return sorted({p.key for p in self.problems})

    def as_dict(self) -> dict[str, Any]:
        doc = {k: v for k, v in self.__dict__.items() if k != "problems"}
        doc["ok"] = self.ok
        doc["problems"] = [{"key": p.key, "problem": p.problem} for p in self.problems]
        return doc


def _describe(exc: BaseException, key: str) -> str:
    """The error text without the object name it usually starts with (the report has it)."""
    text = str(exc) if isinstance(exc, DrdError) else f"{type(exc).__name__}: {exc}"
    head, sep, tail = text.partition(": ")
    return tail if sep and key in head else text


def _ids(ids: Iterable[str]) -> str:
    ids = sorted(ids)
    shown = ", ".join(i[:16] for i in ids[:_MAX_IDS])
    return shown + (f" and {len(ids) - _MAX_IDS} more" if len(ids) > _MAX_IDS else "")


def sample_packs(packs: Iterable[str], percent: float, seed: str = "") -> list[str]:
    """A deterministic ``percent`` share of ``packs`` (at least one if any and percent > 0)."""
    ordered = sorted(packs, key=lambda p: hashlib.sha256(f"{seed}:{p}".encode()).digest())
    if percent <= 0 or not ordered:
        return []
    count = min(len(ordered), max(1, math.ceil(len(ordered) * percent / 100)))
    return sorted(ordered[:count])


class _Verifier:
    def __init__(self, repo: Repository, report: VerifyReport) -> None:
        self.repo = repo
        self.store = repo.store
        self.report = report
        self.lock = threading.Lock()
        self.index: dict[str, fmt.BlobEntry] = {}
        self.by_pack: dict[str, dict[str, fmt.BlobEntry]] = {}
        self.missing_packs: set[str] = set()
        self.trees: dict[tuple[str, ...], list[str]] = {}  # tree blob ids -> problems

    def problem(self, key: str, text: str) -> None:
        with self.lock:
            self.report.problems.append(Problem(key, text))

    def _get_sealed(self, key: str, object_id: str) -> bytes | None:
        """The stored bytes of an index or manifest, checked against their id."""
        try:
            data = self.store.get(key)
        except _FAILURES as exc:
            self.problem(key, f"cannot be read: {_describe(exc, key)}")
            return None
        if fmt.content_id(data) != object_id:
            self.problem(
                key, "SHA-256 of the stored bytes does not match the object id (corrupted)"
            )
        return data

    # -- indexes -------------------------------------------------------------------------

    def indexes(self) -> None:
        for index_id in self.repo.index_ids():
            key = fmt.index_key(index_id)
            self.report.indexes += 1
            data = self._get_sealed(key, index_id)
            if data is None:
                continue
            try:
                plain = self.repo.keys.open(data, fmt.INDEX_AAD, key)
                entries = list(fmt.decode_index(plain, index_id))
            except _FAILURES as exc:
                self.problem(key, _describe(exc, key))
                continue
            for entry in entries:
                self.index.setdefault(entry.id, entry)
                self.by_pack.setdefault(entry.pack, {}).setdefault(entry.id, entry)
        self.report.blobs = len(self.index)
        self.report.packs = len(self.by_pack)

    # -- snapshots -----------------------------------------------------------------------

    def snapshots(self) -> None:
        for snapshot_id in self.repo.snapshot_ids():
            key = fmt.snapshot_key(snapshot_id)
            self.report.snapshots += 1
            data = self._get_sealed(key, snapshot_id)
            if data is None:
                continue
            try:
                plain = self.repo.keys.open(data, fmt.MANIFEST_AAD, key)
                manifest = fmt.Manifest.from_doc(fmt.load_compressed(plain, key), key)
            except _FAILURES as exc:
                self.problem(key, _describe(exc, key))
                continue
            self._tree(key, manifest)

    def _tree(self, key: str, manifest: fmt.Manifest) -> None:
        """Problems of the snapshot's tree; a tree shared by snapshots is read once."""
        if manifest.tree not in self.trees:
            self.trees[manifest.tree] = self._tree_problems(manifest)
        for text in self.trees[manifest.tree]:
            self.problem(key, text)

    def _tree_problems(self, manifest: fmt.Manifest) -> list[str]:
        missing = [t for t in manifest.tree if t not in self.index]
        if missing:
            return [f"tree blob(s) not in any index: {_ids(missing)}"]
        try:
            data = b"".join(self._read_blob(self.index[t]) for t in manifest.tree)
            entries = fmt.decode_tree(data, "tree")
        except _FAILURES as exc:
            return [f"tree unreadable: {_describe(exc, 'tree')}"]
        absent = {b for e in entries for b in e.content if b not in self.index}
        if absent:
            return [f"{len(absent)} content blob(s) not in any index: {_ids(absent)}"]
        return []

    def _read_blob(self, entry: fmt.BlobEntry) -> bytes:
        sealed = self.store.get_range(fmt.pack_key(entry.pack), entry.offset, entry.length)
        if len(sealed) != entry.length:
            raise SnapshotError(f"pack {fmt.pack_key(entry.pack)} is truncated at blob {entry.id}")
        return self.repo.decode_blob(entry, sealed)

    # -- packs ---------------------------------------------------------------------------

    def pack_sizes(self) -> None:
        present = {info.key: info.size for info in self.store.list("data/")}
        referenced = {fmt.pack_key(p) for p in self.by_pack}
        self.report.unreferenced_packs = len(set(present) - referenced)
        for pack_id, blobs in sorted(self.by_pack.items()):
            key = fmt.pack_key(pack_id)
            size = present.get(key)
            if size is None:
                info = self.store.head(key)  # listing may lag on some stores: ask directly
                size = info.size if info is not None else None
            if size is None:
                self.missing_packs.add(pack_id)
                self.problem(key, f"missing: {len(blobs)} indexed blob(s) are lost")
                continue
            end = max(e.offset + e.length for e in blobs.values())
            if size < end:
                self.problem(key, f"truncated: {size} bytes, its last blob ends at {end}")

    def read_pack(self, pack_id: str) -> int:
        key = fmt.pack_key(pack_id)
        try:
            data = self.store.get(key)
        except _FAILURES as exc:
            self.problem(key, f"cannot be read: {_describe(exc, key)}")
            return 0
        if fmt.content_id(data) != pack_id:
            self.problem(key, "SHA-256 of the pack does not match its id (corrupted)")
        indexed = self.by_pack.get(pack_id, {})
        try:
            area, sealed_header = fmt.split_pack(data, f"pack {key}")
            header = fmt.decode_pack_header(
                self.repo.keys.open(sealed_header, fmt.PACK_HEADER_AAD, f"pack {key} header"),
                pack_id,
            )
        except _FAILURES as exc:
            self.problem(key, f"header: {_describe(exc, key)}")
            header = None
            area = data  # blob offsets count from the start of the pack either way
        if header is not None:
            listed = {e.id: e for e in header}
            differ = [i for i, e in indexed.items() if listed.get(i) != e]
            extra = set(listed) - set(indexed)
            if differ:
                self.problem(key, f"header disagrees with the index on blob(s) {_ids(differ)}")
            if extra:
                self.problem(key, f"header lists blob(s) no index has: {_ids(extra)}")
        checked = 0
        for entry in indexed.values():
            sealed = area[entry.offset : entry.offset + entry.length]
            try:
                if len(sealed) != entry.length:
                    raise SnapshotError(f"blob {entry.id} runs past the end of the pack")
                self.repo.decode_blob(entry, sealed)
            except _FAILURES as exc:
                self.problem(key, f"blob {entry.id}: {_describe(exc, key)}")
            checked += 1
        with self.lock:
            self.report.blobs_checked += checked
        return len(data)

    def read_packs(self, packs: list[str], workers: int, progress: VerifyProgress | None) -> None:
        total_bytes = sum(max(e.offset + e.length for e in self.by_pack[p].values()) for p in packs)
        with cf.ThreadPoolExecutor(max(1, workers), "drd-verify") as pool:
            for size in pool.map(self.read_pack, packs):
                with self.lock:
                    self.report.packs_read += 1
                    self.report.bytes_read += size
                    if progress is not None:
                        progress(
                            self.report.packs_read, self.report.bytes_read, len(packs), total_bytes
                        )


def verify_repository(
    repo: Repository,
    *,
    read_data: bool = False,
    subset_percent: float | None = None,
    subset_seed: str = "",
    workers: int = 4,
    progress: VerifyProgress | None = None,
    lock: bool = True,
) -> VerifyReport:
    """Check ``repo`` (see the module docstring); ``subset_percent`` implies ``read_data``.

    ``lock`` takes a shared repository lock, so that a concurrent prune cannot make
    packs look missing; pass False for a repository this process may only read.
    """
    if subset_percent is not None and not 0 < subset_percent <= 100:
        raise ValueError("subset_percent must be in (0, 100]")
    started = time.monotonic()
    report = VerifyReport(
        repo.store.location,
        read_data=read_data or subset_percent is not None,
        subset_percent=subset_percent,
    )
    verifier = _Verifier(repo, report)
    with RepositoryLock(repo.store, "shared") if lock else nullcontext():
        _run(
            verifier,
            report,
            subset_percent=subset_percent,
            subset_seed=subset_seed,
            workers=workers,
            progress=progress,
        )
    report.duration_seconds = time.monotonic() - started
    log.info(
        "repository_verified",
        location=repo.store.location,
        ok=report.ok,
        problems=len(report.problems),
        packs_read=report.packs_read,
        duration=round(report.duration_seconds, 3),
    )
    return report


def _run(
    verifier: _Verifier,
    report: VerifyReport,
    *,
    subset_percent: float | None,
    subset_seed: str,
    workers: int,
    progress: VerifyProgress | None,
) -> None:
    verifier.indexes()
    verifier.snapshots()
    verifier.pack_sizes()
    if report.read_data:
        packs = sorted(verifier.by_pack)
        if subset_percent is not None:
            packs = sample_packs(packs, subset_percent, subset_seed)
        packs = [p for p in packs if p not in verifier.missing_packs]
        verifier.read_packs(packs, workers, progress)
