"""Recovery tiers: one file per tier sets objectives, schedules, retention and drills.

Tier files live in git (``tiers/*.yaml``); a workload names its tier and inherits
everything from it. Validation here catches inconsistent tiers (an archive timeout that
cannot meet the RPO, lifecycle steps out of order) before a daemon ever runs them.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from drd.config.types import CronExpr, Duration, StrictModel

# Storage classes S3 accepts in lifecycle transitions (STANDARD is where objects start).
StorageClass = Literal[
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "GLACIER",
    "DEEP_ARCHIVE",
]

TIER_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"


class Objectives(StrictModel):
    """What the business accepts: at most ``rpo`` of lost data and ``rto`` of downtime."""

    rpo: Duration = Field(description="recovery point objective: maximum tolerated data loss")
    rto: Duration = Field(description="recovery time objective: maximum tolerated time to restore")

    @field_validator("rpo", "rto")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be greater than zero")
        return value


class PostgresPolicy(StrictModel):
    """pgBackRest backup schedule per type, WAL archiving and heartbeat cadence."""

    full: CronExpr = Field(description="cron for full backups")
    diff: CronExpr | None = Field(default=None, description="cron for differential backups")
    incr: CronExpr | None = Field(default=None, description="cron for incremental backups")
    archive_timeout: Duration | None = Field(
        default=None,
        description="PostgreSQL archive_timeout; default and maximum: half the RPO (max 1h)",
    )
    heartbeat_interval: Duration = Field(
        default=timedelta(seconds=10), description="how often drd writes a heartbeat row"
    )


class FilestorePolicy(StrictModel):
    snapshot: CronExpr = Field(description="cron for filestore snapshots")


class Retention(StrictModel):
    """GFS keep rules, read like restic's ``forget`` (calendar periods, newest kept)."""

    keep_last: int | None = Field(default=None, ge=1)
    keep_hourly: int | None = Field(default=None, ge=1)
    keep_daily: int | None = Field(default=None, ge=1)
    keep_weekly: int | None = Field(default=None, ge=1)
    keep_monthly: int | None = Field(default=None, ge=1)
    keep_yearly: int | None = Field(default=None, ge=1)
    keep_within: Duration | None = Field(
        default=None, description="keep everything this close to the newest restore point"
    )
    timezone: str = Field(default="UTC", description="IANA zone for calendar periods")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Retention:
        rules = (
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
            self.keep_within,
        )
        if all(rule is None for rule in rules):
            raise ValueError(
                "an empty retention policy would keep only the newest point: set keep rules"
            )
        return self


class Immutability(StrictModel):
    """S3 Object Lock default retention for everything drd writes for this tier."""

    mode: Literal["governance", "compliance"]
    days: int = Field(ge=1, le=36500)


class LifecycleTransition(StrictModel):
    after: Duration = Field(description="age at which objects move (whole days)")
    storage_class: StorageClass

    @field_validator("after")
    @classmethod
    def _whole_days(cls, value: timedelta) -> timedelta:
        if value < timedelta(days=1) or value % timedelta(days=1):
            raise ValueError("S3 lifecycle transitions are in whole days (e.g. '30d')")
        return value


class Lifecycle(StrictModel):
    transitions: list[LifecycleTransition] = Field(default_factory=list)

    @field_validator("transitions")
    @classmethod
    def _increasing(cls, value: list[LifecycleTransition]) -> list[LifecycleTransition]:
        for before, after in itertools.pairwise(value):
            if after.after <= before.after:
                raise ValueError("transitions must be listed by strictly increasing 'after'")
        return value


class DrillPolicy(StrictModel):
    cron: CronExpr = Field(description="when restore drills run")
    sandbox: Literal["local", "kubernetes"] = "local"
    max_age: Duration = Field(description="a drill older than this turns the workload red")
    amcheck: bool = Field(default=False, description="run amcheck on indexes of the restored copy")
    timeout: Duration = Field(
        default=timedelta(hours=2), description="a drill is aborted after this"
    )


class EvidencePolicy(StrictModel):
    retain: Duration = Field(description="how long signed drill evidence is kept")


class Alerts(StrictModel):
    """Thresholds as fractions of the objective (0.8 = warn at 80% of the RPO)."""

    rpo_warning_ratio: float = Field(default=0.8, gt=0, le=1)
    backup_age_max: Duration | None = Field(
        default=None,
        description="alert when the newest backup is older (default: 2x full interval)",
    )


class Tier(StrictModel):
    name: str = Field(pattern=TIER_NAME_PATTERN)
    description: str = ""
    objectives: Objectives
    postgres: PostgresPolicy
    filestore: FilestorePolicy | None = None
    retention: Retention
    immutability: Immutability | None = None
    lifecycle: Lifecycle = Field(default_factory=Lifecycle)
    drills: DrillPolicy
    evidence: EvidencePolicy
    alerts: Alerts = Field(default_factory=Alerts)

    @model_validator(mode="after")
    def _consistent(self) -> Tier:
        limit = self.max_archive_timeout()
        timeout = self.postgres.archive_timeout
        if timeout is not None and timeout > limit:
            raise ValueError(
                f"postgres.archive_timeout {timeout} exceeds {limit}, half the RPO: "
                "WAL could sit unarchived longer than the RPO allows"
            )
        if self.postgres.heartbeat_interval >= self.objectives.rpo:
            raise ValueError("postgres.heartbeat_interval must be shorter than objectives.rpo")
        return self

    def max_archive_timeout(self) -> timedelta:
        """The rule: a WAL segment is switched out within half the RPO (and within 1h)."""
        return min(self.objectives.rpo / 2, timedelta(hours=1))

    def effective_archive_timeout(self) -> timedelta:
        return self.postgres.archive_timeout or self.max_archive_timeout()
