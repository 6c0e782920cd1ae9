"""Crash safety: a snapshot killed at any moment leaves a valid repository; the next one
succeeds and reuses what was already stored."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drd.errors import StorageError
from drd.snapshot.create import create_snapshot
from drd.snapshot.keys import PassphraseWrapper, open_repository
from drd.snapshot.repository import Repository
from drd.snapshot.verify import verify_repository
from drd.storage.filesystem import FilesystemStore
from drd.testing.filestore import PASSPHRASE, make_tree, new_repository

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import sys
from pathlib import Path
from drd import log
log.configure("warning")
from drd.snapshot.create import create_snapshot
from drd.snapshot.keys import PassphraseWrapper, open_repository
from drd.snapshot.repository import Repository
from drd.storage.filesystem import FilesystemStore
store = FilesystemStore(Path(sys.argv[1]))
config, keys, _ = open_repository(store, [PassphraseWrapper(sys.argv[3])])
print("ready", flush=True)
repo = Repository(store, config, keys)
create_snapshot(repo, Path(sys.argv[2]), workload="erp", tier="tier-1", workers=2)
"""


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_kill_9_at_random_points_leaves_verify_clean(tmp_path: Path) -> None:
    """Several snapshots killed with SIGKILL mid-way: verify stays clean, a final one completes."""
    repo_dir = tmp_path / "repo"
    new_repository(FilesystemStore(repo_dir))
    source = make_tree(tmp_path / "fs", files=60)
    rng = random.Random(1234)
    for extra in range(4):
        (source / f"extra-{extra}.bin").write_bytes(rng.randbytes(6 * 1024 * 1024))
    killed = 0
    for _ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(repo_dir), str(source), PASSPHRASE],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.0, 0.6))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait(timeout=60)
        proc.stdout.close()
        store = FilesystemStore(repo_dir)
        config, keys, _ = open_repository(store, [PassphraseWrapper(PASSPHRASE)])
        report = verify_repository(Repository(store, config, keys), read_data=True)
        assert report.ok, report
    assert killed >= 1
    store = FilesystemStore(repo_dir)
    config, keys, _ = open_repository(store, [PassphraseWrapper(PASSPHRASE)])
    repo = Repository(store, config, keys)
    result = create_snapshot(repo, source, workload="erp", tier="tier-1")
    tree = {e.path: e for e in repo.tree(result.manifest)}
    for path, data in _files(source).items():
        assert b"".join(repo.read_blob(b) for b in tree[path].content) == data
    assert verify_repository(repo, read_data=True).ok


def test_snapshot_failing_at_the_manifest_is_invisible_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the manifest write fails, no snapshot appears, and the retry uploads almost nothing."""
    store = FilesystemStore(tmp_path / "repo")
    repo = new_repository(store)
    source = make_tree(tmp_path / "fs")
    original_put = FilesystemStore.put

    def failing_put(self: FilesystemStore, key: str, data: bytes, **kw: object) -> None:
        if key.startswith("snapshots/"):
            raise StorageError("simulated crash before the manifest")
        original_put(self, key, data, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(FilesystemStore, "put", failing_put)
    with pytest.raises(StorageError):
        create_snapshot(repo, source, workload="erp", tier="tier-1")
    assert repo.snapshot_ids() == []
    monkeypatch.setattr(FilesystemStore, "put", original_put)
    result = create_snapshot(repo, source, workload="erp", tier="tier-1")
    assert result.stats.files_read == result.stats.files  # no parent: every file is read...
    assert result.stats.bytes_new == 0  # ...but every blob was already stored
    assert verify_repository(repo, read_data=True).ok
