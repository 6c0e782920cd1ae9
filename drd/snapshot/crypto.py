"""Repository keys: blob ids (keyed BLAKE3) and sealing (AES-256-GCM). Pure, no I/O.

A repository has one master key material of 64 random bytes, split in two keys:

``data_key`` (32 bytes)
    AES-256-GCM key for everything encrypted in the repository (pack blobs and
    headers, index objects, snapshot manifests).
``id_key`` (32 bytes)
    BLAKE3 key for blob ids: ``blob_id = blake3(plaintext, key=id_key)`` as 64 hex.
    Keyed, so that someone who can list the repository cannot test whether it holds a
    known file by hashing it; deterministic, so that equal content deduplicates.

Sealed format: ``nonce (12 random bytes) || ciphertext || tag (16 bytes)``. The caller
passes associated data (AAD) naming what the bytes are (object key, blob id, kind), so
a valid ciphertext moved to another place fails to open instead of being misread.
Random 96-bit nonces stay safe (collision chance below 2**-32) for 2**32 seals under
one data key: at the minimum chunk size of 256 KiB that is about a pebibyte of blobs.

The master material is never stored in clear: ``drd.snapshot.keys`` wraps it
(``to_bytes``) with each passphrase or KMS key that may open the repository.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from drd.errors import EncryptionError

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
#: Bytes ``seal`` adds to the plaintext (nonce and tag).
OVERHEAD = NONCE_SIZE + TAG_SIZE
MASTER_SIZE = 2 * KEY_SIZE


@dataclass(frozen=True, slots=True, repr=False)
class RepoKeys:
    """The two repository keys; ``repr`` never shows them. Thread-safe (immutable)."""

    data_key: bytes
    id_key: bytes
    _aead: AESGCM = field(init=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if len(self.data_key) != KEY_SIZE or len(self.id_key) != KEY_SIZE:
            raise EncryptionError(f"repository keys must be {KEY_SIZE} bytes each")
        object.__setattr__(self, "_aead", AESGCM(self.data_key))

    def __repr__(self) -> str:
        return "RepoKeys(data_key=<hidden>, id_key=<hidden>)"

    @classmethod
    def generate(cls) -> RepoKeys:
        """Fresh random keys for a new repository."""
        return cls(os.urandom(KEY_SIZE), os.urandom(KEY_SIZE))

    def to_bytes(self) -> bytes:
        """The 64-byte master material (``data_key || id_key``), for wrapping only."""
        return self.data_key + self.id_key

    @classmethod
    def from_bytes(cls, material: bytes) -> RepoKeys:
        """Keys from unwrapped master material; EncryptionError if it is not 64 bytes."""
        if len(material) != MASTER_SIZE:
            raise EncryptionError(
                f"repository key material is {len(material)} bytes, expected {MASTER_SIZE}"
            )
        return cls(material[:KEY_SIZE], material[KEY_SIZE:])

    def blob_id(self, data: bytes) -> str:
        """64-hex keyed BLAKE3 of the plaintext: deterministic, reveals nothing without the key."""
        return blake3.blake3(data, key=self.id_key).hexdigest()

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """``nonce || AES-256-GCM(plaintext) || tag``, authenticated together with ``aad``."""
        nonce = os.urandom(NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes, aad: bytes, what: str) -> bytes:
        """The plaintext of ``seal(plaintext, aad)``; EncryptionError naming ``what`` if not.

        Fails the same way for corruption, tampering, a different ``aad`` and a different
        key: AES-GCM cannot tell them apart, and none of them may yield plaintext.
        """
        if len(sealed) >= OVERHEAD:
            try:
                return self._aead.decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], aad)
            except InvalidTag:
                pass
        raise EncryptionError(
            f"{what}: authentication failed (corrupted or tampered, or encrypted with another key)"
        )
