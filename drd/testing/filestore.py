"""Test and bench helpers for snapshots: a fresh repository and filestore-like trees."""

from __future__ import annotations

import os
import random
from pathlib import Path

from drd.snapshot.keys import PassphraseWrapper, init_repository
from drd.snapshot.repository import Repository
from drd.storage import MemoryStore, ObjectStore

PASSPHRASE = "snapshot-test-passphrase"  # noqa: S105 - test-only


def new_repository(store: ObjectStore | None = None, *, passphrase: str = PASSPHRASE) -> Repository:
    """An initialised repository (cheap scrypt parameters: tests only)."""
    store = store or MemoryStore()
    config, keys = init_repository(store, PassphraseWrapper(passphrase, n=2**10))
    return Repository(store, config, keys)


def make_tree(root: Path, *, seed: int = 7, files: int = 40) -> Path:
    """A small filestore-like tree: Odoo-style names, empty files, text, random data,
    a unicode name, nested dirs and one multi-chunk file."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, nothing secret
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        sub = root / f"{i % 7:02x}"
        sub.mkdir(exist_ok=True)
        kind = i % 4
        if kind == 0:
            data = b""
        elif kind == 1:
            data = (f"line {i} of a text attachment\n" * rng.randint(10, 500)).encode()
        else:
            data = rng.randbytes(rng.randint(1, 200_000))
        (sub / f"{rng.getrandbits(160):040x}").write_bytes(data)
    (root / "ünïcødé — ファイル.txt").write_text("unicode name\n")
    nested = root / "a" / "b" / "c"
    nested.mkdir(parents=True, exist_ok=True)
    (nested / "deep.bin").write_bytes(rng.randbytes(5000))
    os.chmod(nested / "deep.bin", 0o640)
    (root / "big.bin").write_bytes(rng.randbytes(3 * 1024 * 1024) + b"\0" * (2 * 1024 * 1024))
    return root
