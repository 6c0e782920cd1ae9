"""The snapshot repository format: object keys, pack layout, index, tree and manifest.

See docs/repository-format.md for the whole picture. Everything here is pure
serialization (no I/O), so readers and writers agree by construction:

* ``data/<2 hex>/<pack id>``: a pack: ``blob ... blob | header | u32 header length``.
  Each blob is sealed (AES-256-GCM, nonce first) with the blob id as AAD, so a blob
  cannot be swapped for another. The header lists the blobs (sealed, AAD
  ``drd-pack-header``); pack id = SHA-256 of the whole pack (checkable without keys).
* ``index/<id>``: sealed, zstd-compressed JSON: for each pack, its blobs with offset and
  length. id = SHA-256 of the stored bytes.
* ``snapshots/<id>``: the manifest: sealed, zstd-compressed JSON with workload, tier,
  time, parent, tags, DB restore point, summary, and the ids of the *tree blobs*.
  id = SHA-256 of the stored bytes. Written last: a snapshot exists once this does.
* Tree: one compact JSON array of entries (sorted by path), content-defined-chunked
  into tree blobs stored in packs like file data, so an unchanged part of a large tree
  is deduplicated across snapshots.
* ``locks/<id>``: plaintext JSON lock objects (see ``drd.snapshot.lock``).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import zstandard

from drd.errors import SnapshotError

FORMAT_VERSION = 1
BlobType = Literal["data", "tree"]
COMPRESSION_NONE = 0
COMPRESSION_ZSTD = 1
PACK_HEADER_AAD = b"drd-pack-header"
INDEX_AAD = b"drd-index"
MANIFEST_AAD = b"drd-snapshot"
_TRAILER = struct.Struct("<I")


def pack_key(pack_id: str) -> str:
    return f"data/{pack_id[:2]}/{pack_id}"


def index_key(index_id: str) -> str:
    return f"index/{index_id}"


def snapshot_key(snapshot_id: str) -> str:
    return f"snapshots/{snapshot_id}"


def content_id(data: bytes) -> str:
    """Storage id of packs, indexes and manifests: SHA-256 of the stored bytes."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)  # one per blob: millions in a large repository
class BlobEntry:
    """Where one blob lives: its pack, byte range, and how to read it back."""

    id: str
    type: BlobType
    pack: str
    offset: int
    length: int  # stored (sealed) length
    raw_length: int  # plaintext length after decompression
    compression: int

    def row(self) -> list[Any]:
        return [self.type, self.id, self.offset, self.length, self.raw_length, self.compression]

    @classmethod
    def from_row(cls, pack: str, row: Sequence[Any]) -> BlobEntry:
        kind, blob_id, offset, length, raw_length, compression = row
        if kind not in ("data", "tree"):
            raise ValueError(f"unknown blob type {kind!r}")
        return cls(
            str(blob_id), kind, pack, int(offset), int(length), int(raw_length), int(compression)
        )


# -- JSON + zstd helpers ---------------------------------------------------------------

_ZSTD_LEVEL = 3


def dump_compressed(doc: Any) -> bytes:
    raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(raw)


def load_compressed(data: bytes, what: str) -> Any:
    try:
        raw = zstandard.ZstdDecompressor().decompress(data)
        return json.loads(raw)
    except (zstandard.ZstdError, ValueError) as exc:
        raise SnapshotError(f"{what}: cannot decode ({exc})") from exc


# -- packs -------------------------------------------------------------------------------


def pack_trailer(sealed_header: bytes) -> bytes:
    return sealed_header + _TRAILER.pack(len(sealed_header))


def split_pack(pack: bytes, what: str) -> tuple[bytes, bytes]:
    """(blob area, sealed header) of a whole pack."""
    if len(pack) < _TRAILER.size:
        raise SnapshotError(f"{what}: too short to be a pack ({len(pack)} bytes)")
    (header_length,) = _TRAILER.unpack_from(pack, len(pack) - _TRAILER.size)
    start = len(pack) - _TRAILER.size - header_length
    if header_length == 0 or start < 0:
        raise SnapshotError(f"{what}: header length {header_length} does not fit the pack")
    return pack[:start], pack[start : len(pack) - _TRAILER.size]


def encode_pack_header(entries: Sequence[BlobEntry]) -> bytes:
    return dump_compressed({"v": FORMAT_VERSION, "blobs": [e.row() for e in entries]})


def decode_pack_header(data: bytes, pack_id: str) -> list[BlobEntry]:
    doc = load_compressed(data, f"pack {pack_key(pack_id)} header")
    try:
        return [BlobEntry.from_row(pack_id, row) for row in doc["blobs"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"pack {pack_key(pack_id)}: malformed header ({exc})") from exc


# -- index -------------------------------------------------------------------------------


def encode_index(packs: Mapping[str, Sequence[BlobEntry]]) -> bytes:
    return dump_compressed(
        {
            "v": FORMAT_VERSION,
            "packs": [
                {"id": pack, "blobs": [e.row() for e in entries]} for pack, entries in packs.items()
            ],
        }
    )


def decode_index(data: bytes, index_id: str) -> Iterator[BlobEntry]:
    doc = load_compressed(data, f"index {index_key(index_id)}")
    try:
        for pack in doc["packs"]:
            for row in pack["blobs"]:
                yield BlobEntry.from_row(str(pack["id"]), row)
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"index {index_key(index_id)}: malformed ({exc})") from exc


# -- tree --------------------------------------------------------------------------------

EntryType = Literal["file", "dir", "symlink"]


@dataclass(frozen=True, slots=True)  # one per file: millions in a large filestore
class TreeEntry:
    """One path in a snapshot. ``path`` is relative, '/'-separated, never '..'."""

    path: str
    type: EntryType
    mode: int
    mtime_ns: int
    size: int = 0
    inode: int = 0
    content: tuple[str, ...] = ()
    target: str | None = None  # symlink target


def encode_tree(entries: Iterable[TreeEntry]) -> bytes:
    """One compact JSON array of entry arrays, sorted by path.

    Content-defined chunking needs no line structure, and one ``json.dumps`` / ``loads``
    of the whole tree is an order of magnitude faster than one per entry (a filestore
    has millions of entries)."""
    rows = [
        [e.path, e.type, e.mode, e.mtime_ns, e.size, e.inode, list(e.content), e.target]
        for e in entries
    ]
    return json.dumps(rows, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_tree(data: bytes, what: str) -> list[TreeEntry]:
    try:
        rows = json.loads(data)
        out = []
        for path, kind, mode, mtime_ns, size, inode, content, target in rows:
            if kind not in ("file", "dir", "symlink"):
                raise SnapshotError(f"{what}: unknown entry type {kind!r} for {path!r}")
            out.append(
                TreeEntry(
                    str(path),
                    kind,
                    int(mode),
                    int(mtime_ns),
                    int(size),
                    int(inode),
                    tuple(content),
                    target,
                )
            )
        return out
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"{what}: malformed tree ({exc})") from exc


# -- manifest ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    time: str  # ISO 8601 UTC, snapshot start
    workload: str
    tier: str
    source: str  # the filestore path that was read
    hostname: str
    tree: tuple[str, ...]  # tree blob ids, in order
    parent: str | None = None
    tags: tuple[str, ...] = ()
    db_restore_point: Mapping[str, Any] | None = None
    summary: Mapping[str, Any] = field(default_factory=dict)
    version: int = FORMAT_VERSION

    def to_doc(self) -> dict[str, Any]:
        return {
            "v": self.version,
            "time": self.time,
            "workload": self.workload,
            "tier": self.tier,
            "source": self.source,
            "hostname": self.hostname,
            "tree": list(self.tree),
            "parent": self.parent,
            "tags": list(self.tags),
            "db_restore_point": dict(self.db_restore_point) if self.db_restore_point else None,
            "summary": dict(self.summary),
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], what: str) -> Manifest:
        try:
            if int(doc["v"]) != FORMAT_VERSION:
                raise SnapshotError(
                    f"{what}: format version {doc['v']} is not supported by this drd"
                )
            return cls(
                time=str(doc["time"]),
                workload=str(doc["workload"]),
                tier=str(doc["tier"]),
                source=str(doc["source"]),
                hostname=str(doc["hostname"]),
                tree=tuple(str(t) for t in doc["tree"]),
                parent=doc.get("parent"),
                tags=tuple(doc.get("tags") or ()),
                db_restore_point=doc.get("db_restore_point"),
                summary=doc.get("summary") or {},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"{what}: malformed manifest ({exc})") from exc
