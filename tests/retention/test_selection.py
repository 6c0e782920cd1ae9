"""Retention selection: restic's forget rules on restore points, by example and by property."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drd.config.tier import Retention
from drd.config.types import format_duration
from drd.retention.selection import Decision, RestorePoint, select

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)
ZONES = (
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "Pacific/Chatham",  # +12:45 / +13:45
    "America/Sao_Paulo",
)
COUNT_FIELDS = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly")
CALENDAR = ("hourly", "daily", "weekly", "monthly", "yearly")


def daily_series(first: datetime, days: int) -> list[RestorePoint]:
    return [RestorePoint(id=f"b{n:03d}", time=first + timedelta(days=n)) for n in range(days)]


def utc(t: datetime) -> datetime:
    """Absolute time: aware datetimes sharing a zone compare and subtract as wall clocks."""
    return t.astimezone(UTC)


def kept(decisions: Sequence[Decision]) -> dict[str, tuple[str, ...]]:
    return {d.point.id: d.reasons for d in decisions if d.keep}


# -- examples -------------------------------------------------------------------------


def test_sixty_daily_backups_keep_seven_days_and_four_weeks() -> None:
    """60 daily points, 7 daily + 4 weekly: the last 7 days and 3 older Sundays, with reasons."""
    points = daily_series(datetime(2026, 10, 1, 3, tzinfo=UTC), 60)  # Oct 1 .. Nov 29 (Sun)
    by_day = {p.time.date().isoformat(): p.id for p in points}
    decisions = select(points, Retention(keep_daily=7, keep_weekly=4))

    assert [d.point.id for d in decisions] == [p.id for p in reversed(points)]
    expected = {
        "2026-11-29": ("newest", "daily 2026-11-29", "weekly 2026-W48"),
        "2026-11-28": ("daily 2026-11-28",),
        "2026-11-27": ("daily 2026-11-27",),
        "2026-11-26": ("daily 2026-11-26",),
        "2026-11-25": ("daily 2026-11-25",),
        "2026-11-24": ("daily 2026-11-24",),
        "2026-11-23": ("daily 2026-11-23",),
        "2026-11-22": ("weekly 2026-W47",),
        "2026-11-15": ("weekly 2026-W46",),
        "2026-11-08": ("weekly 2026-W45",),
    }
    assert kept(decisions) == {by_day[day]: reasons for day, reasons in expected.items()}
    assert all(d.reasons == () for d in decisions if not d.keep)


def test_only_periods_with_points_count() -> None:
    """A gap of empty days does not use up keep_daily; months and years label their period."""
    times = ["2025-12-31T22:00", "2026-01-10T09:00", "2026-01-10T08:00", "2026-03-01T00:00"]
    points = [
        RestorePoint(id=f"p{n}", time=datetime.fromisoformat(t).replace(tzinfo=UTC))
        for n, t in enumerate(times)
    ]
    decisions = select(points, Retention(keep_daily=3, keep_monthly=2, keep_yearly=5))
    assert kept(decisions) == {
        "p3": ("newest", "daily 2026-03-01", "monthly 2026-03", "yearly 2026"),
        "p1": ("daily 2026-01-10", "monthly 2026-01"),
        "p0": ("daily 2025-12-31", "yearly 2025"),
    }


def test_timezone_decides_which_day_and_week_a_point_falls_in() -> None:
    """23:30 UTC Sunday and 01:00 UTC Monday share a Berlin day, and an ISO week there."""
    points = [
        RestorePoint(id="sun", time=datetime(2026, 11, 29, 23, 30, tzinfo=UTC)),
        RestorePoint(id="mon", time=datetime(2026, 11, 30, 1, 0, tzinfo=UTC)),
    ]
    in_utc = select(points, Retention(keep_daily=2, keep_weekly=2))
    assert kept(in_utc) == {
        "mon": ("newest", "daily 2026-11-30", "weekly 2026-W49"),
        "sun": ("daily 2026-11-29", "weekly 2026-W48"),
    }
    in_berlin = select(points, Retention(keep_daily=2, keep_weekly=2, timezone="Europe/Berlin"))
    assert kept(in_berlin) == {"mon": ("newest", "daily 2026-11-30", "weekly 2026-W49")}
    in_new_york = select(
        points, Retention(keep_daily=2, keep_hourly=1, timezone="America/New_York")
    )
    assert kept(in_new_york) == {
        "mon": ("newest", "hourly 2026-11-29 20h", "daily 2026-11-29"),
    }


def test_iso_week_belongs_to_the_iso_year() -> None:
    """1 January 2027 (a Friday) is in week 53 of 2026."""
    points = [
        RestorePoint(id="new-year", time=datetime(2027, 1, 1, 12, tzinfo=UTC)),
        RestorePoint(id="monday", time=datetime(2026, 12, 28, 12, tzinfo=UTC)),
        RestorePoint(id="sunday", time=datetime(2026, 12, 27, 12, tzinfo=UTC)),
    ]
    assert kept(select(points, Retention(keep_weekly=5))) == {
        "new-year": ("newest", "weekly 2026-W53"),
        "sunday": ("weekly 2026-W52",),
    }


def test_keep_last_numbers_the_newest_points() -> None:
    """keep_last 3 keeps the three newest, numbered, whatever their periods."""
    points = daily_series(datetime(2026, 1, 1, tzinfo=UTC), 5)
    assert kept(select(points, Retention(keep_last=3))) == {
        "b004": ("newest", "last 1/3"),
        "b003": ("last 2/3",),
        "b002": ("last 3/3",),
    }


def test_keep_within_counts_back_from_the_newest_point_inclusive() -> None:
    """keep_within is measured from the newest point, not now, and includes the boundary."""
    newest = datetime(2020, 6, 1, 12, tzinfo=UTC)  # long ago: "now" would keep nothing
    points = [
        RestorePoint(id="newest", time=newest),
        RestorePoint(id="edge", time=newest - timedelta(days=7)),
        RestorePoint(id="outside", time=newest - timedelta(days=7, seconds=1)),
    ]
    assert kept(select(points, Retention(keep_within=timedelta(days=7)))) == {
        "newest": ("newest", "within 1w"),
        "edge": ("within 1w",),
    }


def test_keep_within_is_absolute_time_across_a_dst_change() -> None:
    """Seven wall-clock days across the end of DST are 7d1h: that point is outside 7d."""
    new_york = ZoneInfo("America/New_York")
    points = [
        RestorePoint(id="after", time=datetime(2026, 11, 2, 12, tzinfo=new_york)),
        RestorePoint(id="before", time=datetime(2026, 10, 26, 12, tzinfo=new_york)),
    ]
    assert kept(select(points, Retention(keep_within=timedelta(days=7)))) == {
        "after": ("newest", "within 1w"),
    }
    assert kept(select(points, Retention(keep_within=timedelta(days=7, hours=1)))) == {
        "after": ("newest", "within 1w1h"),
        "before": ("within 1w1h",),
    }


def test_equal_times_are_ordered_by_id() -> None:
    """Points taken at the same instant come out in id order; the first one is the newest."""
    t = datetime(2026, 5, 5, tzinfo=UTC)
    points = [RestorePoint(id=i, time=t) for i in ("c", "a", "b")]
    decisions = select(points, Retention(keep_daily=1))
    assert [(d.point.id, d.reasons) for d in decisions] == [
        ("a", ("newest", "daily 2026-05-05")),
        ("b", ()),
        ("c", ()),
    ]


def test_points_are_ordered_by_absolute_time_in_a_repeated_hour() -> None:
    """01:10 EST is after 01:30 EDT (same wall-clock hour twice): it is the newest."""
    new_york = ZoneInfo("America/New_York")
    points = [
        RestorePoint(id="edt", time=datetime(2026, 11, 1, 1, 30, tzinfo=new_york)),
        RestorePoint(id="est", time=datetime(2026, 11, 1, 1, 10, fold=1, tzinfo=new_york)),
    ]
    policy = Retention(keep_hourly=2, timezone="America/New_York")
    assert [(d.point.id, d.reasons) for d in select(points, policy)] == [
        ("est", ("newest", "hourly 2026-11-01 01h")),
        ("edt", ()),
    ]


def test_no_points_no_decisions() -> None:
    """An empty list is not an error."""
    assert select([], Retention(keep_last=1)) == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "empty retention policy"),
        ({"keep_daily": 0}, "keep_daily must be at least 1"),
        ({"keep_last": True}, "keep_last must be a whole number"),
        ({"keep_within": timedelta(seconds=-1)}, "keep_within must not be negative"),
        ({"keep_last": 1, "timezone": "Mars/Olympus"}, "unknown time zone"),
    ],
)
def test_unvalidated_policies_are_refused(fields: dict[str, Any], message: str) -> None:
    """A Retention built without validation is checked again: never 'keep only the newest'."""
    points = [RestorePoint(id="a", time=datetime(2026, 1, 1, tzinfo=UTC))]
    with pytest.raises(ValueError, match=message):
        select(points, Retention.model_construct(**fields))


def test_only_a_retention_is_a_policy() -> None:
    """A mapping is not accepted in place of a Retention, even a valid-looking one."""
    with pytest.raises(TypeError, match="must be a Retention"):
        select([], {"keep_last": 1})  # type: ignore[arg-type]


def test_bad_points_are_refused() -> None:
    """Naive times and duplicate ids are caller bugs, reported with the id."""
    aware = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="'x' has a naive time"):
        select([RestorePoint(id="x", time=aware.replace(tzinfo=None))], Retention(keep_last=1))
    with pytest.raises(ValueError, match="'a' appears more than once"):
        select([RestorePoint("a", aware), RestorePoint("a", aware)], Retention(keep_last=1))


# -- properties ----------------------------------------------------------------------

BASE = datetime(2024, 1, 1, tzinfo=UTC)


@st.composite
def restore_points(draw: st.DrawFn, min_size: int = 0) -> list[RestorePoint]:
    """Points spread over hours, weeks or years, so every rule sees shared periods."""
    span = draw(st.sampled_from([2 * 3600, 3 * 86400, 90 * 86400, 3 * 366 * 86400]))
    offsets = draw(st.lists(st.integers(0, span), min_size=min_size, max_size=30))
    zones = draw(st.lists(st.sampled_from(ZONES), min_size=len(offsets), max_size=len(offsets)))
    return [
        RestorePoint(id=f"p{n}", time=(BASE + timedelta(seconds=s)).astimezone(ZoneInfo(z)))
        for n, (s, z) in enumerate(zip(offsets, zones, strict=True))
    ]


@st.composite
def policies(draw: st.DrawFn) -> Retention:
    counts = st.none() | st.integers(1, 6)
    fields: dict[str, Any] = {name: draw(counts) for name in COUNT_FIELDS}
    fields["keep_yearly"] = draw(st.none() | st.integers(1, 3))
    fields["keep_within"] = draw(
        st.none() | st.integers(0, 40 * 86400).map(lambda s: timedelta(seconds=s))
    )
    if all(value is None for value in fields.values()):
        fields["keep_last"] = 1
    return Retention(**fields, timezone=draw(st.sampled_from(ZONES)))


def model(points: Sequence[RestorePoint], policy: Retention) -> dict[str, tuple[str, ...]]:
    """The rules restated set-wise: per rule, the newest point of each of its n newest periods."""
    zone = ZoneInfo(policy.timezone)
    ordered = sorted(sorted(points, key=lambda p: p.id), key=lambda p: utc(p.time), reverse=True)
    reasons: dict[str, list[str]] = {p.id: [] for p in ordered}
    if not ordered:
        return {}
    reasons[ordered[0].id].append("newest")
    n = policy.keep_last
    for rank, p in enumerate(ordered[: n or 0], start=1):
        reasons[p.id].append(f"last {rank}/{n}")
    formats = {"hourly": "%Y-%m-%d %Hh", "daily": "%Y-%m-%d", "monthly": "%Y-%m", "yearly": "%Y"}
    for name in CALENDAR:
        count = getattr(policy, f"keep_{name}")
        if count is None:
            continue
        newest_in: dict[str, RestorePoint] = {}
        for p in ordered:
            local = p.time.astimezone(zone)
            if name == "weekly":
                period = "{}-W{:02d}".format(*local.isocalendar()[:2])
            else:
                period = local.strftime(formats[name])
            newest_in.setdefault(period, p)
        for period, p in list(newest_in.items())[:count]:
            reasons[p.id].append(f"{name} {period}")
    if policy.keep_within is not None:
        label = f"within {format_duration(policy.keep_within)}"
        for p in ordered:
            if utc(ordered[0].time) - utc(p.time) <= policy.keep_within:
                reasons[p.id].append(label)
    return {pid: tuple(r) for pid, r in reasons.items() if r}


def kept_periods(decisions: Sequence[Decision]) -> dict[str, set[str]]:
    """Per calendar rule, the periods it kept (read back from the reasons)."""
    out: dict[str, set[str]] = {name: set() for name in CALENDAR}
    for d in decisions:
        for reason in d.reasons:
            rule, _, period = reason.partition(" ")
            if rule in out:
                out[rule].add(period)
    return out


@PROPERTY_SETTINGS
@given(restore_points(), policies())
def test_selection_matches_the_set_wise_model(
    points: list[RestorePoint], policy: Retention
) -> None:
    """Each rule keeps min(n, periods with a point) periods: the newest point of the newest ones."""
    decisions = select(points, policy)
    assert kept(decisions) == model(points, policy)
    assert [d.keep for d in decisions] == [bool(d.reasons) for d in decisions]


@PROPERTY_SETTINGS
@given(restore_points(min_size=1), policies())
def test_newest_is_always_kept(points: list[RestorePoint], policy: Retention) -> None:
    """Whatever the policy, the newest point survives, listed first, with reason 'newest'."""
    first = select(points, policy)[0]
    assert first.keep
    assert first.reasons[0] == "newest"
    assert utc(first.point.time) == max(utc(p.time) for p in points)


@PROPERTY_SETTINGS
@given(restore_points(), policies(), st.randoms(use_true_random=False))
def test_input_order_does_not_matter(
    points: list[RestorePoint], policy: Retention, rnd: random.Random
) -> None:
    """Shuffled input gives the same decisions."""
    shuffled = list(points)
    rnd.shuffle(shuffled)
    assert select(shuffled, policy) == select(points, policy)


@PROPERTY_SETTINGS
@given(restore_points(), policies())
def test_selection_is_idempotent(points: list[RestorePoint], policy: Retention) -> None:
    """Applying the policy again to what it kept keeps all of it, for the same reasons."""
    first = kept(select(points, policy))
    survivors = [p for p in points if p.id in first]
    assert kept(select(survivors, policy)) == first


@PROPERTY_SETTINGS
@given(restore_points(), policies(), st.sampled_from((*COUNT_FIELDS, "keep_yearly")))
def test_a_larger_count_keeps_a_superset(
    points: list[RestorePoint], policy: Retention, field: str
) -> None:
    """Raising any count (or widening keep_within) never expires a point that was kept."""
    before = set(kept(select(points, policy)))
    more = policy.model_copy(update={field: (getattr(policy, field) or 0) + 1})
    assert before <= set(kept(select(points, more)))
    wider = policy.model_copy(
        update={"keep_within": (policy.keep_within or timedelta(0)) + timedelta(hours=1)}
    )
    assert before <= set(kept(select(points, wider)))


@PROPERTY_SETTINGS
@given(restore_points(min_size=1), policies(), st.integers(0, 40 * 86400))
def test_a_newer_point_costs_each_rule_at_most_its_oldest_period(
    points: list[RestorePoint], policy: Retention, later: int
) -> None:
    """A new newest point never lowers a rule's kept periods; it pushes out at most the oldest.

    Everything within keep_within of the new point stays kept.
    """
    newest = max(utc(p.time) for p in points)
    new = RestorePoint(id="new", time=newest + timedelta(seconds=later))
    before = kept_periods(select(points, policy))
    decisions = select([*points, new], policy)
    after = kept_periods(decisions)
    for rule in CALENDAR:
        assert len(after[rule]) >= len(before[rule])
        assert before[rule] - after[rule] <= {min(before[rule], default="")}
    if policy.keep_within is not None:
        floor = new.time - policy.keep_within
        assert all(d.keep for d in decisions if utc(d.point.time) >= floor)
