"""Every Prometheus metric drd exports, in one place, with explicit types.

The metrics live in drd's own ``REGISTRY`` (not prometheus_client's global default), so
the exposition holds exactly what is listed here, imports of other libraries cannot add
to it, and ``render()`` is what the daemon's ``/metrics`` endpoint serves.

    name                                                 type       labels
    drd_backup_last_success_timestamp_seconds            gauge      workload, type
    drd_backup_duration_seconds                          histogram  workload, type
    drd_backup_failures_total                            counter    workload, type
    drd_wal_archive_last_success_timestamp_seconds       gauge      workload
    drd_wal_archive_failed_total                         counter*   workload
    drd_wal_continuity_gaps                              gauge      workload
    drd_rpo_exposure_seconds                             gauge      workload
    drd_rpo_objective_seconds                            gauge      workload
    drd_heartbeat_last_success_timestamp_seconds         gauge      workload
    drd_snapshot_last_success_timestamp_seconds          gauge      workload
    drd_snapshot_duration_seconds                        histogram  workload
    drd_snapshot_bytes_total                             counter    workload, kind (new|dedup)
    drd_snapshot_files                                   gauge      workload
    drd_snapshot_failures_total                          counter    workload
    drd_drill_rpo_seconds / drd_drill_rto_seconds        gauge      workload
    drd_drill_last_success_timestamp_seconds             gauge      workload
    drd_drill_verdict                                    gauge      workload (1 pass, 0 fail)

``type`` is the pgBackRest backup type: full, diff or incr (anything else is refused,
which keeps label cardinality bounded).

\\* ``drd_wal_archive_failed_total`` mirrors PostgreSQL's ``pg_stat_archiver.failed_count``,
a cumulative counter kept by the server: drd does not count failures itself, it reports
the server's number. prometheus_client's ``Counter`` can only be incremented, and a
``Gauge`` named ``*_total`` would be exposed as ``# TYPE gauge`` (promtool flags it, and
PromQL users reach for ``rate()`` on it anyway). So it is a small custom collector that
exposes the last value read as ``# TYPE counter``: ``rate()``/``increase()`` work, and a
reset of the server's statistics (``pg_stat_reset_shared('archiver')``, a crash, a
failover to another server) is a counter reset, which Prometheus handles by design.

Unknown values are absent, not zero: an unmeasurable RPO exposure removes the
workload's ``drd_rpo_exposure_seconds`` series (alert with ``absent()``), because 0
would read as "perfectly safe".
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "REGISTRY", "render"]

REGISTRY = CollectorRegistry(auto_describe=True)

BACKUP_TYPES = ("full", "diff", "incr")

# 1 s … 6 h: small databases finish in seconds, big full backups take hours.
BACKUP_DURATION_BUCKETS = (
    1.0,
    5.0,
    15.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1200.0,
    1800.0,
    3600.0,
    7200.0,
    10800.0,
    14400.0,
    21600.0,
    float("inf"),
)

BACKUP_LAST_SUCCESS = Gauge(
    "drd_backup_last_success_timestamp_seconds",
    "Unix time the newest successful backup of this type finished.",
    ["workload", "type"],
    registry=REGISTRY,
)
BACKUP_DURATION = Histogram(
    "drd_backup_duration_seconds",
    "Duration of successful backups, by type.",
    ["workload", "type"],
    buckets=BACKUP_DURATION_BUCKETS,
    registry=REGISTRY,
)
BACKUP_FAILURES = Counter(
    "drd_backup_failures_total",
    "Backups that failed, by type.",
    ["workload", "type"],
    registry=REGISTRY,
)
WAL_ARCHIVE_LAST_SUCCESS = Gauge(
    "drd_wal_archive_last_success_timestamp_seconds",
    "Unix time PostgreSQL last archived a WAL file (pg_stat_archiver.last_archived_time).",
    ["workload"],
    registry=REGISTRY,
)
WAL_CONTINUITY_GAPS = Gauge(
    "drd_wal_continuity_gaps",
    "Holes in the archived WAL range needed by the newest backup (0 = continuous).",
    ["workload"],
    registry=REGISTRY,
)
RPO_EXPOSURE = Gauge(
    "drd_rpo_exposure_seconds",
    "Now minus the commit time of the newest data known to be archived (heartbeat method);"
    " absent when unknown.",
    ["workload"],
    registry=REGISTRY,
)
RPO_OBJECTIVE = Gauge(
    "drd_rpo_objective_seconds",
    "The tier's recovery point objective.",
    ["workload"],
    registry=REGISTRY,
)
HEARTBEAT_LAST_SUCCESS = Gauge(
    "drd_heartbeat_last_success_timestamp_seconds",
    "Server time (Unix) of the newest heartbeat row drd wrote.",
    ["workload"],
    registry=REGISTRY,
)


class ArchiverFailedCollector(Collector):
    """``drd_wal_archive_failed_total``: the server's ``failed_count``, as a counter."""

    name = "drd_wal_archive_failed"
    documentation = (
        "WAL files PostgreSQL failed to archive (pg_stat_archiver.failed_count, cumulative on"
        " the server; resets with its statistics)."
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, float] = {}

    def set(self, workload: str, failed_count: int) -> None:
        if failed_count < 0:
            raise ValueError(f"failed_count cannot be negative: {failed_count}")
        with self._lock:
            self._values[workload] = float(failed_count)

    def remove(self, workload: str) -> None:
        with self._lock:
            self._values.pop(workload, None)

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=["workload"])
        with self._lock:
            values = sorted(self._values.items())
        for workload, value in values:
            family.add_metric([workload], value)
        yield family

    def describe(self) -> Iterable[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, labels=["workload"])


WAL_ARCHIVE_FAILED = ArchiverFailedCollector()
REGISTRY.register(WAL_ARCHIVE_FAILED)


# -- recording helpers -------------------------------------------------------------------


def _backup_type(backup_type: str) -> str:
    if backup_type not in BACKUP_TYPES:
        raise ValueError(f"unknown backup type {backup_type!r} (one of {', '.join(BACKUP_TYPES)})")
    return backup_type


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _unix(moment: datetime) -> float:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: metrics need an aware time")
    return moment.timestamp()


def record_backup_success(
    workload: str, backup_type: str, duration: float | timedelta, finished_at: datetime
) -> None:
    """A backup finished: its duration goes to the histogram, its end time to the gauge."""
    kind, seconds, finished = _backup_type(backup_type), _seconds(duration), _unix(finished_at)
    BACKUP_DURATION.labels(workload, kind).observe(max(seconds, 0.0))
    BACKUP_LAST_SUCCESS.labels(workload, kind).set(finished)


def record_backup_failure(workload: str, backup_type: str) -> None:
    BACKUP_FAILURES.labels(workload, _backup_type(backup_type)).inc()


def set_archiver(workload: str, last_archived_time: datetime | None, failed_count: int) -> None:
    """Mirror ``pg_stat_archiver`` (``probe.ArchiverState``) for one workload."""
    last = _unix(last_archived_time) if last_archived_time is not None else None
    WAL_ARCHIVE_FAILED.set(workload, failed_count)  # validates before anything is set
    if last is None:
        _remove(WAL_ARCHIVE_LAST_SUCCESS, workload)  # never archived: absent, not 1970
    else:
        WAL_ARCHIVE_LAST_SUCCESS.labels(workload).set(last)


def set_rpo(workload: str, exposure: timedelta | None, objective: timedelta) -> None:
    """Exposure (absent when unknown) next to the objective it is judged against."""
    RPO_OBJECTIVE.labels(workload).set(objective.total_seconds())
    if exposure is None:
        _remove(RPO_EXPOSURE, workload)
    else:
        RPO_EXPOSURE.labels(workload).set(exposure.total_seconds())


def set_continuity_gaps(workload: str, gaps: int) -> None:
    if gaps < 0:
        raise ValueError(f"gap count cannot be negative: {gaps}")
    WAL_CONTINUITY_GAPS.labels(workload).set(gaps)


def record_heartbeat(workload: str, ts: datetime) -> None:
    """A heartbeat row was written at ``ts`` (the server's clock)."""
    value = _unix(ts)  # validate before .labels() creates the series
    HEARTBEAT_LAST_SUCCESS.labels(workload).set(value)


SNAPSHOT_LAST_SUCCESS = Gauge(
    "drd_snapshot_last_success_timestamp_seconds",
    "Unix time of the newest successful filestore snapshot.",
    ["workload"],
    registry=REGISTRY,
)
SNAPSHOT_DURATION = Histogram(
    "drd_snapshot_duration_seconds",
    "Wall time of filestore snapshots.",
    ["workload"],
    buckets=BACKUP_DURATION_BUCKETS,
    registry=REGISTRY,
)
SNAPSHOT_BYTES = Counter(
    "drd_snapshot_bytes_total",
    "Plaintext bytes snapshotted: new (uploaded) or deduplicated (already stored).",
    ["workload", "kind"],
    registry=REGISTRY,
)
SNAPSHOT_FILES = Gauge(
    "drd_snapshot_files",
    "Files in the newest snapshot.",
    ["workload"],
    registry=REGISTRY,
)
SNAPSHOT_FAILURES = Counter(
    "drd_snapshot_failures_total",
    "Failed filestore snapshots.",
    ["workload"],
    registry=REGISTRY,
)


def record_snapshot_success(
    workload: str,
    *,
    duration: float,
    finished_at: datetime,
    files: int,
    bytes_new: int,
    bytes_dedup: int,
) -> None:
    value = _unix(finished_at)
    SNAPSHOT_LAST_SUCCESS.labels(workload).set(value)
    SNAPSHOT_DURATION.labels(workload).observe(duration)
    SNAPSHOT_BYTES.labels(workload, "new").inc(bytes_new)
    SNAPSHOT_BYTES.labels(workload, "deduplicated").inc(bytes_dedup)
    SNAPSHOT_FILES.labels(workload).set(files)


def record_snapshot_failure(workload: str) -> None:
    SNAPSHOT_FAILURES.labels(workload).inc()


DRILL_RPO = Gauge(
    "drd_drill_rpo_seconds", "RPO measured by the newest drill.", ["workload"], registry=REGISTRY
)
DRILL_RTO = Gauge(
    "drd_drill_rto_seconds", "RTO measured by the newest drill.", ["workload"], registry=REGISTRY
)
DRILL_LAST_SUCCESS = Gauge(
    "drd_drill_last_success_timestamp_seconds",
    "Unix time of the newest drill that passed.",
    ["workload"],
    registry=REGISTRY,
)
DRILL_VERDICT = Gauge(
    "drd_drill_verdict", "Newest drill: 1 passed, 0 failed.", ["workload"], registry=REGISTRY
)


# Thresholds from each workload's tier, published by the daemon so that alert rules
# compare against the tier instead of hard-coding numbers (helm/drd PrometheusRule).
BACKUP_MAX_AGE = Gauge(
    "drd_backup_max_age_seconds",
    "Oldest the newest backup may be before alerting (tier alerts.backup_age_max).",
    ["workload"],
    registry=REGISTRY,
)
DRILL_MAX_AGE = Gauge(
    "drd_drill_max_age_seconds",
    "Oldest the newest passing drill may be (tier drills.max_age).",
    ["workload"],
    registry=REGISTRY,
)
RTO_OBJECTIVE = Gauge(
    "drd_rto_objective_seconds", "The tier's RTO objective.", ["workload"], registry=REGISTRY
)


def set_tier_thresholds(
    workload: str, *, backup_max_age: timedelta, drill_max_age: timedelta, rpo: timedelta,
    rto: timedelta,
) -> None:  # fmt: skip
    BACKUP_MAX_AGE.labels(workload).set(backup_max_age.total_seconds())
    DRILL_MAX_AGE.labels(workload).set(drill_max_age.total_seconds())
    RPO_OBJECTIVE.labels(workload).set(rpo.total_seconds())
    RTO_OBJECTIVE.labels(workload).set(rto.total_seconds())


def record_drill(
    workload: str, *, passed: bool, rpo: float | None, rto: float | None, finished_at: datetime
) -> None:
    value = _unix(finished_at)
    DRILL_VERDICT.labels(workload).set(1 if passed else 0)
    if rpo is not None:
        DRILL_RPO.labels(workload).set(rpo)
    if rto is not None:
        DRILL_RTO.labels(workload).set(rto)
    if passed:
        DRILL_LAST_SUCCESS.labels(workload).set(value)


def forget_live_measurements(workload: str) -> None:
    """Drop what only the leader's monitoring measures (RPO exposure, archiver, continuity,
    heartbeat): a replica that stops leading must not keep exporting stale values next to
    the new leader's (alert rules aggregate over replicas)."""
    for gauge in (
        RPO_EXPOSURE,
        WAL_ARCHIVE_LAST_SUCCESS,
        WAL_CONTINUITY_GAPS,
        HEARTBEAT_LAST_SUCCESS,
    ):
        _remove(gauge, workload)
    WAL_ARCHIVE_FAILED.remove(workload)


def forget_workload(workload: str) -> None:
    """Drop every series of a workload that is no longer configured."""
    for kind in BACKUP_TYPES:
        for metric in (BACKUP_LAST_SUCCESS, BACKUP_DURATION, BACKUP_FAILURES):
            _remove(metric, workload, kind)
    for gauge in (
        WAL_ARCHIVE_LAST_SUCCESS,
        WAL_CONTINUITY_GAPS,
        RPO_EXPOSURE,
        RPO_OBJECTIVE,
        HEARTBEAT_LAST_SUCCESS,
        SNAPSHOT_LAST_SUCCESS,
        SNAPSHOT_DURATION,
        SNAPSHOT_FILES,
        SNAPSHOT_FAILURES,
        DRILL_RPO,
        DRILL_RTO,
        DRILL_LAST_SUCCESS,
        DRILL_VERDICT,
        BACKUP_MAX_AGE,
        DRILL_MAX_AGE,
        RTO_OBJECTIVE,
    ):
        _remove(gauge, workload)
    for kind in ("new", "deduplicated"):
        _remove(SNAPSHOT_BYTES, workload, kind)
    WAL_ARCHIVE_FAILED.remove(workload)


def _remove(metric: Gauge | Counter | Histogram, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # prometheus_client < 0.22 raises for unknown labels
        metric.remove(*labels)


def render() -> bytes:
    """The text exposition of ``REGISTRY`` (serve with ``CONTENT_TYPE_LATEST``)."""
    return generate_latest(REGISTRY)
