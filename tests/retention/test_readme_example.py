"""The README's retention example, computed: the numbers printed there are these."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from drd.config.tier import Retention
from drd.pgbackrest.info import BackupSet, StanzaInfo
from drd.retention.db import plan_db

POLICY = Retention(
    keep_last=8, keep_daily=14, keep_weekly=8, keep_monthly=6, keep_within=timedelta(days=1)
)


def _history() -> tuple[BackupSet, ...]:
    """Full every Sunday, incremental on the other days, 01:00, 1 Sep to 29 Nov 2026."""
    backups: list[BackupSet] = []
    day = datetime(2026, 9, 1, 1, tzinfo=UTC)
    while day <= datetime(2026, 11, 29, 1, tzinfo=UTC):
        full = day.weekday() == 6
        label = day.strftime("%Y%m%d-%H%M%S") + ("F" if full else "I")
        prior = None if full or not backups else backups[-1].label
        kind = "full" if full else "incr"
        backup = BackupSet(label, kind, day, day, *[None] * 4, 0, 0, 0, 0, prior, error=False)
        backups.append(backup)
        day += timedelta(days=1)
    return tuple(backups)


def test_readme_worked_example() -> None:
    history = _history()
    info = StanzaInfo("erp", 0, "ok", "none", history, None, None, None, None)
    plan = plan_db(info, POLICY, now=datetime(2026, 11, 29, 12, tzinfo=UTC))
    reasons = {d.label: d.reasons for d in plan.kept}
    by_rule = {label for label, why in reasons.items() if not why[0].startswith("needed by")}
    assert len(history) == 90
    assert len(by_rule) == 22
    assert reasons["20261129-010000F"] == (
        "newest", "last 1/8", "daily 2026-11-29", "weekly 2026-W48", "monthly 2026-11",
        "within 1d",
    )  # fmt: skip
    assert reasons["20261128-010000I"] == ("last 2/8", "daily 2026-11-28", "within 1d")
    assert reasons["20261122-010000F"][:3] == ("last 8/8", "daily 2026-11-22", "weekly 2026-W47")
    assert reasons["20261121-010000I"][0] == "daily 2026-11-21"
    assert reasons["20261116-010000I"][0] == "daily 2026-11-16"
    assert {f"202610{d}-010000F" for d in (11, 18, 25)} | {
        f"202611{d:02d}-010000F" for d in (1, 8, 15)
    } <= by_rule
    assert reasons["20261031-010000I"] == ("monthly 2026-10",)
    assert reasons["20260930-010000I"] == ("monthly 2026-09",)
    chains = {label for label in reasons if label not in by_rule}
    assert chains == {f"202610{d}-010000I" for d in range(26, 31)} | {
        "20260927-010000F", "20260928-010000I", "20260929-010000I",
    }  # fmt: skip
    assert reasons["20261030-010000I"] == ("needed by 20261031-010000I",)
    assert len(plan.expired) == 90 - 30
    assert plan.window_start == datetime(2026, 9, 27, 1, tzinfo=UTC)
