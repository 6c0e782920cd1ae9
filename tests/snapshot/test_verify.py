"""Repository verification: clean repositories pass, each kind of damage is found and named."""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path
from types import MappingProxyType

import pytest

from drd.snapshot import format as fmt
from drd.snapshot.create import create_snapshot
from drd.snapshot.keys import PassphraseWrapper, init_repository
from drd.snapshot.repository import Repository
from drd.snapshot.verify import sample_packs, verify_repository
from drd.storage import MemoryStore, ObjectStore
from drd.storage.filesystem import FilesystemStore

SMALL_CHUNKS = MappingProxyType({"min": 16 * 1024, "avg": 32 * 1024, "max": 64 * 1024})


@pytest.fixture(params=["memory", "filesystem"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Repository:
    """A repository with two snapshots of a small tree, many small packs."""
    store: ObjectStore = (
        MemoryStore() if request.param == "memory" else FilesystemStore(tmp_path / "repo")
    )
    config, keys = init_repository(store, PassphraseWrapper("verify-tests", n=2**10))
    config = dataclasses.replace(
        config, chunker=SMALL_CHUNKS, small_file_limit=32 * 1024, pack_size=128 * 1024
    )
    repository = Repository(store, config, keys)
    rng = random.Random(11)
    source = tmp_path / "src"
    (source / "db" / "ab").mkdir(parents=True)
    (source / "db" / "ab" / "big").write_bytes(rng.randbytes(2 * 1024 * 1024))
    for i in range(20):
        (source / "db" / "ab" / f"small-{i}").write_bytes(rng.randbytes(3000 + i))
    create_snapshot(repository, source, workload="acme", tier="tier-1")
    (source / "db" / "new").write_bytes(rng.randbytes(70_000))
    create_snapshot(repository, source, workload="acme", tier="tier-1")
    return repository


def flip_byte(store: ObjectStore, key: str, offset: int) -> None:
    data = bytearray(store.get(key))
    data[offset] ^= 0x40
    store.put(key, bytes(data))


def data_only_pack(repo: Repository) -> tuple[str, fmt.BlobEntry]:
    """A pack holding only file data (no tree blob), and its first blob."""
    by_pack: dict[str, list[fmt.BlobEntry]] = {}
    for entry in repo.load_index(refresh=True).values():
        by_pack.setdefault(entry.pack, []).append(entry)
    pack, entries = next(
        (p, e) for p, e in sorted(by_pack.items()) if all(x.type == "data" for x in e)
    )
    return pack, min(entries, key=lambda e: e.offset)


def test_clean_repository_is_ok(repo: Repository) -> None:
    """A freshly written repository passes structure and full data checks."""
    report = verify_repository(repo, read_data=True)
    assert report.ok, report.problems
    assert report.snapshots == 2
    assert report.packs == report.packs_read > 4
    assert report.blobs_checked == report.blobs
    assert report.as_dict()["ok"] is True
    assert not list(repo.store.list("locks/"))  # the shared lock was released


def test_flipped_byte_in_pack_named(repo: Repository) -> None:
    """A flipped byte inside a pack is found by --read-data and names that pack only."""
    pack, blob = data_only_pack(repo)
    key = fmt.pack_key(pack)
    flip_byte(repo.store, key, blob.offset + 30)
    assert verify_repository(repo).ok  # structure alone cannot see inside the pack
    report = verify_repository(repo, read_data=True)
    assert report.damaged_keys() == [key]
    texts = [p.problem for p in report.problems]
    assert any("SHA-256 of the pack does not match" in t for t in texts)
    assert any(t.startswith(f"blob {blob.id}: authentication failed") for t in texts)
    assert report.packs_read == report.packs  # the other packs were still checked


def test_flipped_byte_in_index_named(repo: Repository) -> None:
    """A flipped byte in an index object is reported against that index key."""
    index_id = repo.index_ids()[0]
    key = fmt.index_key(index_id)
    flip_byte(repo.store, key, 40)
    report = verify_repository(repo)
    assert not report.ok
    assert key in report.damaged_keys()
    index_problems = [p.problem for p in report.problems if p.key == key]
    assert any("does not match the object id" in t for t in index_problems)
    assert any("authentication failed" in t for t in index_problems)
    assert report.snapshots == 2  # snapshots were checked despite the broken index


def test_flipped_byte_in_manifest_named(repo: Repository) -> None:
    """A flipped byte in one manifest names that snapshot; the other snapshot is fine."""
    first, _second = sorted(repo.snapshot_ids())
    key = fmt.snapshot_key(first)
    flip_byte(repo.store, key, 20)
    report = verify_repository(repo, read_data=True)
    assert report.damaged_keys() == [key]
    assert report.packs_read == report.packs


def test_missing_pack_found_without_reading_data(repo: Repository) -> None:
    """A deleted pack is reported by the structure check, naming the pack key."""
    pack, _ = data_only_pack(repo)
    key = fmt.pack_key(pack)
    repo.store.delete(key)
    report = verify_repository(repo)
    assert report.damaged_keys() == [key]
    assert report.problems[0].problem.startswith("missing")
    assert report.packs_read == 0


def test_truncated_pack_found_without_reading_data(repo: Repository) -> None:
    """A pack shorter than its indexed blobs is reported by the structure check."""
    pack, _ = data_only_pack(repo)
    key = fmt.pack_key(pack)
    repo.store.put(key, repo.store.get(key)[:100])
    report = verify_repository(repo)
    assert report.damaged_keys() == [key]
    assert "truncated" in report.problems[0].problem


def test_missing_tree_pack_names_the_snapshots(repo: Repository) -> None:
    """A lost pack holding tree blobs makes the snapshots that need it fail, by key."""
    index = repo.load_index(refresh=True)
    tree_pack = next(e.pack for e in index.values() if e.type == "tree")
    repo.store.delete(fmt.pack_key(tree_pack))
    report = verify_repository(repo)
    keys = report.damaged_keys()
    assert fmt.pack_key(tree_pack) in keys
    assert any(k.startswith("snapshots/") for k in keys)


def test_subset_reads_only_part_of_the_packs(repo: Repository) -> None:
    """--read-data-subset reads a deterministic share of the packs, at least one."""
    full = verify_repository(repo, read_data=True)
    report = verify_repository(repo, subset_percent=25)
    assert report.ok
    assert report.read_data
    assert report.packs_read == math.ceil(full.packs * 0.25) < full.packs
    assert verify_repository(repo, subset_percent=25).packs_read == report.packs_read
    assert verify_repository(repo, subset_percent=0.01).packs_read == 1


def test_sample_packs_is_deterministic_and_seeded() -> None:
    """The sample depends only on the pack ids, the percentage and the seed."""
    packs = [f"{i:064x}" for i in range(100)]
    first = sample_packs(packs, 10)
    assert len(first) == 10
    assert sample_packs(reversed(packs), 10) == first
    assert sample_packs(packs, 10, seed="2025-06-01") != first
    assert sample_packs(packs, 100) == packs
    assert sample_packs([], 50) == []
