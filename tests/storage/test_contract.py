"""The ObjectStore contract: every backend (memory, filesystem, S3 on moto) passes it."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from drd.errors import StorageError
from drd.storage import ObjectNotFoundError, ObjectStore

MIB = 1024 * 1024


def test_round_trip_binary_empty_and_large(store: ObjectStore) -> None:
    """put/get returns exactly the bytes written: binary, empty and 1 MiB objects."""
    binary = bytes(range(256)) * 4
    large = os.urandom(MIB)
    store.put("a/binary", binary)
    store.put("a/empty", b"")
    store.put("a/large", large)
    assert store.get("a/binary") == binary
    assert store.get("a/empty") == b""
    assert store.get("a/large") == large


def test_overwrite_replaces_content(store: ObjectStore) -> None:
    """A second put of a key replaces its content and size."""
    store.put("k", b"first version, longer")
    store.put("k", b"second")
    assert store.get("k") == b"second"
    info = store.head("k")
    assert info is not None
    assert info.size == 6


def test_get_range(store: ObjectStore) -> None:
    """get_range returns the middle slice, a short tail at the end, nothing past the end."""
    data = bytes(range(100))
    store.put("r", data)
    assert store.get_range("r", 10, 20) == data[10:30]
    assert store.get_range("r", 0, 100) == data
    assert store.get_range("r", 90, 50) == data[90:]
    assert store.get_range("r", 100, 10) == b""
    assert store.get_range("r", 500, 10) == b""


def test_head(store: ObjectStore) -> None:
    """head gives key, size and a modification time; None for a missing key."""
    store.put("dir/h", b"12345")
    info = store.head("dir/h")
    assert info is not None
    assert (info.key, info.size) == ("dir/h", 5)
    assert info.last_modified is not None
    assert info.last_modified.tzinfo is not None
    assert store.head("dir/missing") is None
    assert store.head("dir") is None  # a "directory" of keys is not an object


def test_list_order_and_prefix(store: ObjectStore) -> None:
    """list yields keys in byte order (``a-b`` before ``a/c``) filtered by prefix."""
    keys = ["b", "a/c", "a-b", "a/b/z", "a/b/a", "ab", "data/3f/x", "data/40/y", "data/3f0"]
    for key in keys:
        store.put(key, key.encode())
    assert [i.key for i in store.list()] == sorted(keys)
    assert [i.key for i in store.list("a/")] == ["a/b/a", "a/b/z", "a/c"]
    assert [i.key for i in store.list("a")] == ["a-b", "a/b/a", "a/b/z", "a/c", "ab"]
    assert [i.key for i in store.list("data/3f")] == ["data/3f/x", "data/3f0"]
    assert [i.key for i in store.list("data/3f/")] == ["data/3f/x"]
    assert list(store.list("nothing")) == []
    sizes = {i.key: i.size for i in store.list()}
    assert sizes == {key: len(key) for key in keys}


def test_list_more_than_one_page(store: ObjectStore) -> None:
    """1001 keys (one more than an S3 list page) are all listed, in order."""
    keys = [f"many/{i:05d}" for i in range(1001)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda key: store.put(key, b"x"), keys))
    store.put("other", b"y")
    assert [i.key for i in store.list("many/")] == keys
    assert len(list(store.list())) == len(keys) + 1


def test_delete_is_idempotent(store: ObjectStore) -> None:
    """delete removes the key; deleting it again, or a key never written, is fine."""
    store.put("x/y/z", b"1")
    store.put("x/keep", b"2")
    store.delete("x/y/z")
    store.delete("x/y/z")
    store.delete("never/written")
    assert store.head("x/y/z") is None
    assert [i.key for i in store.list()] == ["x/keep"]
    store.put("x/y/z", b"3")  # the key can be written again after a delete
    assert store.get("x/y/z") == b"3"


def test_delete_many(store: ObjectStore) -> None:
    """delete_many removes every listed key, missing ones included, and keeps the rest."""
    for i in range(10):
        store.put(f"d/{i}", b"v")
    store.delete_many([f"d/{i}" for i in range(0, 10, 2)] + ["d/missing"])
    assert [i.key for i in store.list()] == [f"d/{i}" for i in range(1, 10, 2)]


def test_missing_key_names_the_key(store: ObjectStore) -> None:
    """get and get_range of a missing key raise ObjectNotFoundError naming the key."""
    with pytest.raises(ObjectNotFoundError, match="missing/key"):
        store.get("missing/key")
    with pytest.raises(ObjectNotFoundError, match="missing/key"):
        store.get_range("missing/key", 0, 10)
    assert issubclass(ObjectNotFoundError, StorageError)


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/abs", "a//b", "a/", "", "./a", "a\\b"])
def test_invalid_keys_refused(store: ObjectStore, key: str) -> None:
    """Keys that could escape a root or confuse listings are refused by every method."""
    for call in (
        lambda: store.put(key, b"x"),
        lambda: store.put_if_absent(key, b"x"),
        lambda: store.get(key),
        lambda: store.get_range(key, 0, 1),
        lambda: store.head(key),
        lambda: store.delete(key),
    ):
        with pytest.raises(StorageError, match="invalid object key"):
            call()
    assert list(store.list()) == []


def test_put_if_absent(store: ObjectStore) -> None:
    """put_if_absent creates once (True), then refuses (False) and keeps the content."""
    assert store.put_if_absent("locks/job", b"owner-1") is True
    assert store.put_if_absent("locks/job", b"owner-2") is False
    assert store.get("locks/job") == b"owner-1"
    store.delete("locks/job")
    assert store.put_if_absent("locks/job", b"owner-3") is True
    assert store.get("locks/job") == b"owner-3"


def test_put_if_absent_race_has_one_winner(store: ObjectStore) -> None:
    """8 threads racing put_if_absent on one key: exactly one wins, its content stays."""
    barrier = threading.Barrier(8)

    def contend(n: int) -> bool:
        barrier.wait(timeout=10)
        return store.put_if_absent("locks/race", f"owner-{n}".encode())

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(contend, range(8)))
    assert results.count(True) == 1
    assert store.get("locks/race") == f"owner-{results.index(True)}".encode()
    assert [i.key for i in store.list()] == ["locks/race"]


def test_concurrent_puts_of_distinct_keys(store: ObjectStore) -> None:
    """Many threads writing different keys in shared directories lose nothing."""
    keys = [f"data/{i % 4}/{i:03d}" for i in range(64)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda key: store.put(key, key.encode()), keys))
    assert [i.key for i in store.list("data/")] == sorted(keys)
    assert all(store.get(key) == key.encode() for key in keys)
