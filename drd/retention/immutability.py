"""Immutability: S3 Object Lock on everything drd writes for tiers with ``immutability``.

A tier's ``immutability: {mode, days}`` becomes a ``LockPolicy``. What is promised, and
how each part is kept:

Written objects are locked.
    ``LockingStore`` wraps a repository's store: every ``put`` (packs, indexes,
    manifests, keys, config, drill evidence) carries retain-until = now + ``days`` in
    the tier's mode. Exception: ``locks/`` (snapshot repository locks), which hold no
    backup data and must be deletable when released. pgBackRest 2.45 cannot send
    Object Lock headers, so after a backup drd locks its files: ``lock_pgbackrest``
    (the backup's directory, ``backup.info``, archived WAL).
Kept restore points stay locked.
    A pack written months ago may be referenced by the newest snapshot (dedup), so a
    lock set at write time is not enough. Retention calls ``extend_locks`` with the
    objects referenced by the restore points it keeps: a lock that would expire
    within ``renew_within`` (max(2 days, days/5), at most ``days``) is extended to
    now + ``days``. Each object is extended about once per ``renew_within``, not on
    every run, and a kept object's lock never runs shorter than ``renew_within`` minus
    the time between retention runs (run retention at least daily).
Nothing is bypassed, nothing shortened.
    drd never sends ``BypassGovernanceRetention``; a delete of a locked object raises
    ``ObjectLockedError`` ("KEY is locked until DATE (mode)"), and a plan shows
    ``split_locked``'s "locked until DATE" instead of trying. An active governance
    lock stays governance when extended (S3 would need a bypass to make it
    compliance): ``check_immutability`` reports it as weaker than the tier.
Misconfiguration is an error, not a downgrade.
    ``require_object_lock`` (and ``require_estate_object_lock`` at startup) raise
    ``ConfigError`` when an S3 repository serving an immutable tier has no versioning
    or Object Lock, or a bucket default retention (which would lock ``locks/`` too).
    Filesystem repositories cannot lock anything: they are reported as warnings,
    immutability applies to S3 repositories. Writers (``drd backup db``, ``drd snapshot
    create``, ``drd repo init``, drill evidence) call ``ensure_object_lock`` first: the
    same check for their repository, one bucket call per process (a repository that
    passed, here or in ``require_estate_object_lock``, is not asked again).
One repository, several tiers.
    Filestore packs are shared by every workload of a repository (deduplication), so
    a repository's objects follow its strictest tier: compliance if any tier says
    so, and the longest ``days``.
Audit.
    ``check_immutability`` (``drd repo check-immutability``) lists objects whose lock is
    missing, expired, expiring within ``min_remaining`` (default 1 day) or in a mode
    weaker than the tier's. With ``referenced`` only those objects are judged; without
    it every object is (unreferenced objects await prune: after their lock expires they
    show up until prune deletes them).
"""

from __future__ import annotations

import builtins
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from drd.config import Estate
from drd.config.models import FilesystemRepository, S3Repository
from drd.config.tier import Immutability, Tier
from drd.errors import ConfigError
from drd.log import get_logger
from drd.storage.base import (
    BucketLockStatus,
    LifecycleTransition,
    LockMode,
    ObjectInfo,
    ObjectLockUnsupportedError,
    ObjectRetention,
    ObjectStore,
    format_lock_date,
)

log = get_logger("drd.retention.immutability")

#: Keys under these prefixes of a snapshot store are never locked (repository locks).
EXEMPT: tuple[str, ...] = ("locks/",)
#: The same, seen from a repository's root store (``filestore/`` and ``pgbackrest/``).
REPOSITORY_EXEMPT: tuple[str, ...] = ("filestore/locks/",)
FILESTORE_DIR = "filestore"  # drd.storage.factory.STORE_DIR
PGBACKREST_DIR = "pgbackrest"  # drd.pgbackrest.stanza.REPO_SUBDIR
DEFAULT_MIN_REMAINING = timedelta(days=1)
DEFAULT_WORKERS = 8


@dataclass(frozen=True)
class LockPolicy:
    """Object Lock for one tier (or the strictest of a repository's tiers)."""

    mode: LockMode
    days: int

    @classmethod
    def from_immutability(cls, immutability: Immutability) -> LockPolicy:
        return cls(immutability.mode, immutability.days)

    @classmethod
    def for_tier(cls, tier: Tier) -> LockPolicy | None:
        return None if tier.immutability is None else cls.from_immutability(tier.immutability)

    @property
    def period(self) -> timedelta:
        return timedelta(days=self.days)

    @property
    def renew_within(self) -> timedelta:
        """Extend a lock that would expire sooner than this (see the module docstring)."""
        return min(self.period, max(timedelta(days=2), timedelta(days=self.days // 5)))

    def retain_until(self, now: datetime) -> datetime:
        """now + days, rounded up to the second (S3 keeps whole seconds)."""
        until = now.astimezone(UTC) + self.period
        if until.microsecond:
            until = until.replace(microsecond=0) + timedelta(seconds=1)
        return until

    def stricter(self, other: LockPolicy | None) -> LockPolicy:
        """Compliance if either is; the longer period."""
        if other is None:
            return self
        mode: LockMode = "compliance" if "compliance" in (self.mode, other.mode) else "governance"
        return LockPolicy(mode, max(self.days, other.days))

    def describe(self) -> str:
        return f"{self.mode}, {self.days} days"


def _mode_weaker(mode: LockMode | None, policy: LockPolicy) -> bool:
    return policy.mode == "compliance" and mode != "compliance"


# -- which repositories need what ------------------------------------------------------


def repository_tiers(estate: Estate, repository_name: str) -> list[Tier]:
    """Tiers of the workloads stored in a repository, by name, each once."""
    names = sorted({w.tier for w in estate.config.workloads if w.repository == repository_name})
    return [estate.tiers[name] for name in names if name in estate.tiers]


def repository_policy(estate: Estate, repository_name: str) -> LockPolicy | None:
    """The strictest lock policy among the repository's tiers; None if none asks for one."""
    policy: LockPolicy | None = None
    for tier in repository_tiers(estate, repository_name):
        tier_policy = LockPolicy.for_tier(tier)
        if tier_policy is not None:
            policy = tier_policy.stricter(policy)
    return policy


def describe_repository(estate: Estate, repository_name: str) -> str:
    """``repository X: tier T`` (the tiers asking for immutability), for messages."""
    tiers = [t.name for t in repository_tiers(estate, repository_name) if t.immutability]
    label = "tier" if len(tiers) == 1 else "tiers"
    return f"repository {repository_name}: {label} {', '.join(tiers) or '-'}"


def open_repository_root(repo: FilesystemRepository | S3Repository) -> ObjectStore:
    """A store on the repository's root: ``filestore/`` and ``pgbackrest/`` below it."""
    from drd.storage.factory import open_store  # noqa: PLC0415 - keeps boto3 lazy
    from drd.storage.filesystem import FilesystemStore  # noqa: PLC0415

    if isinstance(repo, FilesystemRepository):
        return FilesystemStore(repo.path)
    from drd.storage.s3 import S3Store  # noqa: PLC0415

    store = open_store(repo)
    assert isinstance(store, S3Store)  # noqa: S101 - open_store gives S3Store for S3
    return store.sibling(repo.prefix)


def lock_store(estate: Estate, repository_name: str, store: ObjectStore) -> ObjectStore:
    """``store`` wrapped in a ``LockingStore`` when the repository is S3 on an immutable
    tier; ``store`` itself otherwise (filesystem repositories cannot lock)."""
    repo = estate.config.repository(repository_name)
    policy = repository_policy(estate, repository_name)
    if policy is None or isinstance(repo, FilesystemRepository):
        return store
    return LockingStore(store, policy)


# -- startup check -----------------------------------------------------------------------


def require_object_lock(store: ObjectStore, policy: LockPolicy, where: str) -> BucketLockStatus:
    """The bucket's lock status; ``ConfigError`` if it cannot hold ``policy``'s locks.

    ``where`` names the repository and tier(s) (``describe_repository``).
    """
    try:
        status = store.bucket_lock_status()
    except ObjectLockUnsupportedError as exc:
        raise ConfigError(
            f"{where} requires immutability ({policy.describe()}) but {store.location} "
            "cannot lock objects",
            hint="use an S3 repository whose bucket has Object Lock enabled",
        ) from exc
    if not status.object_lock or not status.versioning:
        missing = "Object Lock" if not status.object_lock else "versioning"
        raise ConfigError(
            f"{where} requires immutability ({policy.describe()}) but bucket {status.bucket} "
            f"has no {missing}; create the bucket with Object Lock enabled",
            hint="aws s3api create-bucket --object-lock-enabled-for-bucket (an existing "
            "bucket: enable versioning, then put-object-lock-configuration)",
        )
    if status.default_mode is not None:
        raise ConfigError(
            f"{where}: bucket {status.bucket} has a default retention ({status.default_mode}, "
            f"{status.default_days} days): it would lock drd's repository locks (locks/), "
            "which must stay deletable",
            hint="remove the bucket's default retention: drd locks every other object itself",
        )
    return status


def require_estate_object_lock(
    estate: Estate,
    open_root: Callable[[FilesystemRepository | S3Repository], ObjectStore] = (
        open_repository_root
    ),
) -> list[str]:
    """Check every S3 repository serving an immutable tier; one ``ConfigError`` listing
    all that cannot lock. Returns warnings for filesystem repositories on such tiers.
    Those that pass are remembered: ``ensure_object_lock`` does not ask them again."""
    problems: list[str] = []
    warnings: list[str] = []
    for repo in estate.config.repositories:
        policy = repository_policy(estate, repo.name)
        if policy is None:
            continue
        try:
            warnings += _check_repository(estate, repo, policy, open_root)
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError(
            f"{len(problems)} repository(ies) cannot lock objects: " + "; ".join(problems),
            problems,
        )
    return warnings


#: Repositories that passed the check in this process, with their warnings; keyed by
#: where they are and the policy checked (``_verified_key``).
_VERIFIED: dict[tuple[str, ...], list[str]] = {}
_VERIFIED_LOCK = threading.Lock()


def _verified_key(repo: FilesystemRepository | S3Repository, policy: LockPolicy) -> tuple[str, ...]:
    if isinstance(repo, FilesystemRepository):
        where = f"file://{repo.path}"
    else:
        where = f"{repo.endpoint or 'aws'}|{repo.bucket}|{repo.prefix}"
    return (repo.name, where, policy.mode, str(policy.days))


def _check_repository(
    estate: Estate,
    repo: FilesystemRepository | S3Repository,
    policy: LockPolicy,
    open_root: Callable[[FilesystemRepository | S3Repository], ObjectStore],
) -> list[str]:
    """``require_object_lock`` for one repository (a warning for a filesystem one);
    remembered for ``ensure_object_lock`` when it passes."""
    where = describe_repository(estate, repo.name)
    warnings: list[str] = []
    if isinstance(repo, FilesystemRepository):
        warnings.append(
            f"{where} asks for immutability but filesystem repositories cannot lock "
            "objects: use an S3 repository with Object Lock for immutable copies"
        )
    else:
        store = open_root(repo)
        try:
            require_object_lock(store, policy, where)
        finally:
            store.close()
    with _VERIFIED_LOCK:
        _VERIFIED[_verified_key(repo, policy)] = warnings
    return warnings


def ensure_object_lock(
    estate: Estate,
    repository_name: str,
    open_root: Callable[[FilesystemRepository | S3Repository], ObjectStore] = (
        open_repository_root
    ),
) -> list[str]:
    """Before writing to a repository: ``ConfigError`` if it serves an immutable tier and
    its bucket cannot lock (``require_object_lock``); the warnings otherwise, logged.

    Once a repository passed (here or in ``require_estate_object_lock``) the answer is
    remembered for the process: one bucket call, not one per backup. A failure is not
    remembered, so a fixed bucket is picked up by the next attempt.
    """
    repo = estate.config.repository(repository_name)
    policy = repository_policy(estate, repository_name)
    if policy is None:
        return []
    key = _verified_key(repo, policy)
    with _VERIFIED_LOCK:
        known = _VERIFIED.get(key)
    if known is not None:
        return list(known)
    warnings = _check_repository(estate, repo, policy, open_root)
    for warning in warnings:
        log.warning("immutability_unavailable", repository=repository_name, detail=warning)
    return list(warnings)


def forget_verified() -> None:
    """Forget which repositories passed ``ensure_object_lock`` (tests; a config reload)."""
    with _VERIFIED_LOCK:
        _VERIFIED.clear()


# -- writing locked objects --------------------------------------------------------------


def _exempt(key: str, exempt: Sequence[str]) -> bool:
    return any(key.startswith(prefix) for prefix in exempt)


class LockingStore(ObjectStore):
    """Every object written through this store gets the policy's Object Lock.

    ``put`` sends the retention with the object (one request). ``put_if_absent`` (the
    repository config and key wrappers) creates the object, then sets its retention:
    a crash in between leaves one unlocked object, which ``check_immutability`` shows
    and ``lock_prefix`` fixes. Keys under ``exempt`` are written unlocked. A caller's
    own later retain-until date is kept. Everything else is delegated; ``close``
    closes the wrapped store.
    """

    def __init__(
        self,
        inner: ObjectStore,
        policy: LockPolicy,
        *,
        exempt: Sequence[str] = EXEMPT,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.inner = inner
        self.policy = policy
        self.exempt = tuple(exempt)
        self.location = inner.location
        self._clock = clock or (lambda: datetime.now(UTC))

    def put(
        self,
        key: str,
        data: bytes,
        *,
        retain_until: datetime | None = None,
        lock_mode: LockMode | None = None,
    ) -> None:
        if not _exempt(key, self.exempt):
            until = self.policy.retain_until(self._clock())
            if retain_until is None or retain_until < until:
                retain_until = until
            if lock_mode != "compliance":
                lock_mode = self.policy.mode
        self.inner.put(key, data, retain_until=retain_until, lock_mode=lock_mode)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        created = self.inner.put_if_absent(key, data)
        if created and not _exempt(key, self.exempt):
            self.inner.set_retention(key, self.policy.retain_until(self._clock()), self.policy.mode)
        return created

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

    def delete_many(self, keys: Sequence[str]) -> None:
        self.inner.delete_many(keys)

    def bucket_lock_status(self) -> BucketLockStatus:
        return self.inner.bucket_lock_status()

    def set_retention(self, key: str, retain_until: datetime, mode: LockMode) -> bool:
        return self.inner.set_retention(key, retain_until, mode)

    def get_retention(self, key: str) -> ObjectRetention | None:
        return self.inner.get_retention(key)

    def set_lifecycle(self, transitions: Sequence[LifecycleTransition]) -> None:
        self.inner.set_lifecycle(transitions)

    def get_lifecycle(self) -> builtins.list[LifecycleTransition]:
        return self.inner.get_lifecycle()

    def close(self) -> None:
        self.inner.close()


# -- extending locks -----------------------------------------------------------------------


@dataclass(frozen=True)
class LockChange:
    """One retention change: ``before`` is None for an object that had no lock."""

    key: str
    before: datetime | None
    after: datetime
    mode: LockMode

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "before": self.before, "after": self.after, "mode": self.mode}


def needs_renewal(info: ObjectInfo, policy: LockPolicy, now: datetime) -> bool:
    """No lock, or one that expires within the policy's ``renew_within``."""
    if info.retain_until is None:
        return not info.legal_hold
    return info.retain_until < now + policy.renew_within


def _parallel(fn: Callable[[str], Any], keys: Sequence[str], max_workers: int) -> list[Any]:
    if max_workers <= 1 or len(keys) <= 1:
        return [fn(key) for key in keys]
    with ThreadPoolExecutor(max_workers=min(max_workers, len(keys))) as pool:
        return list(pool.map(fn, keys))


def extend_locks(
    store: ObjectStore,
    keys: Iterable[str],
    policy: LockPolicy,
    now: datetime,
    *,
    max_workers: int = DEFAULT_WORKERS,
) -> list[LockChange]:
    """Extend to now + days the locks of ``keys`` that would expire within
    ``policy.renew_within`` (or have none); the changes made, by key.

    Missing keys are skipped (verify reports damage). An active lock keeps its mode.
    """
    until = policy.retain_until(now)

    def renew(key: str) -> LockChange | None:
        info = store.head(key)
        if info is None:
            log.warning("lock_extend_missing", location=store.location, key=key)
            return None
        if not needs_renewal(info, policy, now):
            return None
        active = info.retain_until is not None and info.retain_until > now
        mode = info.lock_mode if active and info.lock_mode is not None else policy.mode
        if not store.set_retention(key, until, policy.mode):
            return None
        return LockChange(key, info.retain_until, until, mode)

    changes = [c for c in _parallel(renew, sorted(set(keys)), max_workers) if c is not None]
    if changes:
        log.info(
            "locks_extended",
            location=store.location,
            count=len(changes),
            until=format_lock_date(until),
        )
    return changes


def lock_prefix(
    store: ObjectStore,
    prefix: str,
    policy: LockPolicy,
    now: datetime,
    *,
    modified_since: datetime | None = None,
    exempt: Sequence[str] = EXEMPT,
    max_workers: int = DEFAULT_WORKERS,
) -> list[LockChange]:
    """Lock every object under ``prefix`` lacking a long-enough lock (``extend_locks``).

    ``modified_since`` limits it to objects written since then (listing shows the
    time), so locking newly archived WAL does not HEAD the whole archive every time.
    """
    keys = [
        info.key
        for info in store.list(prefix)
        if not _exempt(info.key, exempt)
        and (
            modified_since is None
            or info.last_modified is None
            or info.last_modified >= modified_since
        )
    ]
    return extend_locks(store, keys, policy, now, max_workers=max_workers)


def lock_pgbackrest(
    root: ObjectStore,
    stanza: str,
    policy: LockPolicy,
    now: datetime,
    *,
    modified_since: datetime | None = None,
    max_workers: int = DEFAULT_WORKERS,
) -> list[LockChange]:
    """Lock a stanza's pgBackRest files (backups, backup.info, archived WAL).

    ``root`` is the repository's root store (``open_repository_root``). Call after each
    backup with ``modified_since`` = the start of the previous call (or None to sweep).
    """
    changes: list[LockChange] = []
    for kind in ("backup", "archive"):
        changes += lock_prefix(
            root,
            f"{PGBACKREST_DIR}/{kind}/{stanza}/",
            policy,
            now,
            modified_since=modified_since,
            exempt=(),
            max_workers=max_workers,
        )
    return changes


# -- what a plan may delete ------------------------------------------------------------------


def lock_note(info: ObjectInfo, now: datetime) -> str | None:
    """``locked until DATE (mode)`` while ``info``'s lock is active, else None."""
    if info.legal_hold:
        return "locked (legal hold)"
    if info.retain_until is not None and info.retain_until > now:
        return f"locked until {format_lock_date(info.retain_until)} ({info.lock_mode})"
    return None


def split_locked(
    store: ObjectStore,
    keys: Iterable[str],
    now: datetime,
    *,
    max_workers: int = DEFAULT_WORKERS,
) -> tuple[list[str], list[ObjectInfo]]:
    """(deletable keys, locked objects) of ``keys``, both sorted by key.

    A plan deletes the first list and shows ``lock_note`` for the second. Missing keys
    count as deletable (deleting them is a no-op). Older hidden versions of a key are
    not looked at: ``delete`` may still refuse one (``ObjectLockedError``).
    """
    ordered = sorted(set(keys))
    infos = _parallel(store.head, ordered, max_workers)
    deletable: list[str] = []
    locked: list[ObjectInfo] = []
    for key, info in zip(ordered, infos, strict=True):
        if info is not None and info.locked(now):
            locked.append(info)
        else:
            deletable.append(key)
    return deletable, locked


# -- audit ------------------------------------------------------------------------------------

Problem = Literal["missing", "expired", "short", "weak"]


@dataclass(frozen=True)
class Finding:
    key: str
    problem: Problem
    mode: LockMode | None
    retain_until: datetime | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "problem": self.problem,
            "mode": self.mode,
            "retain_until": self.retain_until,
            "detail": self.detail,
        }


@dataclass
class ImmutabilityReport:
    location: str
    policy: LockPolicy
    bucket: BucketLockStatus | None = None
    bucket_problems: list[str] = field(default_factory=list)
    checked: int = 0
    tolerated: int = 0  # unreferenced objects with a problem (``referenced`` given)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.bucket_problems and not self.findings

    def as_dict(self) -> dict[str, Any]:
        bucket = None
        if self.bucket is not None:
            bucket = {
                "name": self.bucket.bucket,
                "versioning": self.bucket.versioning,
                "object_lock": self.bucket.object_lock,
                "default_mode": self.bucket.default_mode,
                "default_days": self.bucket.default_days,
            }
        return {
            "location": self.location,
            "ok": self.ok,
            "policy": {"mode": self.policy.mode, "days": self.policy.days},
            "bucket": bucket,
            "bucket_problems": self.bucket_problems,
            "checked": self.checked,
            "tolerated": self.tolerated,
            "findings": [f.as_dict() for f in self.findings],
        }


def judge(
    info: ObjectInfo, policy: LockPolicy, now: datetime, min_remaining: timedelta
) -> Finding | None:
    """What is wrong with one object's lock, or None."""
    until, mode = info.retain_until, info.lock_mode
    if info.legal_hold and (until is None or until <= now):
        return None  # held without a date: nothing can delete it
    if until is None:
        return Finding(info.key, "missing", None, None, "no Object Lock")
    if until <= now:
        return Finding(info.key, "expired", mode, until, f"lock expired {format_lock_date(until)}")
    if until < now + min_remaining:
        hours = math.floor((until - now).total_seconds() / 3600)
        return Finding(
            info.key,
            "short",
            mode,
            until,
            f"locked only until {format_lock_date(until)} ({hours}h left)",
        )
    if _mode_weaker(mode, policy):
        return Finding(
            info.key, "weak", mode, until, f"{mode} lock, the tier requires {policy.mode}"
        )
    return None


def check_immutability(
    store: ObjectStore,
    policy: LockPolicy,
    now: datetime,
    *,
    prefix: str = "",
    exempt: Sequence[str] = EXEMPT,
    min_remaining: timedelta = DEFAULT_MIN_REMAINING,
    referenced: Iterable[str] | None = None,
    max_workers: int = DEFAULT_WORKERS,
) -> ImmutabilityReport:
    """Bucket versioning and Object Lock, then every object's lock (one HEAD each).

    Objects are not looked at when the bucket cannot lock at all (every one would be
    reported). With ``referenced`` only those keys are judged; the others' problems
    are counted as ``tolerated``.
    """
    report = ImmutabilityReport(store.location, policy)
    try:
        report.bucket = store.bucket_lock_status()
    except ObjectLockUnsupportedError as exc:
        report.bucket_problems.append(f"{store.location} cannot lock objects: {exc.message}")
        return report
    if not report.bucket.versioning:
        report.bucket_problems.append(f"bucket {report.bucket.bucket}: versioning is not enabled")
    if not report.bucket.object_lock:
        report.bucket_problems.append(f"bucket {report.bucket.bucket}: Object Lock is not enabled")
    if report.bucket.default_mode is not None:
        report.bucket_problems.append(
            f"bucket {report.bucket.bucket}: default retention ({report.bucket.default_mode}, "
            f"{report.bucket.default_days} days) also locks repository locks (locks/)"
        )
    if not report.bucket.can_lock:
        return report
    wanted = None if referenced is None else set(referenced)
    keys = [i.key for i in store.list(prefix) if not _exempt(i.key, exempt)]
    infos = _parallel(store.head, keys, max_workers)
    for info in infos:
        if info is None:
            continue  # deleted while we looked
        report.checked += 1
        finding = judge(info, policy, now, min_remaining)
        if finding is None:
            continue
        if wanted is not None and info.key not in wanted:
            report.tolerated += 1
        else:
            report.findings.append(finding)
    return report
