"""Snapshot restore: byte-identical round trips, metadata, selection, and path safety."""

from __future__ import annotations

import dataclasses
import os
import random
import stat
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType

import pytest

from drd.errors import SnapshotError
from drd.snapshot import format as fmt
from drd.snapshot.create import create_snapshot
from drd.snapshot.keys import PassphraseWrapper, init_repository
from drd.snapshot.repository import Repository
from drd.snapshot.restore import path_problem, restore_snapshot, select
from drd.storage import MemoryStore, ObjectStore
from drd.storage.filesystem import FilesystemStore

SMALL_CHUNKS = MappingProxyType({"min": 16 * 1024, "avg": 32 * 1024, "max": 64 * 1024})
MTIME = 1_600_000_000_123_456_789


@pytest.fixture(params=["memory", "filesystem"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Repository:
    """A fresh repository with small chunks and packs, in memory or on disk."""
    store: ObjectStore = (
        MemoryStore() if request.param == "memory" else FilesystemStore(tmp_path / "repo")
    )
    config, keys = init_repository(store, PassphraseWrapper("restore-tests", n=2**10))
    config = dataclasses.replace(
        config, chunker=SMALL_CHUNKS, small_file_limit=32 * 1024, pack_size=256 * 1024
    )
    return Repository(store, config, keys)


def build_source(root: Path) -> Path:
    """A filestore-like tree: empty files, a multi-chunk file, unicode, nesting, a symlink."""
    rng = random.Random(7)
    (root / "db1" / "ab" / "deep" / "er").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "db1" / "ab" / "0123abcd").write_bytes(rng.randbytes(1000))
    (root / "db1" / "ab" / "empty").write_bytes(b"")
    (root / "db1" / "ab" / "deep" / "er" / "big.bin").write_bytes(rng.randbytes(3 * 1024 * 1024))
    (root / "db1" / "ab" / "deep" / "er" / "repeat.bin").write_bytes(b"x" * 200_000)
    (root / "Ünïcødé — 文件.txt").write_text("grüße\n", encoding="utf-8")
    (root / "script.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(root / "script.sh", 0o750)  # noqa: S103 - a mode the restore must reproduce
    os.chmod(root / "db1" / "ab" / "0123abcd", 0o600)
    os.symlink("db1/ab/0123abcd", root / "link")
    os.symlink("/nonexistent/elsewhere", root / "dangling")
    for i, path in enumerate(sorted(root.rglob("*"), key=lambda p: -len(p.parts))):
        os.utime(path, ns=(MTIME + i, MTIME + i), follow_symlinks=False)
    os.chmod(root / "db1" / "ab" / "deep", 0o550)  # noqa: S103 - read-only: filled, then chmod
    os.utime(root / "db1" / "ab" / "deep", ns=(MTIME, MTIME))
    return root


def describe(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything a restore must reproduce: type, mode, mtime, content or link target."""
    out: dict[str, tuple[object, ...]] = {}
    for path in root.rglob("*"):
        st = path.lstat()
        rel = path.relative_to(root).as_posix()
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("symlink", os.readlink(path), st.st_mtime_ns)
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns)
        else:
            out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, path.read_bytes())
    return out


def snapshot(repo: Repository, source: Path) -> str:
    return create_snapshot(repo, source, workload="acme", tier="tier-1").snapshot_id


def craft_snapshot(
    repo: Repository, entries: Sequence[fmt.TreeEntry], data: Sequence[bytes] = ()
) -> str:
    """Write a snapshot with exactly ``entries`` (as a crafted or corrupt manifest would)."""
    tree = fmt.encode_tree(entries)
    blobs: list[tuple[str, fmt.BlobType, bytes]] = [(repo.keys.blob_id(tree), "tree", tree)]
    blobs += [(repo.keys.blob_id(d), "data", d) for d in data]
    area = bytearray()
    entries_out = []
    for blob_id, kind, plain in blobs:
        sealed = repo.keys.seal(plain, bytes.fromhex(blob_id))
        entries_out.append(fmt.BlobEntry(blob_id, kind, "", len(area), len(sealed), len(plain), 0))
        area += sealed
    header = repo.keys.seal(fmt.encode_pack_header(entries_out), fmt.PACK_HEADER_AAD)
    pack = bytes(area) + fmt.pack_trailer(header)
    pack_id = fmt.content_id(pack)
    repo.store.put(fmt.pack_key(pack_id), pack)
    index = repo.keys.seal(
        fmt.encode_index({pack_id: [dataclasses.replace(e, pack=pack_id) for e in entries_out]}),
        fmt.INDEX_AAD,
    )
    repo.store.put(fmt.index_key(fmt.content_id(index)), index)
    manifest = fmt.Manifest(
        time="2025-01-01T00:00:00+00:00",
        workload="acme",
        tier="tier-1",
        source="/srv/filestore",
        hostname="test",
        tree=(blobs[0][0],),
    )
    sealed = repo.keys.seal(fmt.dump_compressed(manifest.to_doc()), fmt.MANIFEST_AAD)
    snapshot_id = fmt.content_id(sealed)
    repo.store.put(fmt.snapshot_key(snapshot_id), sealed)
    repo.load_index(refresh=True)
    return snapshot_id


def file_entry(path: str, data: bytes, repo: Repository) -> fmt.TreeEntry:
    return fmt.TreeEntry(path, "file", 0o644, MTIME, len(data), 1, (repo.keys.blob_id(data),))


def test_round_trip_is_byte_identical_with_metadata(repo: Repository, tmp_path: Path) -> None:
    """Files, dirs and symlinks come back byte-identical with their modes and mtimes."""
    source = build_source(tmp_path / "src")
    expected = describe(source)
    snapshot_id = snapshot(repo, source)
    calls: list[tuple[int, int, int, int]] = []
    stats = restore_snapshot(
        repo, snapshot_id[:10], tmp_path / "dst", progress=lambda *a: calls.append(a)
    )
    assert describe(tmp_path / "dst") == expected
    files = [v for v in expected.values() if v[0] == "file"]
    total = sum(len(v[3]) for v in files)  # type: ignore[arg-type]
    assert (stats.files, stats.bytes, stats.symlinks) == (len(files), total, 2)
    assert stats.snapshot_id == snapshot_id
    assert calls[-1] == (len(files), total, len(files), total)
    assert [c[:2] for c in calls] == sorted(c[:2] for c in calls)


def test_include_restores_matches_and_their_parents(repo: Repository, tmp_path: Path) -> None:
    """--include takes a directory's subtree or fnmatch matches, plus the dirs above them."""
    source = build_source(tmp_path / "src")
    expected = describe(source)
    snapshot_id = snapshot(repo, source)
    stats = restore_snapshot(
        repo, snapshot_id, tmp_path / "dst", include=["db1/ab/deep", "*.txt"], workers=1
    )
    got = describe(tmp_path / "dst")
    assert set(got) == {
        "db1",
        "db1/ab",
        "db1/ab/deep",
        "db1/ab/deep/er",
        "db1/ab/deep/er/big.bin",
        "db1/ab/deep/er/repeat.bin",
        "Ünïcødé — 文件.txt",
    }
    assert all(got[p] == expected[p] for p in got)
    assert stats.skipped == len(expected) - len(got)


def test_include_matching_nothing_is_an_error(repo: Repository, tmp_path: Path) -> None:
    """An include pattern that matches nothing fails instead of restoring nothing."""
    snapshot_id = snapshot(repo, build_source(tmp_path / "src"))
    with pytest.raises(SnapshotError, match="no entry matches 'nope/\\*'"):
        restore_snapshot(repo, snapshot_id, tmp_path / "dst", include=["nope/*"])


def test_non_empty_target_refused_unless_force(repo: Repository, tmp_path: Path) -> None:
    """A non-empty target is refused; with force, files there are replaced, not followed."""
    source = build_source(tmp_path / "src")
    snapshot_id = snapshot(repo, source)
    target = tmp_path / "dst"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    os.symlink(victim, target / "script.sh")  # a file of the snapshot goes here
    with pytest.raises(SnapshotError, match="is not empty"):
        restore_snapshot(repo, snapshot_id, target)
    restore_snapshot(repo, snapshot_id, target, force=True)
    assert victim.read_text() == "untouched"
    assert not (target / "script.sh").is_symlink()
    assert (target / "script.sh").read_bytes() == (source / "script.sh").read_bytes()
    assert (target / "keep.txt").read_text() == "mine"


def test_force_replaces_a_directory_symlink_without_following_it(
    repo: Repository, tmp_path: Path
) -> None:
    """With force, a symlink in the target where a snapshot dir goes is replaced, not followed."""
    source = build_source(tmp_path / "src")
    snapshot_id = snapshot(repo, source)
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "dst"
    target.mkdir()
    os.symlink(outside, target / "db1")
    restore_snapshot(repo, snapshot_id, target, force=True)
    assert list(outside.iterdir()) == []
    assert describe(target) == describe(source)


def test_symlink_swapped_in_during_restore_is_not_followed(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory replaced by a symlink mid-restore (a race) is refused, never written through."""
    from drd.snapshot import restore

    snapshot_id = snapshot(repo, build_source(tmp_path / "src"))
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "dst"
    real_mkdir = restore._Target.mkdir

    def racing_mkdir(self: restore._Target, path: str) -> None:
        real_mkdir(self, path)
        if path == "db1/ab/deep/er":
            (target / path).rename(tmp_path / "moved-away")
            os.symlink(outside, target / path)

    monkeypatch.setattr(restore._Target, "mkdir", racing_mkdir)
    with pytest.raises(SnapshotError, match=r"'db1/ab/deep/er' .* refusing to write through it"):
        restore_snapshot(repo, snapshot_id, target, workers=1)
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../evil", "'..' component"),
        ("a/../../evil", "'..' component"),
        ("/abs", "absolute path"),
        ("a\\..\\evil", "backslash"),
        ("nul\x00byte", "NUL"),
        ("./x", "'.' component"),
        ("a//b", "empty"),
        ("", "empty path"),
    ],
)
def test_unsafe_paths_rejected_before_writing(
    repo: Repository, tmp_path: Path, path: str, reason: str
) -> None:
    """A manifest entry escaping the target is rejected by name and nothing is written."""
    data = b"pwned"
    snapshot_id = craft_snapshot(
        repo, [file_entry("aaa-ok.txt", data, repo), file_entry(path, data, repo)], [data]
    )
    target = tmp_path / "box" / "dst"
    with pytest.raises(SnapshotError, match=reason) as err:
        restore_snapshot(repo, snapshot_id, target)
    assert repr(path) in str(err.value)
    assert not target.exists() or list(target.iterdir()) == []
    assert not (tmp_path / "box" / "evil").exists()
    assert not Path("/abs").exists()


def test_file_below_a_snapshot_symlink_rejected(repo: Repository, tmp_path: Path) -> None:
    """A symlink link -> outside plus a file link/pwned is rejected naming link/pwned."""
    outside = tmp_path / "x"
    outside.mkdir()
    data = b"pwned"
    snapshot_id = craft_snapshot(
        repo,
        [
            fmt.TreeEntry("link", "symlink", 0o777, MTIME, target=str(outside)),
            file_entry("link/pwned", data, repo),
        ],
        [data],
    )
    target = tmp_path / "dst"
    with pytest.raises(SnapshotError, match="'link/pwned': its parent 'link' is a symlink"):
        restore_snapshot(repo, snapshot_id, target)
    assert list(outside.iterdir()) == []
    assert not target.exists() or list(target.iterdir()) == []


def test_duplicate_and_file_parent_entries_rejected(repo: Repository, tmp_path: Path) -> None:
    """Duplicate paths and entries below a file are named in one error."""
    data = b"data"
    snapshot_id = craft_snapshot(
        repo,
        [
            file_entry("a", data, repo),
            file_entry("a/b", data, repo),
            file_entry("c", data, repo),
            file_entry("c", data, repo),
        ],
        [data],
    )
    with pytest.raises(SnapshotError) as err:
        restore_snapshot(repo, snapshot_id, tmp_path / "dst")
    assert "'a/b': its parent 'a' is a file" in str(err.value)
    assert "'c': duplicate path" in str(err.value)


def test_missing_blob_fails_before_writing(repo: Repository, tmp_path: Path) -> None:
    """A file whose blob is in no index fails before any file is written."""
    snapshot_id = craft_snapshot(
        repo,
        [file_entry("a-ok", b"ok", repo), file_entry("b-lost", b"never stored", repo)],
        [b"ok"],
    )
    target = tmp_path / "dst"
    with pytest.raises(SnapshotError, match=r"'b-lost': blob [0-9a-f]+ is not in any index"):
        restore_snapshot(repo, snapshot_id, target)
    assert not target.exists() or list(target.iterdir()) == []


def test_corrupt_blob_fails_naming_the_pack(repo: Repository, tmp_path: Path) -> None:
    """A blob damaged in its pack stops the restore with an error naming pack and blob."""
    data = os.urandom(5000)
    snapshot_id = craft_snapshot(repo, [file_entry("f", data, repo)], [data])
    entry = repo.entry(repo.keys.blob_id(data))
    key = fmt.pack_key(entry.pack)
    pack = bytearray(repo.store.get(key))
    pack[entry.offset + 40] ^= 0x01
    repo.store.put(key, bytes(pack))
    with pytest.raises(Exception, match=f"pack {key} blob {entry.id}"):
        restore_snapshot(repo, snapshot_id, tmp_path / "dst")


def test_path_rules_and_selection_helpers() -> None:
    """path_problem accepts normal relative names; select adds the dirs above matches."""
    assert path_problem("db1/ab/0123 name — ü") is None
    assert path_problem("..hidden/x..y") is None
    entries = [
        fmt.TreeEntry("a", "dir", 0o755, 0),
        fmt.TreeEntry("a/b", "dir", 0o755, 0),
        fmt.TreeEntry("a/b/c.txt", "file", 0o644, 0),
        fmt.TreeEntry("a/d.bin", "file", 0o644, 0),
    ]
    assert [e.path for e in select(entries, ["./a/b/*.txt"])] == ["a", "a/b", "a/b/c.txt"]
    assert [e.path for e in select(entries, ["a/"])] == ["a", "a/b", "a/b/c.txt", "a/d.bin"]
    assert select(entries, []) == entries
