"""Filesystem object store: keys are files under one root directory.

The embedded default repository. Guarantees (see ``drd.storage.base``) and how:

Atomic:
    ``put`` writes a temp file in the key's directory, fsyncs it, ``os.replace``-s it
    over the key and fsyncs the directory. ``put_if_absent`` writes and fsyncs a temp
    file, then ``os.link``-s it to the key: ``link`` fails if the key exists, so it is
    both atomic and exclusive, also between processes.
Private:
    objects are created with mode 0o600, directories with 0o700.
Hidden temp files:
    temp files are named ``.tmp-*``; ``list`` skips them and keys whose last part starts
    with ``.tmp-`` are refused, so a temp file can never be mistaken for an object.

No state is kept in memory: the store is thread-safe, and several processes may share
one root. A key cannot be both an object and a "directory" of other keys (``a`` and
``a/b``): S3 allows that, a filesystem does not, and the write fails with a
``StorageError``. Object Lock is not available here.
"""

from __future__ import annotations

import errno
import os
import stat
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from drd.errors import StorageError
from drd.storage.base import (
    BucketLockStatus,
    LockMode,
    ObjectInfo,
    ObjectLockUnsupportedError,
    ObjectNotFoundError,
    ObjectStore,
    check_key,
)

TEMP_PREFIX = ".tmp-"
FILE_MODE = 0o600
DIR_MODE = 0o700
# A concurrent delete may prune the directory a put just created: try again this often.
_MKDIR_ATTEMPTS = 5


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of ``data`` to ``fd`` (a separate function so tests can break it)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return  # emptied and pruned by a concurrent delete: nothing left to persist
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FilesystemStore(ObjectStore):
    """Objects as files under ``root`` (created on the first write, mode 0o700)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.location = str(self.root)

    # -- paths -------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        check_key(key)
        if key.rsplit("/", 1)[-1].startswith(TEMP_PREFIX):
            raise StorageError(
                f"invalid object key {key!r}: names starting with {TEMP_PREFIX!r} are "
                "reserved for temp files"
            )
        return self.root.joinpath(*key.split("/"))

    def _make_dirs(self, directory: Path) -> None:
        """Create ``directory`` and missing parents (root included) with mode 0o700."""
        missing: list[Path] = []
        current = directory
        while not current.is_dir():
            missing.append(current)
            if current.parent == current:
                break
            current = current.parent
        for path in reversed(missing):
            try:
                path.mkdir(mode=DIR_MODE)
            except FileExistsError:
                if not path.is_dir():
                    raise
            else:
                os.chmod(path, DIR_MODE)  # mkdir's mode is filtered by the umask
                _fsync_dir(path.parent)  # the new entry survives a crash with the object

    def _write_temp(self, path: Path, data: bytes | bytearray | memoryview) -> Path:
        """Write ``data`` to a fsynced temp file next to ``path``; return its path."""
        for attempt in range(1, _MKDIR_ATTEMPTS + 1):
            tmp = path.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
            try:
                self._make_dirs(path.parent)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
            except FileNotFoundError:
                if attempt == _MKDIR_ATTEMPTS:
                    raise
                continue  # the directory was pruned by a concurrent delete
            try:
                try:
                    os.fchmod(fd, FILE_MODE)
                    _write_all(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            return tmp
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, action: str, key: str, exc: OSError) -> StorageError:
        reason = exc.strerror or str(exc)
        if exc.errno in (errno.ENOTDIR, errno.EISDIR, errno.EEXIST):
            reason += " (a key cannot be both an object and a prefix of other keys)"
        return StorageError(f"{self.location}: cannot {action} object {key}: {reason}")

    # -- writes ------------------------------------------------------------------------

    def put(
        self,
        key: str,
        data: bytes,
        *,
        retain_until: datetime | None = None,
        lock_mode: LockMode | None = None,
    ) -> None:
        path = self._path(key)
        if retain_until is not None or lock_mode is not None:
            raise self._no_lock()
        try:
            tmp = self._write_temp(path, data)
            try:
                os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            _fsync_dir(path.parent)
        except OSError as exc:
            raise self._error("write", key, exc) from exc

    def put_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        try:
            tmp = self._write_temp(path, data)
            try:
                os.link(tmp, path)
            except FileExistsError:
                if path.is_dir():
                    raise self._error(
                        "create", key, OSError(errno.EISDIR, os.strerror(errno.EISDIR))
                    ) from None
                return False
            finally:
                tmp.unlink(missing_ok=True)
            _fsync_dir(path.parent)
            return True
        except OSError as exc:
            raise self._error("create", key, exc) from exc

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except IsADirectoryError:
            return  # a "directory" of other keys is not an object: nothing to delete
        except OSError as exc:
            raise self._error("delete", key, exc) from exc
        self._prune(path.parent)

    def _prune(self, directory: Path) -> None:
        """Remove now-empty directories up to (not including) the root; best effort."""
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return  # not empty (or gone, or busy): stop here
            directory = directory.parent

    # -- immutability: none here ---------------------------------------------------------

    def _no_lock(self) -> ObjectLockUnsupportedError:
        return ObjectLockUnsupportedError(
            f"{self.location}: object lock is not supported on a filesystem repository",
            hint="use an S3 repository with Object Lock for immutable copies",
        )

    def bucket_lock_status(self) -> BucketLockStatus:
        raise self._no_lock()

    def set_retention(self, key: str, retain_until: datetime, mode: LockMode) -> bool:
        raise self._no_lock()

    # -- reads -------------------------------------------------------------------------

    def _not_found(self, key: str) -> ObjectNotFoundError:
        return ObjectNotFoundError(f"{self.location}: object {key} not found")

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise self._not_found(key) from None
        except OSError as exc:
            raise self._error("read", key, exc) from exc

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise StorageError(f"invalid range offset={offset} length={length} for {key}")
        path = self._path(key)
        try:
            with path.open("rb") as handle:
                handle.seek(offset)
                return handle.read(length)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise self._not_found(key) from None
        except OSError as exc:
            raise self._error("read", key, exc) from exc

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self._error("stat", key, exc) from exc
        if not stat.S_ISREG(st.st_mode):
            return None
        return self._info(key, st)

    @staticmethod
    def _info(key: str, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Walk the tree in key order, descending only where ``prefix`` can match.

        Entries of one directory are sorted with ``/`` appended to directory names, so
        that ``a-b`` (a file) comes before ``a/c`` (under directory ``a``), as in S3.
        """
        yield from self._walk(self.root, "", prefix)

    def _walk(self, directory: Path, base: str, prefix: str) -> Iterator[ObjectInfo]:
        try:
            with os.scandir(directory) as it:
                entries = [
                    (e.name + "/" if e.is_dir(follow_symlinks=False) else e.name, e) for e in it
                ]
        except (FileNotFoundError, NotADirectoryError):
            return  # no root yet, or a directory pruned while we walk
        except OSError as exc:
            raise StorageError(f"{self.location}: cannot list {directory}: {exc.strerror}") from exc
        entries.sort(key=lambda item: item[0])
        for name, entry in entries:
            key = base + name
            if name.endswith("/"):
                if key.startswith(prefix) or prefix.startswith(key):
                    yield from self._walk(Path(entry.path), key, prefix)
            elif not name.startswith(TEMP_PREFIX) and key.startswith(prefix):
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # deleted while we walk
                if stat.S_ISREG(st.st_mode):
                    yield self._info(key, st)
