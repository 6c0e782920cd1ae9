"""Repository keys: sealing with AES-256-GCM and keyed BLAKE3 blob ids."""

from __future__ import annotations

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drd.errors import EncryptionError
from drd.snapshot.crypto import OVERHEAD, RepoKeys

KEYS = RepoKeys.generate()
WHAT = "pack data/ab/abcd blob 3f2a"
AAD = b"blob:3f2a"


def test_seal_open_round_trip() -> None:
    """What is sealed opens to the same bytes, with nonce and tag as the only overhead."""
    plaintext = b"odoo attachment \x00\xff" * 100
    sealed = KEYS.seal(plaintext, AAD)
    assert len(sealed) == len(plaintext) + OVERHEAD
    assert plaintext not in sealed
    assert KEYS.open(sealed, AAD, WHAT) == plaintext
    assert KEYS.open(KEYS.seal(b"", AAD), AAD, WHAT) == b""


def test_nonces_differ() -> None:
    """Sealing the same plaintext twice gives different ciphertexts (random nonces)."""
    assert KEYS.seal(b"same", AAD) != KEYS.seal(b"same", AAD)


def _refused(sealed: bytes, *, aad: bytes = AAD, keys: RepoKeys = KEYS) -> str:
    with pytest.raises(EncryptionError) as info:
        keys.open(sealed, aad, WHAT)
    return str(info.value)


def test_aad_mismatch_is_refused() -> None:
    """A ciphertext opened with other associated data (moved elsewhere) fails, naming it."""
    message = _refused(KEYS.seal(b"data", AAD), aad=b"blob:other")
    assert message == (
        f"{WHAT}: authentication failed (corrupted or tampered, or encrypted with another key)"
    )


def test_every_flipped_byte_is_refused() -> None:
    """Flipping any byte (nonce, ciphertext or tag) fails authentication."""
    sealed = KEYS.seal(b"0123456789abcdef", AAD)
    for index in range(len(sealed)):
        tampered = bytearray(sealed)
        tampered[index] ^= 0x01
        assert WHAT in _refused(bytes(tampered))


@pytest.mark.parametrize("length", [0, 1, OVERHEAD - 1, OVERHEAD, OVERHEAD + 3])
def test_truncated_input_is_refused(length: int) -> None:
    """Truncated sealed bytes, even shorter than nonce and tag, fail cleanly."""
    sealed = KEYS.seal(b"some plaintext", AAD)
    assert WHAT in _refused(sealed[:length])


def test_other_key_is_refused() -> None:
    """A ciphertext sealed under another repository's key does not open."""
    assert WHAT in _refused(KEYS.seal(b"data", AAD), keys=RepoKeys.generate())


def test_blob_ids_are_keyed_and_deterministic() -> None:
    """Same data, same id under one key; another id under another key; never a bare hash."""
    data = b"an invoice pdf"
    other = RepoKeys(KEYS.data_key, bytes(32))
    assert KEYS.blob_id(data) == KEYS.blob_id(bytes(data))
    assert len(KEYS.blob_id(data)) == 64
    assert int(KEYS.blob_id(data), 16) >= 0
    assert KEYS.blob_id(data) != other.blob_id(data)
    assert KEYS.blob_id(data) != blake3.blake3(data).hexdigest()
    assert KEYS.blob_id(data) != KEYS.blob_id(data + b"\0")


def test_to_bytes_from_bytes_round_trip() -> None:
    """The 64-byte master material gives back equal keys; a wrong length is refused."""
    material = KEYS.to_bytes()
    assert len(material) == 64
    assert RepoKeys.from_bytes(material) == KEYS
    with pytest.raises(EncryptionError):
        RepoKeys.from_bytes(material[:-1])
    with pytest.raises(EncryptionError):
        RepoKeys(b"short", bytes(32))


def test_repr_hides_keys() -> None:
    """Neither key appears in repr/str, in hex or raw form."""
    text = repr(KEYS) + str(KEYS) + f"{[KEYS]}"
    for key in (KEYS.data_key, KEYS.id_key):
        assert key.hex() not in text
        assert repr(key) not in text
    assert "hidden" in text


@settings(max_examples=60, deadline=None)
@given(plaintext=st.binary(max_size=4096), aad=st.binary(max_size=64), flip=st.integers(0, 10**6))
def test_property_round_trip_and_tamper(plaintext: bytes, aad: bytes, flip: int) -> None:
    """For any plaintext and AAD: round trip works; any single flipped bit is detected."""
    sealed = KEYS.seal(plaintext, aad)
    assert KEYS.open(sealed, aad, WHAT) == plaintext
    tampered = bytearray(sealed)
    tampered[flip % len(sealed)] ^= 1 << (flip % 8)
    with pytest.raises(EncryptionError, match="authentication failed"):
        KEYS.open(bytes(tampered), aad, WHAT)
