"""Small file-system helpers whose guarantees other modules rely on."""

from __future__ import annotations

import os
import pwd
import tempfile
from pathlib import Path


def uid_gid(user: str) -> tuple[int, int]:
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def make_dir(path: Path, *, owner: str | None = None, mode: int = 0o700) -> Path:
    """Create ``path`` (and parents) with ``mode``, owned by ``owner`` when we are root.

    PostgreSQL refuses data directories it does not own or that others can read, and
    cannot create them under root-owned directories itself, so drd creates them.
    """
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    if owner is not None and os.geteuid() == 0:
        os.chown(path, *uid_gid(owner))
    return path


def atomic_write(
    path: Path, data: str | bytes, *, mode: int = 0o600, owner: str | None = None
) -> None:
    """Write ``path`` all-or-nothing: temp file in the same directory, fsync, rename.

    The temp file gets its final mode and owner *before* any content is written, so a
    secret-bearing file is never readable by others, not even for a moment.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        if owner is not None and os.geteuid() == 0:
            os.fchown(fd, *uid_gid(owner))
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
