"""Which restore points a retention policy keeps: restic's ``forget`` rules, pure.

``select`` takes restore points (a backup label or a snapshot id, and when it was
taken) and a tier's ``Retention`` and returns one ``Decision`` per point, newest
first, with every rule that keeps it. Nothing here reads a clock or a repository:
the same points and policy always give the same answer, so a plan can be shown
before anything is expired, and tested exhaustively.

The rules, as restic applies them (``internal/data/snapshot_policy.go``):

- the newest point is always kept ("newest"), so retention never empties a workload;
- ``keep_last`` n keeps the n newest points ("last 1/n" ... "last n/n");
- each calendar rule (``keep_hourly`` ... ``keep_yearly``) walks the points newest
  first and keeps a point when its period differs from the last period that rule
  kept, until it has kept n periods. Only periods that contain a point count, so
  "7 daily" means the newest point of each of the 7 newest days with a point, not
  of the last 7 calendar days: a week without backups does not eat the budget;
- ``keep_within`` keeps every point taken at most that long before the newest
  point (not before now: a workload whose backups stopped keeps its history).

Periods are calendar periods in the policy's time zone (hours, days, ISO weeks
Monday to Sunday, months, years), because "the daily backup" means a local day to
the people who restore it. A period is a contiguous stretch of time (local time
only repeats within an hour at a DST change), so comparing with the last kept
period is the same as asking whether the period was kept already.

restic 0.17 also keeps the oldest point when a rule still has counts left; drd
does not: a rule keeps at most one point per period, so what a rule promises is
exactly min(n, number of periods with a point).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from drd.config.tier import Retention
from drd.config.types import format_duration

__all__ = ["Decision", "RestorePoint", "select"]


@dataclass(frozen=True)
class RestorePoint:
    """Something retention can keep or expire: a backup label or a snapshot id."""

    id: str
    #: When the point was taken (a backup's stop time); timezone-aware.
    time: datetime


@dataclass(frozen=True)
class Decision:
    """Whether ``point`` is kept, and every rule that keeps it (empty when expired)."""

    point: RestorePoint
    keep: bool
    reasons: tuple[str, ...]


def _hour(t: datetime) -> str:
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}h"


def _day(t: datetime) -> str:
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}"


def _week(t: datetime) -> str:
    iso = t.isocalendar()  # the ISO year differs from t.year around New Year
    return f"{iso.year:04d}-W{iso.week:02d}"


def _month(t: datetime) -> str:
    return f"{t.year:04d}-{t.month:02d}"


def _year(t: datetime) -> str:
    return f"{t.year:04d}"


#: Calendar rules in the order their reasons are listed: (name, period of a local time).
CALENDAR_RULES: tuple[tuple[str, Callable[[datetime], str]], ...] = (
    ("hourly", _hour),
    ("daily", _day),
    ("weekly", _week),
    ("monthly", _month),
    ("yearly", _year),
)


def select(points: Sequence[RestorePoint], policy: Retention) -> list[Decision]:
    """One decision per point, newest first (equal times ordered by id).

    Raises ``ValueError`` for an empty or invalid policy, a naive ``time`` or a
    duplicate id, and ``TypeError`` if ``policy`` is not a ``Retention``.
    """
    zone = _checked_zone(policy)
    ordered = _newest_first(points)
    if not ordered:
        return []
    reasons: dict[str, list[str]] = {point.id: [] for point in ordered}
    reasons[ordered[0].id].append("newest")

    if policy.keep_last is not None:
        count = policy.keep_last
        for rank, point in enumerate(ordered[:count], start=1):
            reasons[point.id].append(f"last {rank}/{count}")

    for name, period_of in CALENDAR_RULES:
        count = getattr(policy, f"keep_{name}")
        if count is None:
            continue
        last: str | None = None
        kept = 0
        for point in ordered:
            if kept == count:
                break
            period = period_of(point.time.astimezone(zone))
            if period != last:
                reasons[point.id].append(f"{name} {period}")
                last = period
                kept += 1

    if policy.keep_within is not None:
        # In UTC: aware arithmetic in a zone is wall-clock arithmetic, off by an hour
        # across a DST change.
        floor = ordered[0].time.astimezone(UTC) - policy.keep_within
        label = f"within {format_duration(policy.keep_within)}"
        for point in ordered:
            if point.time < floor:
                break
            reasons[point.id].append(label)

    return [
        Decision(point=point, keep=bool(reasons[point.id]), reasons=tuple(reasons[point.id]))
        for point in ordered
    ]


def _checked_zone(policy: Retention) -> ZoneInfo:
    """The policy's zone, after checking what ``model_construct`` would let through."""
    if not isinstance(policy, Retention):
        raise TypeError(f"a retention policy must be a Retention (got {type(policy).__name__})")
    counts = {
        f"keep_{name}": getattr(policy, f"keep_{name}")
        for name in ("last", *(rule for rule, _ in CALENDAR_RULES))
    }
    if all(value is None for value in counts.values()) and policy.keep_within is None:
        raise ValueError(
            "an empty retention policy would keep only the newest point: set keep rules"
        )
    for field, value in counts.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{field} must be a whole number (got {value!r})")
        if value is not None and value < 1:
            raise ValueError(f"{field} must be at least 1 (got {value})")
    if policy.keep_within is not None and policy.keep_within.total_seconds() < 0:
        raise ValueError(f"keep_within must not be negative (got {policy.keep_within})")
    try:
        return ZoneInfo(policy.timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValueError(f"unknown time zone {policy.timezone!r} in retention policy") from exc


def _newest_first(points: Sequence[RestorePoint]) -> list[RestorePoint]:
    seen: set[str] = set()
    for point in points:
        if point.time.tzinfo is None or point.time.utcoffset() is None:
            raise ValueError(
                f"restore point {point.id!r} has a naive time {point.time.isoformat()}: "
                "times must be timezone-aware"
            )
        if point.id in seen:
            raise ValueError(f"restore point id {point.id!r} appears more than once")
        seen.add(point.id)
    # Stable sorts: by id, then newest first, so equal times keep id order.
    by_id = sorted(points, key=lambda point: point.id)
    return sorted(by_id, key=lambda point: point.time.astimezone(UTC), reverse=True)
