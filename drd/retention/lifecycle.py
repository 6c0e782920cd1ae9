"""Storage-class lifecycle: the bucket's transition rules, written from the tiers.

A tier's ``lifecycle.transitions`` (e.g. STANDARD_IA after 30d, GLACIER_IR after 180d)
become S3 lifecycle rules on the prefixes holding bulk backup data, per repository:

    <prefix>/filestore/data/                  snapshot packs
    <prefix>/pgbackrest/backup/<stanza>/      a workload's pgBackRest backups
    <prefix>/pgbackrest/archive/<stanza>/     a workload's archived WAL

Nothing else moves: the snapshot repository's ``config``, ``keys/``, ``index/``,
``snapshots/`` and ``locks/`` are small and read by every snapshot, restore and
check, and drill evidence (``filestore/drills/``) is small and read by auditors.

Conflicts. A stanza belongs to one workload, so its rules follow that workload's tier.
Snapshot packs are shared by every workload of a repository (deduplication): they
follow the *most demanding* of those workloads' tiers (shortest RTO, then shortest
RPO, then name), whose restores must not get slower or dearer than that tier planned.

Refused (``ConfigError``), because S3 would refuse them or restores would break:
    GLACIER and DEEP_ARCHIVE: not instant retrieval. A restore or drill reads packs
    and backup files directly and would fail until each object is restored (hours);
    use GLACIER_IR. STANDARD_IA and ONEZONE_IA before 30 days, and a transition less
    than 30 days after one to an IA class (S3's minimums).

Rules drd manages are identified by ID (``drd.storage.s3.LIFECYCLE_ID_PREFIX``); other
rules in the bucket are never changed. ``lifecycle_diff`` compares the wanted rules
with those the bucket has; ``apply_lifecycle`` writes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from drd.config import Estate
from drd.config.models import FilesystemRepository
from drd.config.tier import Tier
from drd.errors import ConfigError
from drd.retention.immutability import FILESTORE_DIR, PGBACKREST_DIR
from drd.storage.base import LifecycleTransition, ObjectStore

#: Prefixes (under a repository's root) whose drd rules this module owns.
MANAGED_PREFIXES = (f"{FILESTORE_DIR}/", f"{PGBACKREST_DIR}/")
PACKS_PREFIX = f"{FILESTORE_DIR}/data/"
NOT_INSTANT = frozenset({"GLACIER", "DEEP_ARCHIVE"})
IA_CLASSES = frozenset({"STANDARD_IA", "ONEZONE_IA"})
IA_MINIMUM_DAYS = 30


def _order(transition: LifecycleTransition) -> tuple[str, int, str]:
    return (transition.prefix, transition.days, transition.storage_class)


def tier_transitions(tier: Tier) -> list[tuple[int, str]]:
    """(days, storage class) of a tier, checked against what restores and S3 allow."""
    steps: list[tuple[int, str]] = []
    for index, step in enumerate(tier.lifecycle.transitions):
        days = int(step.after.total_seconds() // 86400)
        where = f"tier {tier.name}: lifecycle.transitions[{index}]"
        if step.storage_class in NOT_INSTANT:
            raise ConfigError(
                f"{where}: {step.storage_class} is not instant retrieval: restores and drills "
                "read objects directly and would fail until each one is restored",
                hint="use GLACIER_IR (instant retrieval) for backup data",
            )
        if step.storage_class in IA_CLASSES and days < IA_MINIMUM_DAYS:
            raise ConfigError(
                f"{where}: S3 moves objects to {step.storage_class} after "
                f"{IA_MINIMUM_DAYS} days at the earliest (got {days}d)"
            )
        if steps and steps[-1][1] in IA_CLASSES and days - steps[-1][0] < IA_MINIMUM_DAYS:
            raise ConfigError(
                f"{where}: S3 keeps objects in {steps[-1][1]} at least {IA_MINIMUM_DAYS} days "
                f"before the next transition ({steps[-1][0]}d, then {days}d)"
            )
        steps.append((days, step.storage_class))
    return steps


def _most_demanding(tiers: Iterable[Tier]) -> Tier | None:
    ordered = sorted(tiers, key=lambda t: (t.objectives.rto, t.objectives.rpo, t.name))
    return ordered[0] if ordered else None


def _rules(prefix: str, tier: Tier) -> list[LifecycleTransition]:
    return [LifecycleTransition(prefix, days, cls) for days, cls in tier_transitions(tier)]


def desired_lifecycle(estate: Estate, repository_name: str) -> list[LifecycleTransition]:
    """The transitions a repository should have, prefixes relative to its root."""
    repo = estate.config.repository(repository_name)
    if isinstance(repo, FilesystemRepository):
        raise ConfigError(
            f"repository {repository_name} is a filesystem repository: storage classes "
            "and lifecycle rules exist on S3 only"
        )
    workloads = [w for w in estate.config.workloads if w.repository == repository_name]
    wanted: list[LifecycleTransition] = []
    packs_tier = _most_demanding(estate.tiers[w.tier] for w in workloads if w.filestore)
    if packs_tier is not None:
        wanted += _rules(PACKS_PREFIX, packs_tier)
    by_stanza: dict[str, list[Tier]] = {}
    for workload in workloads:
        by_stanza.setdefault(workload.stanza(), []).append(estate.tiers[workload.tier])
    for stanza, tiers in by_stanza.items():
        tier = _most_demanding(tiers)
        assert tier is not None  # noqa: S101 - every stanza has a workload
        for kind in ("backup", "archive"):
            wanted += _rules(f"{PGBACKREST_DIR}/{kind}/{stanza}/", tier)
    return sorted(set(wanted), key=_order)


def managed(transition: LifecycleTransition) -> bool:
    """A rule under a prefix this module owns (vs. another drd user of the bucket)."""
    return transition.prefix.startswith(MANAGED_PREFIXES)


@dataclass
class LifecycleDiff:
    """What applying would change: rules to add, to remove, and those already right."""

    added: list[LifecycleTransition] = field(default_factory=list)
    removed: list[LifecycleTransition] = field(default_factory=list)
    unchanged: list[LifecycleTransition] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return not self.added and not self.removed

    def as_dict(self) -> dict[str, Any]:
        def rows(items: list[LifecycleTransition]) -> list[dict[str, Any]]:
            return [
                {"prefix": t.prefix, "days": t.days, "storage_class": t.storage_class}
                for t in items
            ]

        return {
            "in_sync": self.in_sync,
            "added": rows(self.added),
            "removed": rows(self.removed),
            "unchanged": rows(self.unchanged),
        }


def lifecycle_diff(
    desired: Sequence[LifecycleTransition], actual: Sequence[LifecycleTransition]
) -> LifecycleDiff:
    """Set difference, each list sorted by prefix, days, class."""
    want, have = set(desired), set(actual)
    return LifecycleDiff(
        added=sorted(want - have, key=_order),
        removed=sorted(have - want, key=_order),
        unchanged=sorted(want & have, key=_order),
    )


def read_lifecycle(store: ObjectStore) -> list[LifecycleTransition]:
    """The managed drd rules the bucket has under ``store``'s prefix."""
    return [t for t in store.get_lifecycle() if managed(t)]


def plan_lifecycle(store: ObjectStore, desired: Sequence[LifecycleTransition]) -> LifecycleDiff:
    """The diff of ``desired`` against the bucket (``store`` = the repository's root)."""
    return lifecycle_diff(desired, read_lifecycle(store))


def apply_lifecycle(store: ObjectStore, desired: Sequence[LifecycleTransition]) -> LifecycleDiff:
    """Make the bucket's managed rules ``desired``; other rules stay. The diff applied.

    drd rules outside the managed prefixes (another repository at a deeper prefix of
    the same bucket) are written back unchanged; non-drd rules are never touched.
    """
    current = store.get_lifecycle()
    diff = lifecycle_diff(desired, [t for t in current if managed(t)])
    if not diff.in_sync:
        kept = [t for t in current if not managed(t)]
        store.set_lifecycle([*sorted(set(desired), key=_order), *kept])
    return diff
