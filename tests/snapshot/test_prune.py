"""Forget and prune: exact plans, crash-safe applies, concurrent snapshots, Object Lock."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from drd.errors import LockError, SnapshotError, StorageError
from drd.snapshot import format as fmt
from drd.snapshot import prune
from drd.snapshot.create import create_snapshot
from drd.snapshot.keys import PassphraseWrapper, init_repository
from drd.snapshot.prune import PrunePlan, apply_prune, plan_prune
from drd.snapshot.repository import Repository
from drd.snapshot.restore import restore_snapshot
from drd.snapshot.verify import verify_repository
from drd.storage import FilesystemStore, MemoryStore, ObjectInfo, ObjectStore
from drd.storage.base import ObjectLockedError
from drd.storage.s3 import S3Store
from drd.testing import S3Endpoint
from drd.testing.filestore import make_tree
from drd.testing.s3 import ACCESS_KEY, REGION, SECRET_KEY

SMALL_CHUNKS = MappingProxyType({"min": 16 * 1024, "avg": 32 * 1024, "max": 64 * 1024})
PACK_SIZE = 128 * 1024
FILE = 20 * 1024  # random, so stored raw: 7 such blobs fill one 128 KiB pack
NO_GRACE = timedelta(0)
LOCKED_UNTIL = datetime(2031, 5, 17, 12, 0, tzinfo=UTC)


def open_repo(store: ObjectStore, keys_from: Repository | None = None) -> Repository:
    """A repository with small chunks and packs on ``store`` (new, or sharing keys)."""
    if keys_from is not None:
        return Repository(store, keys_from.config, keys_from.keys)
    config, keys = init_repository(store, PassphraseWrapper("prune-tests", n=2**10))
    config = dataclasses.replace(
        config, chunker=SMALL_CHUNKS, small_file_limit=32 * 1024, pack_size=PACK_SIZE
    )
    return Repository(store, config, keys)


def snap(repo: Repository, source: Path) -> str:
    return create_snapshot(repo, source, workload="erp", tier="tier-1").snapshot_id


def state(root: Path) -> dict[str, tuple[Any, ...]]:
    """Everything a byte-identical restore must reproduce (dir mtimes aside)."""
    out: dict[str, tuple[Any, ...]] = {}
    for path in root.rglob("*"):
        st = path.lstat()
        rel = path.relative_to(root).as_posix()
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode))
        else:
            out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, path.read_bytes())
    return out


def assert_restores(repo: Repository, sources: dict[str, Path], tmp_path: Path) -> None:
    """Every snapshot in ``sources`` restores byte-identical to its source tree."""
    for sid, source in sources.items():
        target = tmp_path / f"restore-{uuid.uuid4().hex[:8]}"
        restore_snapshot(repo, sid, target)
        assert state(target) == state(source), sid
        shutil.rmtree(target)


def blobs_of(repo: Repository, sids: Iterable[str]) -> set[str]:
    """Tree and content blob ids the given snapshots use."""
    used: set[str] = set()
    for sid in sids:
        manifest = repo.load_manifest(sid)
        used.update(manifest.tree)
        used.update(b for e in repo.tree(manifest) for b in e.content)
    return used


def pack_blobs(repo: Repository) -> dict[str, dict[str, int]]:
    """pack id -> {blob id: stored length}, from every index object."""
    out: dict[str, dict[str, int]] = {}
    for index_id in repo.index_ids():
        sealed = repo.open_doc(fmt.index_key(index_id), fmt.INDEX_AAD)
        for entry in fmt.decode_index(sealed, index_id):
            out.setdefault(entry.pack, {})[entry.id] = entry.length
    return out


def write_files(root: Path, names: Iterable[str], seed: int) -> None:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).write_bytes(rng.randbytes(FILE))


@dataclasses.dataclass
class Scenario:
    """s1 = a0-a6 (one full pack), f00-f11; s2 = a0-a6, f00, n0-n2.

    Forgetting s1 leaves: pack 1 (a*) fully used, pack 2 (f00-f06) used 1/7 (repacked),
    pack 3 (f07-f11 + s1's tree) unused (deleted); s1's index lists all three.
    """

    repo: Repository
    s1: str
    s2: str
    v1: Path
    v2: Path


def scenario(tmp_path: Path, store: ObjectStore) -> Scenario:
    repo = open_repo(store)
    v1 = tmp_path / "v1"
    write_files(v1, [f"a{i}" for i in range(7)], seed=1)
    write_files(v1, [f"f{i:02d}" for i in range(12)], seed=2)
    s1 = snap(repo, v1)
    v2 = tmp_path / "v2"
    v2.mkdir()
    for name in [*(f"a{i}" for i in range(7)), "f00"]:
        shutil.copy2(v1 / name, v2 / name)
    write_files(v2, ["n0", "n1", "n2"], seed=3)
    s2 = snap(repo, v2)
    return Scenario(repo, s1, s2, v1, v2)


def test_plan_lists_exactly_the_unreferenced_packs(tmp_path: Path) -> None:
    """Four snapshots of an evolving tree, two forgotten: the plan names exactly the packs
    no kept snapshot uses, the repack candidates by used share, and changes nothing."""
    repo = open_repo(FilesystemStore(tmp_path / "repo"))
    rng = random.Random(5)
    versions: dict[str, Path] = {}
    previous: Path | None = None
    for n in range(4):
        source = tmp_path / f"v{n}"
        if previous is None:
            make_tree(source, seed=9, files=30)
        else:
            shutil.copytree(previous, source, symlinks=True)
            files = sorted(p for p in source.rglob("*") if p.is_file() and p.name != "big.bin")
            for victim in rng.sample(files, 6):
                victim.unlink()
            for i in range(5):
                (source / f"new-{n}-{i}.bin").write_bytes(rng.randbytes(rng.randint(1, 60_000)))
            with (source / "big.bin").open("r+b") as handle:  # an edit inside a large file
                handle.seek(rng.randint(0, 2 * 1024 * 1024))
                handle.write(rng.randbytes(300_000))
        versions[snap(repo, source)] = source
        previous = source
    sids = list(versions)
    forget, kept = sids[:2], sids[2:]
    store_before = {i.key: i.etag for i in repo.store.list()}

    plan = plan_prune(repo, forget, repack_threshold=0.5, grace=NO_GRACE)

    used = blobs_of(repo, kept)
    packs = pack_blobs(repo)
    share = {
        p: sum(n for b, n in blobs.items() if b in used) / sum(blobs.values())
        for p, blobs in packs.items()
    }
    assert set(plan.forget) == set(forget)
    assert set(plan.delete_packs) == {p for p, s in share.items() if s == 0}
    assert set(plan.repack_packs) == {p for p, s in share.items() if 0 < s < 0.5}
    assert plan.delete_packs
    assert plan.repack_packs  # the big file's edits leave partly used packs
    assert not plan.locked
    assert not plan.kept_for_grace
    removed = set(plan.delete_packs) | set(plan.repack_packs)
    index_packs = {i: {e.pack for e in pack_entries(repo, i)} for i in repo.index_ids()}
    assert set(plan.delete_indexes) == {i for i, ps in index_packs.items() if ps & removed}
    repacked = sum(n for p in plan.repack_packs for b, n in packs[p].items() if b in used)
    assert plan.bytes_repacked == repacked
    sizes = {i.key.rsplit("/", 1)[-1]: i.size for i in repo.store.list("data/")}
    assert plan.bytes_freed == sum(sizes[p] for p in removed) - repacked
    json.dumps(plan.as_dict())  # JSON-able as it is
    assert {i.key: i.etag for i in repo.store.list()} == store_before  # planning is read-only

    young = plan_prune(repo, forget, repack_threshold=0.5)  # default grace: 1 hour
    assert not young.delete_packs
    assert not young.repack_packs
    assert set(young.kept_for_grace) == removed
    assert young.forget == plan.forget  # manifests have no grace period


def pack_entries(repo: Repository, index_id: str) -> list[fmt.BlobEntry]:
    sealed = repo.open_doc(fmt.index_key(index_id), fmt.INDEX_AAD)
    return list(fmt.decode_index(sealed, index_id))


def test_apply_removes_unreferenced_packs_and_kept_snapshots_restore(tmp_path: Path) -> None:
    """After apply: verify (full read) is clean, the kept snapshot restores byte-identical,
    packs only the forgotten one used are gone, and every deletion was reported."""
    sc = scenario(tmp_path, FilesystemStore(tmp_path / "repo"))
    repo = sc.repo
    only_forgotten = {
        p for p, blobs in pack_blobs(repo).items() if not set(blobs) & blobs_of(repo, [sc.s2])
    }
    plan = plan_prune(repo, [sc.s1[:10]], grace=NO_GRACE)  # a unique prefix is enough
    assert plan.forget == (sc.s1,)
    assert set(plan.delete_packs) == only_forgotten
    assert len(plan.repack_packs) == 1
    assert len(plan.delete_indexes) == 1  # s1's index: it lists all three of its packs
    deleted: list[tuple[str, str]] = []

    report = apply_prune(repo, plan, on_delete=lambda kind, key: deleted.append((kind, key)))

    assert report.forgotten == [sc.s1]
    assert report.deleted_packs == list(plan.delete_packs)
    assert report.repacked_packs == list(plan.repack_packs)
    assert report.deleted_indexes == list(plan.delete_indexes)
    assert report.packs_written == 1
    assert report.indexes_written == 2  # the new pack's, and the kept a* pack's entries
    assert not report.not_applied
    assert report.bytes_freed > 0
    json.dumps(report.as_dict())
    assert sorted(deleted) == sorted(
        [("snapshot", fmt.snapshot_key(sc.s1))]
        + [("index", fmt.index_key(i)) for i in plan.delete_indexes]
        + [("pack", fmt.pack_key(p)) for p in (*plan.delete_packs, *plan.repack_packs)]
    )
    assert repo.snapshot_ids() == [sc.s2]
    present = set(repo.packs())
    assert not present & (only_forgotten | set(plan.repack_packs))
    verified = verify_repository(repo, read_data=True)
    assert verified.ok, verified.problems
    assert verified.unreferenced_packs == 0
    assert not list(repo.store.list("locks/"))
    assert_restores(repo, {sc.s2: sc.v2}, tmp_path)
    again = plan_prune(repo, [], grace=NO_GRACE)  # nothing left to do
    assert (again.delete_packs, again.repack_packs, again.delete_indexes) == ((), (), ())


def test_repack_below_threshold_keeps_live_blobs_readable(tmp_path: Path) -> None:
    """A pack used 1/7 is repacked at threshold 0.5 (its live blob moves, still readable)
    and left alone at threshold 0.1."""
    sc = scenario(tmp_path, MemoryStore())
    repo = sc.repo
    index = repo.load_index(refresh=True)
    f00 = repo.tree(repo.load_manifest(sc.s2))
    kept_blob = next(e.content[0] for e in f00 if e.path == "f00")
    old_pack = index[kept_blob].pack

    low = plan_prune(repo, [sc.s1], repack_threshold=0.1, grace=NO_GRACE)
    assert low.repack_packs == ()
    assert old_pack not in low.delete_packs

    plan = plan_prune(repo, [sc.s1], repack_threshold=0.5, grace=NO_GRACE)
    assert plan.repack_packs == (old_pack,)
    assert plan.bytes_repacked == index[kept_blob].length
    apply_prune(repo, plan)

    moved = repo.load_index(refresh=True)[kept_blob]
    assert moved.pack != old_pack
    assert repo.store.head(fmt.pack_key(old_pack)) is None
    assert repo.read_blob(kept_blob) == (sc.v2 / "f00").read_bytes()
    assert verify_repository(repo, read_data=True).ok


def test_grace_period_keeps_young_packs_of_an_unfinished_writer(tmp_path: Path) -> None:
    """Packs of a writer that has not written its manifest (indexed or not) are kept while
    younger than the grace period, even by an apply of a plan that listed them."""
    store = FilesystemStore(tmp_path / "repo")
    sc = scenario(tmp_path, store)
    repo = sc.repo
    v3 = tmp_path / "v3"
    write_files(v3, [f"w{i}" for i in range(10)], seed=4)
    before = set(repo.packs())

    class NoManifest(FilesystemStore):
        def put(self, key: str, data: bytes, **kw: Any) -> None:
            if key.startswith("snapshots/"):
                raise StorageError("writer stopped before its manifest")
            super().put(key, data, **kw)

    with pytest.raises(StorageError):
        snap(open_repo(NoManifest(store.root), sc.repo), v3)
    junk = os.urandom(2000)  # an unindexed pack (crash during an upload batch)
    store.put(fmt.pack_key(fmt.content_id(junk)), junk)
    writer = set(repo.packs()) - before
    assert len(writer) >= 3

    plan = plan_prune(repo, [], grace=timedelta(hours=1))
    assert set(plan.kept_for_grace) == writer
    assert not set(plan.delete_packs) & writer
    later = plan_prune(
        repo, [], grace=timedelta(hours=1), now=datetime.now(UTC) + timedelta(hours=2)
    )
    assert writer <= set(later.delete_packs)

    report = apply_prune(repo, later)  # plans again at the real time: still too young
    assert writer <= set(report.plan.kept_for_grace)
    assert writer <= set(report.not_applied)
    assert writer <= set(repo.packs())

    apply_prune(repo, plan_prune(repo, [], grace=NO_GRACE))
    assert not writer & set(repo.packs())
    assert verify_repository(repo, read_data=True).ok
    assert_restores(repo, {sc.s1: sc.v1, sc.s2: sc.v2}, tmp_path)


class SlowStore(FilesystemStore):
    """Sleeps on pack uploads (or on deletes); ``started`` is set after the first one."""

    def __init__(self, root: Path, *, put_delay: float = 0.0, delete_delay: float = 0.0) -> None:
        super().__init__(root)
        self.put_delay = put_delay
        self.delete_delay = delete_delay
        self.started = threading.Event()

    def put(self, key: str, data: bytes, **kw: Any) -> None:
        if key.startswith("data/") and self.put_delay:
            time.sleep(self.put_delay)
            super().put(key, data, **kw)
            self.started.set()
            return
        super().put(key, data, **kw)

    def delete(self, key: str) -> None:
        if not key.startswith("locks/") and self.delete_delay:
            self.started.set()
            time.sleep(self.delete_delay)
        super().delete(key)


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=run, name="prune-test")
    thread.start()
    return thread, out


def test_concurrent_snapshot_and_prune(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A prune planned while a slow snapshot runs lists its new packs (grace 0), but apply
    is refused while the snapshot's lock is live, then waits for it and plans again:
    nothing the new snapshot uses is deleted and it restores byte-identical."""
    monkeypatch.setattr(prune, "LOCK_POLL", 0.1)
    root = tmp_path / "repo"
    sc = scenario(tmp_path, FilesystemStore(root))
    repo = sc.repo
    v3 = tmp_path / "v3"
    shutil.copytree(sc.v2, v3)
    write_files(v3, [f"c{i:02d}" for i in range(60)], seed=6)
    slow = SlowStore(root, put_delay=0.3)
    thread, out = in_thread(lambda: snap(open_repo(slow, repo), v3))
    try:
        assert slow.started.wait(30)
        plan = plan_prune(repo, [sc.s1, sc.s2], grace=NO_GRACE)
        with pytest.raises(LockError, match=r"shared lock .* \(erp\)"):
            apply_prune(repo, plan)
        assert set(repo.snapshot_ids()) == {sc.s1, sc.s2}  # the refused apply did nothing
        report = apply_prune(repo, plan, lock_wait=60)
    finally:
        thread.join(60)
    assert "error" not in out, out
    s3 = out["result"]
    assert set(repo.snapshot_ids()) == {s3}
    s3_packs = {p for p, blobs in pack_blobs(repo).items() if set(blobs) & blobs_of(repo, [s3])}
    assert set(plan.delete_packs) & s3_packs  # the plan alone would have deleted some...
    assert set(plan.delete_packs) & s3_packs <= set(report.not_applied)  # ...apply kept them
    assert s3_packs <= set(repo.packs())
    assert verify_repository(repo, read_data=True).ok
    assert_restores(repo, {s3: v3}, tmp_path)


def test_snapshot_is_refused_while_prune_holds_the_lock(tmp_path: Path) -> None:
    """A snapshot started during an apply is refused (LockError), and succeeds after it."""
    root = tmp_path / "repo"
    sc = scenario(tmp_path, FilesystemStore(root))
    slow = SlowStore(root, delete_delay=0.3)
    slow_repo = open_repo(slow, sc.repo)
    plan = plan_prune(sc.repo, [sc.s1], grace=NO_GRACE)
    thread, out = in_thread(lambda: apply_prune(slow_repo, plan))
    try:
        assert slow.started.wait(30)
        with pytest.raises(LockError, match="exclusive lock"):
            snap(sc.repo, sc.v2)
    finally:
        thread.join(60)
    assert "error" not in out, out
    s3 = snap(sc.repo, sc.v2)
    assert_restores(sc.repo, {sc.s2: sc.v2, s3: sc.v2}, tmp_path)


class CrashingStore(FilesystemStore):
    """Raises on the ``fail_delete``-th delete (locks aside) or on the first put of a key
    starting with ``fail_put``: a crash at that point of the prune."""

    def __init__(self, root: Path, *, fail_delete: int = 0, fail_put: str = "") -> None:
        super().__init__(root)
        self.fail_delete = fail_delete
        self.fail_put = fail_put
        self.deletes = 0

    def delete(self, key: str) -> None:
        if not key.startswith("locks/"):
            self.deletes += 1
            if self.deletes == self.fail_delete:
                raise StorageError("simulated crash")
        super().delete(key)

    def put(self, key: str, data: bytes, **kw: Any) -> None:
        if self.fail_put and key.startswith(self.fail_put):
            raise StorageError("simulated crash")
        super().put(key, data, **kw)


# deletions of a scenario prune, in order: s1's manifest, s1's index, then two packs
CRASHES = [
    pytest.param({"fail_delete": 1}, id="deleting-manifest"),
    pytest.param({"fail_put": "data/"}, id="writing-repacked-pack"),
    pytest.param({"fail_put": "index/"}, id="writing-new-index"),
    pytest.param({"fail_delete": 2}, id="deleting-old-index"),
    pytest.param({"fail_delete": 3}, id="deleting-first-pack"),
    pytest.param({"fail_delete": 4}, id="deleting-last-pack"),
]


@pytest.mark.parametrize("crash", CRASHES)
def test_crash_at_each_step_leaves_kept_snapshots_restorable(
    crash: dict[str, Any], tmp_path: Path
) -> None:
    """A failure at any step leaves a clean repository whose kept snapshot restores; the
    error names the object; a re-run finishes the prune."""
    root = tmp_path / "repo"
    sc = scenario(tmp_path, FilesystemStore(root))
    plan = plan_prune(sc.repo, [sc.s1], grace=NO_GRACE)
    assert len(plan.delete_packs) + len(plan.repack_packs) == 2
    with pytest.raises(StorageError, match="simulated crash") as failed:
        apply_prune(open_repo(CrashingStore(root, **crash), sc.repo), plan)
    if "fail_delete" in crash:
        assert "prune: cannot delete" in str(failed.value)
        assert any(k in str(failed.value) for k in ("snapshots/", "index/", "data/"))

    repo = open_repo(FilesystemStore(root), sc.repo)
    assert not list(repo.store.list("locks/"))
    verified = verify_repository(repo, read_data=True)
    assert verified.ok, verified.problems
    assert_restores(repo, {sc.s2: sc.v2}, tmp_path)

    rerun = plan_prune(repo, [s for s in repo.snapshot_ids() if s == sc.s1], grace=NO_GRACE)
    apply_prune(repo, rerun)
    assert repo.snapshot_ids() == [sc.s2]
    verified = verify_repository(repo, read_data=True)
    assert verified.ok, verified.problems
    assert verified.unreferenced_packs == 0
    final = plan_prune(repo, [], grace=NO_GRACE)
    assert (final.delete_packs, final.repack_packs, final.delete_indexes) == ((), (), ())
    assert_restores(repo, {sc.s2: sc.v2}, tmp_path)


class LockedStore(MemoryStore):
    """``head`` reports Object Lock retention for ``retain`` keys; deleting one is recorded
    and refused, as S3 refuses it."""

    def __init__(self) -> None:
        super().__init__()
        self.retain: dict[str, datetime] = {}
        self.refused: list[str] = []

    def head(self, key: str) -> ObjectInfo | None:
        info = super().head(key)
        if info is not None and key in self.retain:
            info = dataclasses.replace(info, lock_mode="compliance", retain_until=self.retain[key])
        return info

    def delete(self, key: str) -> None:
        if key in self.retain and self.retain[key] > datetime.now(UTC):
            self.refused.append(key)
            raise ObjectLockedError(key, self.retain[key], "compliance")
        super().delete(key)


def test_locked_pack_is_reported_and_never_deleted(tmp_path: Path) -> None:
    """A pack to delete under Object Lock is in the plan as 'locked until DATE', not in
    delete_packs; apply never tries to delete it; an expired lock does not count."""
    store = LockedStore()
    sc = scenario(tmp_path, store)
    plan = plan_prune(sc.repo, [sc.s1], grace=NO_GRACE)
    doomed, other = plan.delete_packs[0], plan.repack_packs[0]
    store.retain[fmt.pack_key(doomed)] = LOCKED_UNTIL
    store.retain[fmt.pack_key(other)] = datetime.now(UTC) - timedelta(days=1)  # expired

    plan = plan_prune(sc.repo, [sc.s1], grace=NO_GRACE)
    assert plan.locked == ((fmt.pack_key(doomed), LOCKED_UNTIL),)
    assert plan.locked_notes() == [f"{fmt.pack_key(doomed)}: locked until 2031-05-17 12:00:00Z"]
    assert plan.as_dict()["locked"][0]["note"] == "locked until 2031-05-17 12:00:00Z"
    assert doomed not in plan.delete_packs
    assert plan.repack_packs == (other,)

    report = apply_prune(sc.repo, plan)
    assert store.refused == []  # never attempted
    assert report.locked == [(fmt.pack_key(doomed), LOCKED_UNTIL)]
    assert store.head(fmt.pack_key(doomed)) is not None
    assert store.head(fmt.pack_key(other)) is None
    assert verify_repository(sc.repo, read_data=True).ok
    assert_restores(sc.repo, {sc.s2: sc.v2}, tmp_path)


def test_locked_manifest_keeps_its_snapshot_and_locked_index_its_packs(tmp_path: Path) -> None:
    """A locked manifest is not forgotten (its packs stay); a locked index that would be
    superseded pins every pack it lists."""
    store = LockedStore()
    sc = scenario(tmp_path, store)
    store.retain[fmt.snapshot_key(sc.s1)] = LOCKED_UNTIL
    plan = plan_prune(sc.repo, [sc.s1], grace=NO_GRACE)
    assert plan.forget == ()
    assert plan.locked == ((fmt.snapshot_key(sc.s1), LOCKED_UNTIL),)
    assert (plan.delete_packs, plan.repack_packs, plan.delete_indexes) == ((), (), ())

    del store.retain[fmt.snapshot_key(sc.s1)]
    s1_index = plan_prune(sc.repo, [sc.s1], grace=NO_GRACE).delete_indexes[0]
    store.retain[fmt.index_key(s1_index)] = LOCKED_UNTIL
    plan = plan_prune(sc.repo, [sc.s1], grace=NO_GRACE)
    assert plan.forget == (sc.s1,)
    assert plan.locked == ((fmt.index_key(s1_index), LOCKED_UNTIL),)
    assert (plan.delete_packs, plan.repack_packs, plan.delete_indexes) == ((), (), ())
    apply_prune(sc.repo, plan)
    assert store.refused == []
    assert sc.repo.snapshot_ids() == [sc.s2]
    assert verify_repository(sc.repo, read_data=True).ok
    assert_restores(sc.repo, {sc.s2: sc.v2}, tmp_path)


def test_lock_found_only_at_apply_time_is_respected(tmp_path: Path) -> None:
    """Locks that appear after planning: a manifest the store refuses to delete keeps its
    snapshot restorable (apply plans again), a pack locked meanwhile is skipped."""
    store = LockedStore()
    sc = scenario(tmp_path, store)
    plan = plan_prune(sc.repo, [sc.s1], grace=NO_GRACE)

    # The manifest's head shows no lock, but the store refuses the delete (an older,
    # hidden version is locked): apply must keep everything s1 uses.
    original_delete = store.delete

    def refuse_manifest(key: str) -> None:
        if key == fmt.snapshot_key(sc.s1):
            raise ObjectLockedError(key, LOCKED_UNTIL, "governance")
        original_delete(key)

    store.delete = refuse_manifest  # type: ignore[method-assign]
    report = apply_prune(sc.repo, plan)
    assert report.forgotten == []
    assert report.locked == [(fmt.snapshot_key(sc.s1), LOCKED_UNTIL)]
    assert report.deleted_packs == report.repacked_packs == []
    assert set(report.not_applied) == set(plan.delete_packs) | set(plan.repack_packs)
    assert verify_repository(sc.repo, read_data=True).ok
    assert_restores(sc.repo, {sc.s1: sc.v1, sc.s2: sc.v2}, tmp_path)

    store.delete = original_delete  # type: ignore[method-assign]
    plan = plan_prune(sc.repo, [sc.s1], grace=NO_GRACE)
    late = plan.delete_packs[0]
    store.retain[fmt.pack_key(late)] = LOCKED_UNTIL  # locked between plan and apply
    report = apply_prune(sc.repo, plan)
    assert report.forgotten == [sc.s1]
    assert (fmt.pack_key(late), LOCKED_UNTIL) in report.locked
    assert store.refused == []
    assert store.head(fmt.pack_key(late)) is not None
    assert verify_repository(sc.repo, read_data=True).ok
    assert_restores(sc.repo, {sc.s2: sc.v2}, tmp_path)


def test_plan_refuses_unknown_snapshot_and_bad_arguments(tmp_path: Path) -> None:
    """An unknown snapshot id, a threshold outside [0, 1] or a negative grace are errors."""
    sc = scenario(tmp_path, MemoryStore())
    with pytest.raises(SnapshotError, match="no snapshot"):
        plan_prune(sc.repo, ["deadbeef"])
    with pytest.raises(ValueError, match="repack_threshold"):
        plan_prune(sc.repo, [], repack_threshold=1.5)
    with pytest.raises(ValueError, match="grace"):
        plan_prune(sc.repo, [], grace=timedelta(seconds=-1))
    empty = PrunePlan((), (), (), (), (), (), 0, 0)
    report = apply_prune(sc.repo, empty)
    assert report.forgotten == report.deleted_packs == []
    assert sorted(sc.repo.snapshot_ids()) == sorted([sc.s1, sc.s2])


@pytest.mark.integration
def test_s3_object_locked_pack_is_reported_and_kept(s3: S3Endpoint, tmp_path: Path) -> None:
    """On S3 with Object Lock (moto behind TLS): a pack re-put under retention is reported
    'locked until DATE' and kept, the rest is pruned, and the kept snapshot restores."""
    bucket = s3.create_bucket(f"drd-prune-{uuid.uuid4().hex[:12]}", object_lock=True)
    store = S3Store(
        bucket,
        "tenant-a/filestore",
        endpoint_url=s3.url,
        region=REGION,
        path_style=True,
        ca_file=s3.tls.ca_cert,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
    )
    try:
        sc = scenario(tmp_path, store)
        doomed = plan_prune(sc.repo, [sc.s1], grace=NO_GRACE).delete_packs[0]
        key = fmt.pack_key(doomed)
        until = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
        store.put(key, store.get(key), retain_until=until, lock_mode="governance")

        plan = plan_prune(sc.repo, [sc.s1], grace=NO_GRACE)
        assert plan.locked == ((key, until),)
        assert doomed not in plan.delete_packs
        report = apply_prune(sc.repo, plan)
        assert report.locked == [(key, until)]
        assert report.forgotten == [sc.s1]
        assert report.repacked_packs == list(plan.repack_packs)
        assert store.head(key) is not None
        assert sc.repo.snapshot_ids() == [sc.s2]
        assert verify_repository(sc.repo, read_data=True).ok
        assert_restores(sc.repo, {sc.s2: sc.v2}, tmp_path)
    finally:
        store.close()
