"""An opened snapshot repository: store + keys + config, and the read paths.

Readers (list, show, diff, restore, verify) and the writer share this. Every object
read is authenticated (AES-GCM) and every blob is checked against its keyed id after
decryption, so a corrupted or swapped object is an error that names the object, never
silently wrong data.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import zstandard

from drd.errors import SnapshotError
from drd.snapshot import format as fmt
from drd.snapshot.crypto import RepoKeys
from drd.snapshot.keys import RepoConfig
from drd.storage import ObjectStore


@dataclass(frozen=True)
class SnapshotRef:
    id: str
    manifest: fmt.Manifest

    @property
    def short_id(self) -> str:
        return self.id[:8]


class Repository:
    def __init__(self, store: ObjectStore, config: RepoConfig, keys: RepoKeys) -> None:
        self.store = store
        self.config = config
        self.keys = keys
        self._index: dict[str, fmt.BlobEntry] | None = None
        self._index_lock = threading.Lock()
        self._local = threading.local()

    # -- sealed objects ------------------------------------------------------------------

    def seal_doc(self, data: bytes, aad: bytes) -> bytes:
        return self.keys.seal(data, aad)

    def open_doc(self, key: str, aad: bytes) -> bytes:
        return self.keys.open(self.store.get(key), aad, key)

    # -- index -----------------------------------------------------------------------------

    def index_ids(self) -> list[str]:
        return [info.key.removeprefix("index/") for info in self.store.list("index/")]

    def invalidate_index(self) -> None:
        """Forget the cached index (after writing): it is reloaded on next use."""
        with self._index_lock:
            self._index = None

    def load_index(self, *, refresh: bool = False) -> dict[str, fmt.BlobEntry]:
        """blob id -> where it is, from every index object (cached)."""
        with self._index_lock:
            if self._index is not None and not refresh:
                return self._index
            index: dict[str, fmt.BlobEntry] = {}
            for index_id in self.index_ids():
                sealed = self.open_doc(fmt.index_key(index_id), fmt.INDEX_AAD)
                for entry in fmt.decode_index(sealed, index_id):
                    index.setdefault(entry.id, entry)
            self._index = index
            return index

    # -- snapshots -------------------------------------------------------------------------

    def snapshot_ids(self) -> list[str]:
        return [info.key.removeprefix("snapshots/") for info in self.store.list("snapshots/")]

    def load_manifest(self, snapshot_id: str) -> fmt.Manifest:
        key = fmt.snapshot_key(snapshot_id)
        data = self.open_doc(key, fmt.MANIFEST_AAD)
        return fmt.Manifest.from_doc(
            fmt.load_compressed(data, f"snapshot {key}"), f"snapshot {key}"
        )

    def snapshots(self, workload: str | None = None) -> list[SnapshotRef]:
        """All snapshots (of ``workload``), oldest first."""
        refs = [SnapshotRef(sid, self.load_manifest(sid)) for sid in self.snapshot_ids()]
        if workload is not None:
            refs = [r for r in refs if r.manifest.workload == workload]
        return sorted(refs, key=lambda r: (r.manifest.time, r.id))

    def resolve(self, prefix: str) -> str:
        """A full snapshot id from a unique prefix (at least 4 characters)."""
        if len(prefix) < 4:
            raise SnapshotError(f"snapshot id {prefix!r} is too short (give at least 4 characters)")
        matches = [sid for sid in self.snapshot_ids() if sid.startswith(prefix)]
        if not matches:
            raise SnapshotError(f"no snapshot {prefix!r} in repository {self.store.location}")
        if len(matches) > 1:
            raise SnapshotError(
                f"snapshot id {prefix!r} is ambiguous: {', '.join(m[:12] for m in matches)}"
            )
        return matches[0]

    def tree(self, manifest: fmt.Manifest) -> list[fmt.TreeEntry]:
        data = b"".join(self.read_blob(blob_id) for blob_id in manifest.tree)
        return fmt.decode_tree(data, f"snapshot of {manifest.workload} at {manifest.time}")

    # -- blobs -----------------------------------------------------------------------------

    def entry(self, blob_id: str) -> fmt.BlobEntry:
        try:
            return self.load_index()[blob_id]
        except KeyError:
            raise SnapshotError(
                f"blob {blob_id} is not in any index of {self.store.location}"
            ) from None

    def decode_blob(self, entry: fmt.BlobEntry, sealed: bytes) -> bytes:
        """Decrypt, decompress and check one blob read from its pack."""
        what = f"pack {fmt.pack_key(entry.pack)} blob {entry.id}"
        plain = self.keys.open(sealed, bytes.fromhex(entry.id), what)
        if entry.compression == fmt.COMPRESSION_ZSTD:
            try:
                plain = self._decompressor().decompress(plain, max_output_size=entry.raw_length)
            except zstandard.ZstdError as exc:
                raise SnapshotError(f"{what}: cannot decompress ({exc})") from exc
        if len(plain) != entry.raw_length or self.keys.blob_id(plain) != entry.id:
            raise SnapshotError(f"{what}: content does not match its id (corrupted)")
        return plain

    def read_blob(self, blob_id: str) -> bytes:
        entry = self.entry(blob_id)
        sealed = self.store.get_range(fmt.pack_key(entry.pack), entry.offset, entry.length)
        if len(sealed) != entry.length:
            raise SnapshotError(f"pack {fmt.pack_key(entry.pack)}: truncated at blob {blob_id}")
        return self.decode_blob(entry, sealed)

    def _decompressor(self) -> Any:
        dec = getattr(self._local, "dctx", None)
        if dec is None:
            dec = zstandard.ZstdDecompressor()
            self._local.dctx = dec
        return dec

    def packs(self) -> Iterator[str]:
        for info in self.store.list("data/"):
            yield info.key.rsplit("/", 1)[-1]
