"""Crontab expressions with crontab's meaning, turned into APScheduler triggers.

People write tier files in crontab's language, where day-of-week 0 and 7 are Sunday.
APScheduler 3's ``CronTrigger.from_crontab`` treats 0 as *Monday* and rejects 7 (see
docs/configuration.md), so a literal hand-over would silently shift every weekly full
backup by a day. This module parses the five fields, rewrites day-of-week numbers to
names, and builds the trigger, so there is one meaning everywhere.

Also refused, on purpose: setting both day-of-month and day-of-week. Crontab fires
when *either* matches, APScheduler when *both* match; rather than pick one silently we
ask the author to use one.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, tzinfo

from apscheduler.triggers.cron import CronTrigger

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DOW_ITEM = re.compile(r"^(?P<range>\*|(?P<a>\w+)(-(?P<b>\w+))?)(/(?P<step>\d+))?$")


class CronSyntaxError(ValueError):
    """The expression is not a valid five-field crontab expression."""


def _day_number(token: str) -> int:
    token = token.lower()
    if token.isdigit():
        value = int(token)
        if not 0 <= value <= 7:
            raise CronSyntaxError(f"day-of-week {value} is out of range 0-7 (0 and 7 are Sunday)")
        return value % 7
    if token[:3] in DAY_NAMES and len(token) == 3:
        return DAY_NAMES.index(token)
    raise CronSyntaxError(f"day-of-week {token!r} is not a number 0-7 or a name like 'sun'")


def _expand_day_of_week(field: str) -> str:
    """Rewrite a crontab day-of-week field into APScheduler day names."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for item in field.split(","):
        match = _DOW_ITEM.match(item)
        if not match:
            raise CronSyntaxError(f"day-of-week item {item!r} is not understood")
        step = int(match["step"] or 1)
        if step == 0:
            raise CronSyntaxError("a step of 0 never advances")
        if match["range"] == "*":
            first, last = 0, 6
        else:
            first = _day_number(match["a"])
            # "5-7" (Fri-Sun) must keep 7 as the end of the range, not wrap to 0.
            last_raw = match["b"]
            last = first if last_raw is None else (7 if last_raw == "7" else _day_number(last_raw))
            if match["b"] is None and match["step"]:
                last = 6
            if last < first:
                raise CronSyntaxError(f"day-of-week range {item!r} runs backwards")
        days.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(DAY_NAMES[day] for day in sorted(days))


def normalize(expression: str) -> str:
    """Validate a crontab expression; return it with single spaces (macros expanded)."""
    text = " ".join(expression.split())
    text = MACROS.get(text.lower(), text)
    fields = text.split(" ")
    if len(fields) != 5:
        raise CronSyntaxError(
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}"
        )
    trigger(text)  # raises on any field APScheduler cannot read
    return text


def trigger(expression: str, timezone: tzinfo | str = "UTC") -> CronTrigger:
    """Build the APScheduler trigger for a crontab expression (crontab semantics)."""
    text = MACROS.get(expression.strip().lower(), expression)
    fields = text.split()
    if len(fields) != 5:
        raise CronSyntaxError(f"expected 5 fields, got {len(fields)}")
    minute, hour, day, month, dow = fields
    if day not in ("*", "?") and dow not in ("*", "?"):
        raise CronSyntaxError(
            "set day-of-month or day-of-week, not both (crontab ORs them, which is rarely meant)"
        )
    try:
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day.replace("?", "*"),
            month=month,
            day_of_week=_expand_day_of_week(dow.replace("?", "*")),
            timezone=timezone,
        )
    except ValueError as exc:
        raise CronSyntaxError(_which_field(fields, exc)) from exc


def _which_field(fields: list[str], exc: ValueError) -> str:
    """APScheduler's message does not name the field; find it by trying each alone."""
    names = ("minute", "hour", "day", "month")
    for name, value in zip(names, fields, strict=False):
        try:
            CronTrigger(**{name: value.replace("?", "*")}, timezone="UTC")
        except ValueError as field_exc:
            label = "day-of-month" if name == "day" else name
            return f"{label} field {value!r}: {field_exc}"
    return str(exc)


def max_interval(expression: str, start: datetime, *, fires: int = 400) -> timedelta:
    """The longest gap between consecutive runs over the next ``fires`` runs (or a year).

    Used to judge whether the newest backup is "recent enough" for its schedule: a
    weekly full is late after a week and some grace, an hourly incr after an hour.
    """
    cron_trigger = trigger(expression)
    previous = cron_trigger.get_next_fire_time(None, start)
    longest = timedelta(0)
    horizon = start + timedelta(days=400)
    for _ in range(fires):
        if previous is None or previous > horizon:
            break
        following = cron_trigger.get_next_fire_time(previous, previous + timedelta(seconds=1))
        if following is None:
            break
        longest = max(longest, following - previous)
        previous = following
    return longest
