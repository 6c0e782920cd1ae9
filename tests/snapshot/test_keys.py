"""Repository init and key management on the in-memory and filesystem stores."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from drd.cli.output import to_jsonable
from drd.errors import EncryptionError, LockError, SafetyError, SnapshotError, StorageError
from drd.snapshot.crypto import RepoKeys
from drd.snapshot.keys import (
    CHUNK_AVG,
    CHUNK_MAX,
    CHUNK_MIN,
    PACK_SIZE,
    SCRYPT_N,
    SMALL_FILE_LIMIT,
    PassphraseWrapper,
    add_key,
    init_repository,
    list_keys,
    open_repository,
    read_config,
    remove_key,
)
from drd.storage import MemoryStore, ObjectInfo, ObjectStore
from drd.storage.filesystem import FilesystemStore

FIRST = "first correct horse battery"
SECOND = "second staple tr0ub4dor"
FAST = 2**10  # cheap scrypt for tests; production uses SCRYPT_N


def wrapper(passphrase: str) -> PassphraseWrapper:
    return PassphraseWrapper(passphrase, n=FAST)


@pytest.fixture(params=["memory", "filesystem"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "memory":
        return MemoryStore("memory://keys-test")
    return FilesystemStore(tmp_path / "repo")


class Delegating(ObjectStore):
    """Passes every call to ``inner``; tests override one method to inject a race."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.location = inner.location

    def put(self, key: str, data: bytes, **kw: Any) -> None:
        self.inner.put(key, data, **kw)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return self.inner.put_if_absent(key, data)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        return self.inner.get_range(key, offset, length)

    def head(self, key: str) -> ObjectInfo | None:
        return self.inner.head(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)


def key_objects(store: ObjectStore) -> list[str]:
    return [info.key for info in store.list("keys/")]


def test_init_then_open(store: ObjectStore) -> None:
    """A new repository opens with its passphrase, giving the same keys and config."""
    config, keys = init_repository(store, wrapper(FIRST))
    opened_config, opened_keys, key_id = open_repository(store, [wrapper(FIRST)])
    assert opened_keys == keys
    assert opened_config == config
    assert [k.id for k in list_keys(store)] == [key_id]
    assert len(key_id) == 32
    assert config.chunker == {"min": CHUNK_MIN, "avg": CHUNK_AVG, "max": CHUNK_MAX}
    assert (config.small_file_limit, config.pack_size) == (SMALL_FILE_LIMIT, PACK_SIZE)
    doc = json.loads(store.get("config"))
    assert doc == {
        "version": 1,
        "id": config.id,
        "created": config.created.isoformat(),
        "chunker": {"min": 262144, "avg": 1048576, "max": 4194304},
        "small_file_limit": 524288,
        "pack_size": 8388608,
    }
    assert read_config(store) == config


def test_wrong_passphrase_is_a_clear_error(store: ObjectStore) -> None:
    """A wrong passphrase raises EncryptionError naming the location and keys tried."""
    init_repository(store, wrapper(FIRST))
    with pytest.raises(EncryptionError) as info:
        open_repository(store, [wrapper("not the passphrase")])
    assert info.value.message == (
        f"repository {store.location}: no key matches the passphrase (1 key tried)"
    )
    assert info.value.exit_code == 8


def test_missing_config_is_not_a_repository(store: ObjectStore) -> None:
    """Opening a location without `config` says it is not a repository and what to run."""
    with pytest.raises(StorageError) as info:
        open_repository(store, [wrapper(FIRST)])
    assert str(info.value) == (
        f"not a drd repository: {store.location} (run `drd repo init REPOSITORY`)"
    )


def test_init_twice_is_refused(store: ObjectStore) -> None:
    """A second init fails and leaves the first repository's config and key untouched."""
    config, keys = init_repository(store, wrapper(FIRST))
    before = key_objects(store)
    with pytest.raises(StorageError, match="already a drd repository"):
        init_repository(store, wrapper(SECOND))
    assert key_objects(store) == before
    assert open_repository(store, [wrapper(FIRST)])[:2] == (config, keys)


def test_concurrent_init_has_one_winner(store: ObjectStore) -> None:
    """Two inits that both pass the existence check: exactly one wins, the loser leaves no key."""
    barrier = threading.Barrier(2, timeout=30)

    class Racing(Delegating):
        def head(self, key: str) -> ObjectInfo | None:
            info = self.inner.head(key)
            if key == "config":
                barrier.wait()  # both callers have seen "no config" before either writes
            return info

    racing = Racing(store)
    results: dict[str, object] = {}

    def run(passphrase: str) -> None:
        try:
            results[passphrase] = init_repository(racing, wrapper(passphrase))
        except StorageError as exc:
            results[passphrase] = exc

    threads = [threading.Thread(target=run, args=(p,)) for p in (FIRST, SECOND)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    winners = [p for p, r in results.items() if isinstance(r, tuple)]
    losers = [p for p, r in results.items() if isinstance(r, StorageError)]
    assert len(winners) == 1, results
    assert len(losers) == 1, results
    assert len(key_objects(store)) == 1
    opened = open_repository(store, [wrapper(winners[0])])
    assert opened[:2] == results[winners[0]]
    with pytest.raises(EncryptionError):
        open_repository(store, [wrapper(losers[0])])


def test_second_key_opens_same_keys(store: ObjectStore) -> None:
    """Either passphrase opens the repository to the same keys after `add_key`."""
    _, keys = init_repository(store, wrapper(FIRST))
    first_id = open_repository(store, [wrapper(FIRST)])[2]
    second_id = add_key(store, keys, wrapper(SECOND), label="ops rotation")
    assert second_id != first_id
    _, keys_first, id_first = open_repository(store, [wrapper(FIRST)])
    _, keys_second, id_second = open_repository(store, [wrapper(SECOND)])
    assert keys_first == keys_second == keys
    assert (id_first, id_second) == (first_id, second_id)
    with pytest.raises(EncryptionError, match=r"\(2 keys tried\)"):
        open_repository(store, [wrapper("neither of them")])


def test_list_shows_keys_without_secrets(store: ObjectStore) -> None:
    """list_keys gives id, kind, created, hostname, label; no passphrase or key bytes."""
    _, keys = init_repository(store, wrapper(FIRST))
    add_key(store, keys, wrapper(SECOND), label="backup operator")
    infos = list_keys(store)
    assert [(k.kind, k.label) for k in infos] == [
        ("scrypt", "initial"),
        ("scrypt", "backup operator"),
    ]
    assert all(isinstance(k.created, datetime) and k.hostname for k in infos)
    text = json.dumps(to_jsonable([asdict(k) for k in infos]))
    secrets = [FIRST, SECOND]
    for material in (keys.data_key, keys.id_key, keys.to_bytes()):
        secrets += [material.hex(), base64.b64encode(material).decode()]
    for key_id in (k.id for k in infos):
        doc = json.loads(store.get(f"keys/{key_id}"))
        secrets += [doc["salt"], doc["wrapped"]]
        assert FIRST not in json.dumps(doc)
        assert SECOND not in json.dumps(doc)
    for secret in secrets:
        assert secret not in text


def test_removed_key_no_longer_opens(store: ObjectStore) -> None:
    """After removing the second key its passphrase fails; the first still works."""
    _, keys = init_repository(store, wrapper(FIRST))
    first_id = open_repository(store, [wrapper(FIRST)])[2]
    second_id = add_key(store, keys, wrapper(SECOND), label="temp")
    remove_key(store, second_id, current_key_id=first_id)
    assert [k.id for k in list_keys(store)] == [first_id]
    with pytest.raises(EncryptionError, match="no key matches"):
        open_repository(store, [wrapper(SECOND)])
    assert open_repository(store, [wrapper(FIRST)])[1] == keys


def test_removing_current_or_last_key_is_refused(store: ObjectStore) -> None:
    """The key you opened with and the last key cannot be removed; unknown ids are errors."""
    _, keys = init_repository(store, wrapper(FIRST))
    only = open_repository(store, [wrapper(FIRST)])[2]
    with pytest.raises(SafetyError, match="open the repository with another key"):
        remove_key(store, only, current_key_id=only)
    with pytest.raises(SafetyError, match="last key"):
        remove_key(store, only, current_key_id="0" * 32)
    second = add_key(store, keys, wrapper(SECOND), label="")
    with pytest.raises(SafetyError):
        remove_key(store, second, current_key_id=second)
    with pytest.raises(StorageError, match="has no key"):
        remove_key(store, "f" * 32, current_key_id=only)
    assert len(list_keys(store)) == 2


def test_concurrent_removal_cannot_remove_every_key(store: ObjectStore) -> None:
    """If the key we opened with vanishes while we remove another, ours is put back."""
    _, keys = init_repository(store, wrapper(FIRST))
    first = open_repository(store, [wrapper(FIRST)])[2]
    second = add_key(store, keys, wrapper(SECOND), label="")

    class OtherRemover(Delegating):
        def delete(self, key: str) -> None:
            self.inner.delete(key)
            self.inner.delete(f"keys/{first}")  # another admin removes "our" key meanwhile

    with pytest.raises(LockError, match="restored"):
        remove_key(OtherRemover(store), second, current_key_id=first)
    assert [k.id for k in list_keys(store)] == [second]
    assert open_repository(store, [wrapper(SECOND)])[1] == keys


def test_tampered_key_doc_is_refused(store: ObjectStore) -> None:
    """A flipped byte in a key's wrapped material gives EncryptionError, not other keys."""
    init_repository(store, wrapper(FIRST))
    (key_id,) = [k.id for k in list_keys(store)]
    doc = json.loads(store.get(f"keys/{key_id}"))
    wrapped = bytearray(base64.b64decode(doc["wrapped"]))
    wrapped[len(wrapped) // 2] ^= 0x40
    doc["wrapped"] = base64.b64encode(bytes(wrapped)).decode()
    store.put(f"keys/{key_id}", json.dumps(doc).encode())
    with pytest.raises(EncryptionError, match="no key matches the passphrase"):
        open_repository(store, [wrapper(FIRST)])


def test_foreign_and_malformed_key_docs_are_ignored(store: ObjectStore) -> None:
    """Keys of another repository (e.g. a losing init) and junk under keys/ are skipped."""
    _, keys = init_repository(store, wrapper(FIRST))
    other = MemoryStore()
    init_repository(other, wrapper(SECOND))
    (foreign,) = [info.key for info in other.list("keys/")]
    store.put(foreign, other.get(foreign))
    store.put("keys/" + "a" * 32, b"not json")
    store.put("keys/README", b"hello")
    assert len(list_keys(store)) == 1
    with pytest.raises(EncryptionError, match=r"\(1 key tried\)"):
        open_repository(store, [wrapper(SECOND)])
    assert open_repository(store, [wrapper(FIRST)])[1] == keys


def test_malformed_or_future_config_is_a_snapshot_error(store: ObjectStore) -> None:
    """A config that is not JSON, incomplete or of a future version names the problem."""
    init_repository(store, wrapper(FIRST))
    doc = json.loads(store.get("config"))
    store.put("config", json.dumps({**doc, "version": 2}).encode())
    with pytest.raises(SnapshotError, match="format version 2 is not supported"):
        read_config(store)
    store.put("config", json.dumps({**doc, "pack_size": -1}).encode())
    with pytest.raises(SnapshotError, match="malformed"):
        open_repository(store, [wrapper(FIRST)])
    store.put("config", b"{")
    with pytest.raises(SnapshotError, match="not JSON"):
        read_config(store)


def test_scrypt_parameters_are_bounded() -> None:
    """Production cost is the default; a key doc asking for huge scrypt memory is refused."""
    assert SCRYPT_N >= 2**15
    assert PassphraseWrapper(FIRST).n == SCRYPT_N
    doc = {"kind": "scrypt", **wrapper(FIRST).wrap(bytes(64))}
    assert doc["n"] == FAST
    with pytest.raises(EncryptionError, match="refused"):
        wrapper(FIRST).unwrap({**doc, "n": 2**30})
    with pytest.raises(EncryptionError, match="malformed"):
        wrapper(FIRST).unwrap({**doc, "salt": "%%%"})
    assert wrapper(FIRST).unwrap(doc) == bytes(64)
    assert FIRST not in repr(wrapper(FIRST))


def test_production_cost_key_round_trip() -> None:
    """A key wrapped with the default (strong) scrypt cost records it and opens."""
    store = MemoryStore()
    _, keys = init_repository(store, PassphraseWrapper(FIRST))
    (info,) = list_keys(store)
    assert json.loads(store.get(f"keys/{info.id}"))["n"] == SCRYPT_N
    assert open_repository(store, [PassphraseWrapper(FIRST)])[1] == keys


class FakeKms:
    """A KMS-style wrapper: the 'KMS' is a local RepoKeys that seals the material."""

    kind = "fake-kms"

    def __init__(self) -> None:
        self.kms = RepoKeys.generate()

    def wrap(self, master: bytes) -> dict[str, Any]:
        return {"ciphertext": self.kms.seal(master, b"kms").hex()}

    def unwrap(self, doc: Mapping[str, Any]) -> bytes:
        return self.kms.open(bytes.fromhex(doc["ciphertext"]), b"kms", "fake kms key")


def test_other_wrapper_kinds_coexist(store: ObjectStore) -> None:
    """A KMS-style key opens the same keys; wrappers only try keys of their own kind."""
    _, keys = init_repository(store, wrapper(FIRST))
    kms = FakeKms()
    kms_id = add_key(store, keys, kms, label="kms")
    assert open_repository(store, [kms])[1:] == (keys, kms_id)
    assert open_repository(store, [kms, wrapper("wrong")])[1] == keys
    assert {k.kind for k in list_keys(store)} == {"scrypt", "fake-kms"}
    remove_key(store, kms_id, current_key_id=open_repository(store, [wrapper(FIRST)])[2])
    with pytest.raises(EncryptionError, match="no key can be opened this way"):
        open_repository(store, [kms])
