"""Crontab semantics for tier schedules (0 and 7 are Sunday, unlike APScheduler)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from drd.config import cron


def _next(expr: str, after: datetime) -> datetime:
    fire = cron.trigger(expr).get_next_fire_time(None, after)
    assert fire is not None
    return fire


@pytest.mark.parametrize("expr", ["0 3 * * 0", "0 3 * * 7", "0 3 * * sun", "0 3 * * SUN"])
def test_sunday_spellings_fire_on_sunday(expr: str) -> None:
    """'0 3 * * 0' (and 7, sun) fires on a Sunday, as crontab means it."""
    # 2026-11-25 is a Wednesday.
    fire = _next(expr, datetime(2026, 11, 25, 12, 0, tzinfo=UTC))
    assert fire.weekday() == 6  # Python: Monday=0 ... Sunday=6
    assert (fire.day, fire.hour, fire.minute) == (29, 3, 0)


def test_weekday_range_is_monday_to_friday() -> None:
    """'1-5' means Monday to Friday: from Friday noon the next run is Monday."""
    fire = _next("0 9 * * 1-5", datetime(2026, 11, 27, 12, 0, tzinfo=UTC))  # a Friday
    assert fire.weekday() == 0
    assert fire.day == 30


def test_range_ending_in_seven_includes_sunday() -> None:
    """'5-7' is Friday, Saturday and Sunday."""
    assert cron._expand_day_of_week("5-7") == "sun,fri,sat"


def test_step_and_list_forms() -> None:
    """Steps over '*' and lists translate day by day."""
    assert cron._expand_day_of_week("*/2") == "sun,tue,thu,sat"
    assert cron._expand_day_of_week("1,3,5") == "mon,wed,fri"
    assert cron._expand_day_of_week("mon-fri") == "mon,tue,wed,thu,fri"


def test_macros_expand() -> None:
    """@daily, @weekly and friends are accepted and normalized."""
    assert cron.normalize("@daily") == "0 0 * * *"
    assert _next("@weekly", datetime(2026, 11, 25, tzinfo=UTC)).weekday() == 6


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("0 3 * *", "expected 5 fields"),
        ("61 * * * *", "minute"),
        ("0 25 * * *", "hour"),
        ("0 3 * * 8", "out of range"),
        ("0 3 1 * mon", "not both"),
        ("0 3 * * 5-1", "backwards"),
        ("0 3 * * funday", "not a number"),
    ],
)
def test_invalid_expressions_are_refused(expr: str, reason: str) -> None:
    """Bad crontab expressions raise CronSyntaxError saying why."""
    with pytest.raises(cron.CronSyntaxError, match=reason):
        cron.normalize(expr)


def test_whitespace_is_normalized() -> None:
    """Extra spaces do not change the meaning and are folded."""
    assert cron.normalize("  0   3 * *   sun ") == "0 3 * * sun"
