"""Filesystem backend specifics: atomic writes, temp files, modes, no Object Lock."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drd.errors import StorageError
from drd.storage import FilesystemStore, ObjectNotFoundError
from drd.storage import filesystem as fs_module


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _half_then_fail(fd: int, data: bytes | bytearray | memoryview) -> None:
    os.write(fd, bytes(data)[: len(data) // 2])
    raise OSError(28, "No space left on device")


def test_failed_put_keeps_old_content_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write failing halfway leaves the old object intact and no temp file behind."""
    store = FilesystemStore(tmp_path / "root")
    store.put("dir/obj", b"old content")
    monkeypatch.setattr(fs_module, "_write_all", _half_then_fail)
    with pytest.raises(StorageError, match=r"cannot write object dir/obj: No space left"):
        store.put("dir/obj", b"new content that will not fit")
    with pytest.raises(StorageError, match="No space left"):
        store.put_if_absent("dir/other", b"never complete")
    monkeypatch.undo()
    assert store.get("dir/obj") == b"old content"
    assert sorted(p.name for p in (tmp_path / "root" / "dir").iterdir()) == ["obj"]
    assert [i.key for i in store.list()] == ["dir/obj"]
    assert store.head("dir/other") is None


def test_temp_files_are_hidden_and_reserved(tmp_path: Path) -> None:
    """Leftover ``.tmp-*`` files (a crash mid-write) are not listed; such keys are refused."""
    store = FilesystemStore(tmp_path)
    store.put("d/real", b"1")
    (tmp_path / "d" / ".tmp-0123abcd").write_bytes(b"partial")
    assert [i.key for i in store.list()] == ["d/real"]
    with pytest.raises(StorageError, match="reserved for temp files"):
        store.put("d/.tmp-x", b"1")
    store.put("d/.hidden", b"dotfiles are fine")  # only the temp prefix is reserved
    assert [i.key for i in store.list("d/")] == ["d/.hidden", "d/real"]


def test_modes_are_private(tmp_path: Path) -> None:
    """Objects are 0600 and every directory drd creates (root included) is 0700."""
    old_umask = os.umask(0o022)
    try:
        store = FilesystemStore(tmp_path / "repo" / "filestore")
        store.put("a/b/c", b"x")
        assert store.put_if_absent("a/lock", b"y")
    finally:
        os.umask(old_umask)
    base = tmp_path / "repo" / "filestore"
    assert _mode(base / "a" / "b" / "c") == 0o600
    assert _mode(base / "a" / "lock") == 0o600
    for directory in (tmp_path / "repo", base, base / "a", base / "a" / "b"):
        assert _mode(directory) == 0o700, directory


def test_object_lock_is_refused(tmp_path: Path) -> None:
    """retain_until/lock_mode on a filesystem raise StorageError and write nothing."""
    store = FilesystemStore(tmp_path)
    until = datetime.now(UTC) + timedelta(days=1)
    with pytest.raises(StorageError, match="object lock is not supported on a filesystem"):
        store.put("k", b"x", retain_until=until, lock_mode="compliance")
    with pytest.raises(StorageError, match="object lock is not supported"):
        store.put("k", b"x", lock_mode="governance")
    assert store.head("k") is None


def test_missing_root_reads_as_empty(tmp_path: Path) -> None:
    """A root that does not exist yet lists nothing and names itself when a key is missing."""
    root = tmp_path / "not-yet"
    store = FilesystemStore(root)
    assert list(store.list()) == []
    assert store.head("a") is None
    store.delete("a")
    with pytest.raises(ObjectNotFoundError, match=f"{root}: object a/b not found"):
        store.get("a/b")
    assert not root.exists()  # reads do not create it


def test_delete_prunes_empty_directories(tmp_path: Path) -> None:
    """Deleting the last key of a directory removes the empty directories, not the root."""
    store = FilesystemStore(tmp_path / "root")
    store.put("x/y/z", b"1")
    store.put("x/keep", b"2")
    store.delete("x/y/z")
    assert not (tmp_path / "root" / "x" / "y").exists()
    assert (tmp_path / "root" / "x").is_dir()
    store.delete("x/keep")
    assert (tmp_path / "root").is_dir()
    assert list((tmp_path / "root").iterdir()) == []


def test_key_under_an_object_is_a_clear_error(tmp_path: Path) -> None:
    """``a/b`` when ``a`` is an object, or the reverse, fails with a StorageError saying why."""
    store = FilesystemStore(tmp_path)
    store.put("a", b"1")
    with pytest.raises(StorageError, match="both an object and a prefix"):
        store.put("a/b", b"2")
    with pytest.raises(ObjectNotFoundError):
        store.get("a/b")
    assert store.get("a") == b"1"
    store.put("d/e", b"3")
    for write in (store.put, store.put_if_absent):
        with pytest.raises(StorageError, match="both an object and a prefix"):
            write("d", b"4")
    assert [i.key for i in store.list()] == ["a", "d/e"]


def test_puts_race_deletes_that_prune_directories(tmp_path: Path) -> None:
    """Writers and deleters sharing directories never fail: pruned dirs are re-created."""
    store = FilesystemStore(tmp_path)

    def churn(worker: int) -> None:
        for i in range(150):
            key = f"shared/{i % 3}/w{worker}-{i}"
            store.put(key, b"x")
            assert store.put_if_absent(key + ".lock", b"y")
            store.delete(key)
            store.delete(key + ".lock")

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(churn, range(4)))
    assert list(store.list()) == []
    assert [p.name for p in tmp_path.iterdir()] == []
