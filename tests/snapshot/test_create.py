"""Snapshot create: content stored once, unchanged files skipped, manifest written last."""

from __future__ import annotations

import threading
from pathlib import Path

from drd.snapshot import format as fmt
from drd.snapshot.create import create_snapshot
from drd.snapshot.repository import Repository
from drd.storage import MemoryStore
from drd.testing.filestore import make_tree, new_repository


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_snapshot_stores_every_file_retrievably(tmp_path: Path, repo: Repository) -> None:
    """Every file's content can be read back blob by blob from the stored snapshot."""
    source = make_tree(tmp_path / "fs")
    result = create_snapshot(repo, source, workload="erp", tier="tier-1", tags=("first",))
    assert result.snapshot_id in repo.snapshot_ids()
    manifest = repo.load_manifest(result.snapshot_id)
    assert manifest.workload == "erp"
    assert manifest.tags == ("first",)
    tree = {e.path: e for e in repo.tree(manifest)}
    expected = _files(source)
    assert {p for p, e in tree.items() if e.type == "file"} == set(expected)
    for path, data in expected.items():
        assert b"".join(repo.read_blob(b) for b in tree[path].content) == data
    assert len(tree["big.bin"].content) > 1  # content-defined chunks
    empty = [path for path, data in expected.items() if not data]
    assert empty
    assert all(tree[path].content == () for path in empty)  # empty files have no blobs
    assert tree["a/b/c"].type == "dir"
    assert result.stats.files == len(expected)


def test_identical_content_is_stored_once(tmp_path: Path) -> None:
    """Two files with the same bytes produce one blob; the second counts as deduplicated."""
    store = MemoryStore()
    repo = new_repository(store)
    source = tmp_path / "fs"
    source.mkdir()
    payload = bytes(range(256)) * 1000
    (source / "one").write_bytes(payload)
    (source / "two").write_bytes(payload)
    result = create_snapshot(repo, source, workload="erp", tier="tier-1")
    assert result.stats.blobs_new == 1 + len(result.manifest.tree)
    assert result.stats.bytes_deduplicated == len(payload)


def test_incremental_snapshot_uploads_only_new_content(tmp_path: Path) -> None:
    """After adding one small file, the next snapshot writes little and reads only that file."""
    store = MemoryStore()
    repo = new_repository(store)
    source = make_tree(tmp_path / "fs")
    first = create_snapshot(repo, source, workload="erp", tier="tier-1")
    written_before = store.bytes_written
    (source / "new-attachment.txt").write_bytes(b"fresh content " * 100)
    second = create_snapshot(repo, source, workload="erp", tier="tier-1")
    written = store.bytes_written - written_before
    assert second.manifest.parent == first.snapshot_id
    assert second.stats.files_read == 1
    assert second.stats.files_unchanged == first.stats.files
    assert second.stats.bytes_new < 10_000  # the new file plus changed tree chunks
    assert written < 0.05 * first.stats.bytes_written
    assert written < 600_000  # one small pack + an index + a manifest (+ a lock object)


def test_incompressible_data_is_stored_raw_and_text_compressed(tmp_path: Path) -> None:
    """Random bytes are kept raw; text is zstd-compressed."""
    repo = new_repository()
    source = tmp_path / "fs"
    source.mkdir()
    (source / "photo.jpg").write_bytes(__import__("os").urandom(300_000))
    (source / "notes.txt").write_bytes(b"the same sentence again and again\n" * 10_000)
    result = create_snapshot(repo, source, workload="erp", tier="tier-1")
    tree = {e.path: e for e in repo.tree(result.manifest)}
    index = repo.load_index()
    photo = index[tree["photo.jpg"].content[0]]
    notes = index[tree["notes.txt"].content[0]]
    assert photo.compression == fmt.COMPRESSION_NONE
    assert notes.compression == fmt.COMPRESSION_ZSTD
    assert notes.length < notes.raw_length / 10


def test_concurrent_snapshots_of_two_workloads(tmp_path: Path) -> None:
    """Two workloads snapshot into one repository at once; both snapshots are complete."""
    store = MemoryStore()
    repo_a = new_repository(store)
    repo_b = Repository(store, repo_a.config, repo_a.keys)
    source_a = make_tree(tmp_path / "a", seed=1)
    source_b = make_tree(tmp_path / "b", seed=2)
    results: dict[str, str] = {}

    def run(name: str, repo: Repository, source: Path) -> None:
        results[name] = create_snapshot(repo, source, workload=name, tier="tier-1").snapshot_id

    threads = [
        threading.Thread(target=run, args=("a", repo_a, source_a)),
        threading.Thread(target=run, args=("b", repo_b, source_b)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    reader = Repository(store, repo_a.config, repo_a.keys)
    for name, source in (("a", source_a), ("b", source_b)):
        tree = {e.path: e for e in reader.tree(reader.load_manifest(results[name]))}
        for path, data in _files(source).items():
            assert b"".join(reader.read_blob(b) for b in tree[path].content) == data
    assert list(store.list("locks/")) == []
