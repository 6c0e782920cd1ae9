"""Repository creation and key management: ``config`` and ``keys/<key id>`` objects.

Layout owned by this module (every other object belongs to the snapshot engine):

``config``
    Plaintext JSON, written once by ``init_repository`` and never changed::

        {"version": 1, "id": "<32 hex>", "created": "<ISO 8601 UTC>",
         "chunker": {"min": 262144, "avg": 1048576, "max": 4194304},
         "small_file_limit": 524288, "pack_size": 8388608}

    Its presence is what makes a location a drd repository; it is created with
    ``put_if_absent``, so of two concurrent ``init_repository`` calls exactly one wins.
``keys/<key id>``
    One JSON document per wrapper of the 64-byte master material (``RepoKeys``): the
    fields of the wrapper (for ``scrypt``: ``n``, ``r``, ``p``, ``salt``, ``wrapped``),
    plus ``kind``, ``created``, ``hostname``, ``label`` and ``repository`` (the config
    ``id``). Key ids are 16 random bytes in hex: they reveal nothing and never change.
    Several keys wrap the same material, so adding or removing a passphrase never
    re-encrypts data.

Init writes the key first and ``config`` last. A key whose ``repository`` is not the
config's ``id`` (left by a crashed or losing init) is ignored by every function here.

Passphrase wrapping (``PassphraseWrapper``, kind ``scrypt``): the key-encryption key is
scrypt(passphrase, 16 random salt bytes, n=2**15, r=8, p=1) by default, which costs
about 32 MiB and 0.05-0.15 s of CPU per key tried (so ~10 guesses/s per core for an
attacker, on top of the passphrase's own strength); the master material is sealed
with AES-256-GCM under it, AAD ``b"drd-key-v1"``. Documents asking for more than 1 GiB
of scrypt memory are refused before deriving anything.

Guarantees callers rely on:
    atomic: ``init_repository`` (config via ``put_if_absent``), ``add_key``;
    never destroys the last way in: ``remove_key`` refuses the key you opened with and
    the last key, and restores what it removed if a concurrent removal took the key
    you opened with;
    errors: a wrong passphrase is ``EncryptionError`` (never garbage keys), a location
    without ``config`` is ``StorageError``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from drd.errors import (
    ConfigError,
    EncryptionError,
    LockError,
    SafetyError,
    SnapshotError,
    StorageError,
)
from drd.log import get_logger
from drd.snapshot.crypto import KEY_SIZE, NONCE_SIZE, RepoKeys
from drd.storage.base import ObjectNotFoundError, ObjectStore

log = get_logger("drd.snapshot.keys")

FORMAT_VERSION = 1
CONFIG_KEY = "config"
KEYS_PREFIX = "keys/"

#: Content-defined chunking bounds (FastCDC) for files above ``SMALL_FILE_LIMIT``.
CHUNK_MIN = 256 * 1024
CHUNK_AVG = 1024 * 1024
CHUNK_MAX = 4 * 1024 * 1024
#: Files up to this size are one blob each, not chunked.
SMALL_FILE_LIMIT = 512 * 1024
#: Target size of a pack object.
PACK_SIZE = 8 * 1024 * 1024

#: Production scrypt cost: 128 * n * r bytes = 32 MiB of memory per derivation.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
#: Refuse key documents asking for more scrypt memory than this (a denial of service).
SCRYPT_MAX_MEMORY = 1 << 30
WRAP_AAD = b"drd-key-v1"
SALT_SIZE = 16

_KEY_ID = re.compile(r"^[0-9a-f]{32}$")


# --- repository config --------------------------------------------------------------


#: The chunker sizes, as in ``config``'s ``chunker`` object.
DEFAULT_CHUNKER: Mapping[str, int] = MappingProxyType(
    {"min": CHUNK_MIN, "avg": CHUNK_AVG, "max": CHUNK_MAX}
)


@dataclass(frozen=True)
class RepoConfig:
    """The ``config`` object: repository id and the format parameters the engine uses.

    ``chunker`` is read-only, with keys ``min``, ``avg`` and ``max`` (bytes).
    """

    id: str
    created: datetime
    version: int = FORMAT_VERSION
    chunker: Mapping[str, int] = field(default_factory=lambda: DEFAULT_CHUNKER)
    small_file_limit: int = SMALL_FILE_LIMIT
    pack_size: int = PACK_SIZE

    @classmethod
    def new(cls) -> RepoConfig:
        return cls(id=os.urandom(16).hex(), created=datetime.now(UTC).replace(microsecond=0))

    def to_json(self) -> bytes:
        doc = {
            "version": self.version,
            "id": self.id,
            "created": self.created.isoformat(),
            "chunker": {name: self.chunker[name] for name in ("min", "avg", "max")},
            "small_file_limit": self.small_file_limit,
            "pack_size": self.pack_size,
        }
        return (json.dumps(doc, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, location: str) -> RepoConfig:
        """Parse and check ``config``; SnapshotError naming the location if it is not valid."""
        where = f"{location}: repository config"
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise SnapshotError(f"{where} is not JSON ({exc})") from None
        version = doc.get("version") if isinstance(doc, dict) else None
        if version != FORMAT_VERSION or isinstance(version, bool):
            raise SnapshotError(
                f"{where}: format version {version!r} is not supported "
                f"(this drd reads version {FORMAT_VERSION})",
                hint="use the drd release that created this repository",
            )
        try:
            chunker = {name: _positive(doc["chunker"][name]) for name in ("min", "avg", "max")}
            config = cls(
                id=str(doc["id"]),
                created=datetime.fromisoformat(doc["created"]),
                version=version,
                chunker=MappingProxyType(chunker),
                small_file_limit=_positive(doc["small_file_limit"]),
                pack_size=_positive(doc["pack_size"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise SnapshotError(f"{where} is malformed ({type(exc).__name__}: {exc})") from None
        if not _KEY_ID.match(config.id) or not (chunker["min"] <= chunker["avg"] <= chunker["max"]):
            raise SnapshotError(f"{where} is malformed (bad id or chunker sizes)")
        return config


def _positive(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return value


def read_config(store: ObjectStore) -> RepoConfig:
    """The repository's config; StorageError if ``store`` is not a drd repository."""
    try:
        data = store.get(CONFIG_KEY)
    except ObjectNotFoundError:
        raise StorageError(
            f"not a drd repository: {store.location} (run `drd repo init REPOSITORY`)"
        ) from None
    return RepoConfig.from_json(data, store.location)


# --- key wrappers -------------------------------------------------------------------


class KeyWrapper(Protocol):
    """One way to protect the master material: a passphrase, a KMS key ...

    ``wrap`` returns the JSON-able fields of a key document (without ``kind`` and the
    metadata, which the caller adds); ``unwrap`` gets the whole document back and
    returns the master material, or raises ``EncryptionError`` (wrong secret, malformed
    or tampered document). Both may be slow (KDF, network) but must be bounded in time.
    """

    kind: str

    def wrap(self, master: bytes) -> dict[str, Any]: ...

    def unwrap(self, doc: Mapping[str, Any]) -> bytes: ...


class PassphraseWrapper:
    """Wrap with a key derived from a passphrase by scrypt (kind ``scrypt``).

    ``n``/``r``/``p`` apply to documents this wrapper writes; when unwrapping, the
    parameters stored in the document are used (within ``SCRYPT_MAX_MEMORY``).
    """

    kind = "scrypt"

    def __init__(
        self, passphrase: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P
    ) -> None:
        if not passphrase:
            raise ConfigError("the repository passphrase is empty")
        _check_scrypt_params(n, r, p)
        self._passphrase = passphrase.encode()
        self.n, self.r, self.p = n, r, p

    def __repr__(self) -> str:
        return f"PassphraseWrapper(n={self.n}, r={self.r}, p={self.p})"

    def matches(self, other: str) -> bool:
        """Whether ``other`` is this wrapper's passphrase (constant-time comparison)."""
        return hmac.compare_digest(self._passphrase, other.encode())

    def _kek(self, salt: bytes, n: int, r: int, p: int) -> bytes:
        return Scrypt(salt=salt, length=KEY_SIZE, n=n, r=r, p=p).derive(self._passphrase)

    def wrap(self, master: bytes) -> dict[str, Any]:
        salt = os.urandom(SALT_SIZE)
        nonce = os.urandom(NONCE_SIZE)
        kek = AESGCM(self._kek(salt, self.n, self.r, self.p))
        wrapped = nonce + kek.encrypt(nonce, master, WRAP_AAD)
        return {"n": self.n, "r": self.r, "p": self.p, "salt": _b64(salt), "wrapped": _b64(wrapped)}

    def unwrap(self, doc: Mapping[str, Any]) -> bytes:
        try:
            n, r, p = int(doc["n"]), int(doc["r"]), int(doc["p"])
            salt = base64.b64decode(doc["salt"], validate=True)
            wrapped = base64.b64decode(doc["wrapped"], validate=True)
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise EncryptionError(f"malformed scrypt key document ({exc})") from None
        _check_scrypt_params(n, r, p)
        if len(salt) < SALT_SIZE or len(wrapped) <= NONCE_SIZE:
            raise EncryptionError("malformed scrypt key document (salt or wrapped too short)")
        kek = AESGCM(self._kek(salt, n, r, p))
        try:
            return kek.decrypt(wrapped[:NONCE_SIZE], wrapped[NONCE_SIZE:], WRAP_AAD)
        except InvalidTag:
            raise EncryptionError("wrong passphrase or tampered key document") from None


def _check_scrypt_params(n: int, r: int, p: int) -> None:
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or 128 * n * r * p > SCRYPT_MAX_MEMORY:
        raise EncryptionError(
            f"scrypt parameters n={n} r={r} p={p} refused (n a power of two, "
            f"at most {SCRYPT_MAX_MEMORY >> 20} MiB)"
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- keys in the repository ---------------------------------------------------------


@dataclass(frozen=True)
class KeyInfo:
    """What ``list_keys`` shows about a key: never the salt, the wrapped key or a secret."""

    id: str
    kind: str
    created: datetime | None
    hostname: str
    label: str


def _key_object(key_id: str) -> str:
    return KEYS_PREFIX + key_id


def _key_doc(config: RepoConfig, wrapper: KeyWrapper, master: bytes, label: str) -> bytes:
    doc = {
        "kind": wrapper.kind,
        **wrapper.wrap(master),
        "repository": config.id,
        "created": datetime.now(UTC).isoformat(),
        "hostname": socket.gethostname(),
        "label": label,
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def _write_key(
    store: ObjectStore, config: RepoConfig, wrapper: KeyWrapper, master: bytes, label: str
) -> str:
    data = _key_doc(config, wrapper, master, label)
    while True:  # a collision of 128 random bits will not happen; never overwrite anyway
        key_id = os.urandom(16).hex()
        if store.put_if_absent(_key_object(key_id), data):
            return key_id


def _load_keys(store: ObjectStore, config: RepoConfig) -> list[tuple[str, dict[str, Any]]]:
    """(key id, document) of this repository's keys; malformed and foreign ones skipped."""
    found = []
    for info in store.list(KEYS_PREFIX):
        key_id = info.key[len(KEYS_PREFIX) :]
        if not _KEY_ID.match(key_id):
            log.warning("repo_key_skipped", location=store.location, key=info.key, reason="name")
            continue
        try:
            doc = json.loads(store.get(info.key))
        except ObjectNotFoundError:
            continue  # removed while listing
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str):
            log.warning("repo_key_skipped", location=store.location, key=info.key, reason="json")
            continue
        if doc.get("repository") != config.id:
            log.warning("repo_key_skipped", location=store.location, key=info.key, reason="foreign")
            continue
        found.append((key_id, doc))
    return found


def init_repository(
    store: ObjectStore, wrapper: KeyWrapper, *, label: str = "initial"
) -> tuple[RepoConfig, RepoKeys]:
    """Create a repository with fresh keys wrapped by ``wrapper``; refuse an existing one."""
    if store.head(CONFIG_KEY) is not None:
        raise _already_initialised(store)
    config = RepoConfig.new()
    keys = RepoKeys.generate()
    key_id = _write_key(store, config, wrapper, keys.to_bytes(), label)
    if not store.put_if_absent(CONFIG_KEY, config.to_json()):
        store.delete(_key_object(key_id))  # another init won the race: leave no trace
        raise _already_initialised(store)
    log.info("repo_initialised", location=store.location, repository_id=config.id, key_id=key_id)
    return config, keys


def _already_initialised(store: ObjectStore) -> StorageError:
    return StorageError(
        f"{store.location} is already a drd repository",
        hint="open it with its passphrase (`drd repo key list REPOSITORY`); "
        "to start over, use an empty location",
    )


def open_repository(
    store: ObjectStore, wrappers: Sequence[KeyWrapper]
) -> tuple[RepoConfig, RepoKeys, str]:
    """Config, keys and the id of the key that opened them; tries every key with every wrapper."""
    config = read_config(store)
    docs = _load_keys(store, config)
    if not docs:
        raise EncryptionError(
            f"repository {store.location} has no keys",
            hint="the repository is damaged or its init did not finish; restore keys/ "
            "from a copy of the repository",
        )
    tried = 0
    for key_id, doc in docs:
        candidates = [w for w in wrappers if w.kind == doc["kind"]]
        tried += bool(candidates)
        for wrapper in candidates:
            try:
                keys = RepoKeys.from_bytes(wrapper.unwrap(doc))
            except EncryptionError:
                continue
            log.debug("repo_opened", location=store.location, key_id=key_id)
            return config, keys, key_id
    if not tried:
        kinds = ", ".join(sorted({str(doc["kind"]) for _, doc in docs}))
        raise EncryptionError(
            f"repository {store.location}: no key can be opened this way "
            f"(its keys are of kind {kinds})"
        )
    raise EncryptionError(
        f"repository {store.location}: no key matches the passphrase "
        f"({tried} key{'s' if tried != 1 else ''} tried)",
        hint="check the repository's encryption.passphrase; `drd repo key list` shows its keys",
    )


def add_key(store: ObjectStore, keys: RepoKeys, wrapper: KeyWrapper, *, label: str) -> str:
    """Wrap the same master material with ``wrapper`` (no data is re-encrypted); the new id."""
    config = read_config(store)
    key_id = _write_key(store, config, wrapper, keys.to_bytes(), label)
    log.info("repo_key_added", location=store.location, key_id=key_id, kind=wrapper.kind)
    return key_id


def list_keys(store: ObjectStore) -> list[KeyInfo]:
    """The repository's keys, oldest first: id, kind, created, hostname, label (no secrets)."""
    config = read_config(store)
    infos = []
    for key_id, doc in _load_keys(store, config):
        try:
            created: datetime | None = datetime.fromisoformat(str(doc.get("created")))
        except ValueError:
            created = None
        infos.append(
            KeyInfo(
                id=key_id,
                kind=str(doc["kind"]),
                created=created,
                hostname=str(doc.get("hostname", "")),
                label=str(doc.get("label", "")),
            )
        )
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(infos, key=lambda k: (k.created or oldest, k.id))


def remove_key(store: ObjectStore, key_id: str, *, current_key_id: str) -> None:
    """Delete one key; refuse the key the caller opened with and the last key."""
    if key_id == current_key_id:
        raise SafetyError(
            f"key {key_id} is the one this passphrase opened: refusing to remove it",
            hint="open the repository with another key's passphrase to remove this one",
        )
    config = read_config(store)
    docs = dict(_load_keys(store, config))
    if key_id not in docs:
        raise StorageError(
            f"repository {store.location} has no key {key_id}",
            hint="`drd repo key list REPOSITORY` shows the key ids",
        )
    if len(docs) < 2:
        raise SafetyError(f"key {key_id} is the last key of {store.location}: refusing")
    if current_key_id not in docs:
        raise LockError(
            f"{store.location}: key {current_key_id} (the one opened with) is gone",
            hint="another drd changed the keys meanwhile; list them and retry",
        )
    removed = store.get(_key_object(key_id))
    store.delete(_key_object(key_id))
    if store.head(_key_object(current_key_id)) is None:
        # Someone removed our key meanwhile (each remover keeps only its own key): put
        # this one back so that the repository cannot end up with no key at all.
        store.put(_key_object(key_id), removed)
        raise LockError(
            f"{store.location}: key {current_key_id} was removed concurrently; "
            f"key {key_id} was restored",
            hint="list the keys and retry with a passphrase that still opens the repository",
        )
    log.info("repo_key_removed", location=store.location, key_id=key_id)
