"""drd's Prometheus metrics: exact names, types and labels in the exposition, histogram
buckets, counter semantics, and absent-when-unknown values."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from drd import metrics

FINISHED = datetime(2024, 5, 1, 3, 0, 7, tzinfo=UTC)


@pytest.fixture
def workload() -> str:
    """A workload name no other test uses (the registry is process-wide)."""
    return f"erp-{uuid.uuid4().hex[:8]}"


def _sample(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


def _types() -> dict[str, str]:
    """Family name -> type, without the ``*_created`` series prometheus_client adds."""
    families = text_string_to_metric_families(metrics.render().decode())
    return {f.name: f.type for f in families if not f.name.endswith("_created")}


def test_every_metric_is_exposed_with_its_exact_name_and_type(workload: str) -> None:
    """After one observation of each kind the exposition holds all names, typed as documented."""
    metrics.record_backup_success(workload, "full", timedelta(minutes=3), FINISHED)
    metrics.record_backup_failure(workload, "incr")
    metrics.set_archiver(workload, FINISHED, 2)
    metrics.set_continuity_gaps(workload, 1)
    metrics.set_rpo(workload, timedelta(seconds=40), timedelta(minutes=15))
    metrics.record_heartbeat(workload, FINISHED)
    metrics.record_snapshot_success(
        workload, duration=12.0, finished_at=FINISHED, files=3, bytes_new=100, bytes_dedup=50
    )
    metrics.record_snapshot_failure(workload)
    metrics.record_drill(workload, passed=True, rpo=12.5, rto=40.0, finished_at=FINISHED)
    metrics.set_tier_thresholds(
        workload,
        backup_max_age=timedelta(days=8),
        drill_max_age=timedelta(days=2),
        rpo=timedelta(minutes=15),
        rto=timedelta(hours=2),
    )

    text = metrics.render().decode()
    for line in (
        f'drd_backup_last_success_timestamp_seconds{{type="full",workload="{workload}"}}',
        f'drd_backup_duration_seconds_count{{type="full",workload="{workload}"}} 1.0',
        f'drd_backup_duration_seconds_sum{{type="full",workload="{workload}"}} 180.0',
        f'drd_backup_failures_total{{type="incr",workload="{workload}"}} 1.0',
        f'drd_wal_archive_last_success_timestamp_seconds{{workload="{workload}"}}',
        f'drd_wal_archive_failed_total{{workload="{workload}"}} 2.0',
        f'drd_wal_continuity_gaps{{workload="{workload}"}} 1.0',
        f'drd_rpo_exposure_seconds{{workload="{workload}"}} 40.0',
        f'drd_rpo_objective_seconds{{workload="{workload}"}} 900.0',
        f'drd_heartbeat_last_success_timestamp_seconds{{workload="{workload}"}}',
        f'drd_snapshot_bytes_total{{kind="new",workload="{workload}"}} 100.0',
        f'drd_snapshot_bytes_total{{kind="deduplicated",workload="{workload}"}} 50.0',
        f'drd_snapshot_files{{workload="{workload}"}} 3.0',
        f'drd_snapshot_failures_total{{workload="{workload}"}} 1.0',
        f'drd_drill_rpo_seconds{{workload="{workload}"}} 12.5',
        f'drd_drill_verdict{{workload="{workload}"}} 1.0',
        f'drd_backup_max_age_seconds{{workload="{workload}"}} 691200.0',
        f'drd_drill_max_age_seconds{{workload="{workload}"}} 172800.0',
        f'drd_rto_objective_seconds{{workload="{workload}"}} 7200.0',
    ):
        assert line in text, line
    assert "# TYPE drd_wal_archive_failed_total counter" in text
    # Parsed family names drop the counter suffix; the types are what dashboards rely on.
    assert _types() == {
        "drd_backup_last_success_timestamp_seconds": "gauge",
        "drd_backup_duration_seconds": "histogram",
        "drd_backup_failures": "counter",
        "drd_wal_archive_last_success_timestamp_seconds": "gauge",
        "drd_wal_archive_failed": "counter",
        "drd_wal_continuity_gaps": "gauge",
        "drd_rpo_exposure_seconds": "gauge",
        "drd_rpo_objective_seconds": "gauge",
        "drd_heartbeat_last_success_timestamp_seconds": "gauge",
        "drd_snapshot_last_success_timestamp_seconds": "gauge",
        "drd_snapshot_duration_seconds": "histogram",
        "drd_snapshot_bytes": "counter",
        "drd_snapshot_files": "gauge",
        "drd_snapshot_failures": "counter",
        "drd_drill_rpo_seconds": "gauge",
        "drd_drill_rto_seconds": "gauge",
        "drd_drill_last_success_timestamp_seconds": "gauge",
        "drd_drill_verdict": "gauge",
        "drd_backup_max_age_seconds": "gauge",
        "drd_drill_max_age_seconds": "gauge",
        "drd_rto_objective_seconds": "gauge",
    }
    assert _sample(
        "drd_backup_last_success_timestamp_seconds", workload=workload, type="full"
    ) == pytest.approx(FINISHED.timestamp())
    assert _sample(
        "drd_heartbeat_last_success_timestamp_seconds", workload=workload
    ) == pytest.approx(FINISHED.timestamp())


def test_backup_duration_buckets_span_a_second_to_six_hours(workload: str) -> None:
    """Durations land in buckets from 1 s to 6 h (plus +Inf); buckets are cumulative."""
    assert metrics.BACKUP_DURATION_BUCKETS[0] == 1.0
    assert metrics.BACKUP_DURATION_BUCKETS[-2] == 6 * 3600.0
    for seconds in (0.4, 45.0, 2 * 3600.0, 9 * 3600.0):
        metrics.record_backup_success(workload, "diff", seconds, FINISHED)

    def bucket(le: str) -> float | None:
        return _sample("drd_backup_duration_seconds_bucket", workload=workload, type="diff", le=le)

    assert bucket("1.0") == 1
    assert bucket("30.0") == 1
    assert bucket("60.0") == 2
    assert bucket("7200.0") == 3
    assert bucket("21600.0") == 3
    assert bucket("+Inf") == 4
    les = [
        s.labels["le"]
        for f in text_string_to_metric_families(metrics.render().decode())
        if f.name == "drd_backup_duration_seconds"
        for s in f.samples
        if s.name.endswith("_bucket") and s.labels["workload"] == workload
    ]
    assert len(les) == len(metrics.BACKUP_DURATION_BUCKETS)


def test_counters_increase_and_the_archiver_counter_follows_the_server(workload: str) -> None:
    """Backup failures count up per type; the archiver counter mirrors failed_count."""
    for _ in range(3):
        metrics.record_backup_failure(workload, "full")
    metrics.record_backup_failure(workload, "diff")
    assert _sample("drd_backup_failures_total", workload=workload, type="full") == 3
    assert _sample("drd_backup_failures_total", workload=workload, type="diff") == 1

    metrics.set_archiver(workload, FINISHED, 0)
    assert _sample("drd_wal_archive_failed_total", workload=workload) == 0
    metrics.set_archiver(workload, FINISHED, 7)
    assert _sample("drd_wal_archive_failed_total", workload=workload) == 7
    # pg_stat_reset_shared('archiver') on the server: a counter reset, as Prometheus expects.
    metrics.set_archiver(workload, FINISHED + timedelta(minutes=1), 0)
    assert _sample("drd_wal_archive_failed_total", workload=workload) == 0
    assert _sample(
        "drd_wal_archive_last_success_timestamp_seconds", workload=workload
    ) == pytest.approx(FINISHED.timestamp() + 60)


def test_unknown_values_are_absent_not_zero(workload: str) -> None:
    """Unknown exposure or a never-archived server removes the series instead of faking 0."""
    metrics.set_rpo(workload, timedelta(seconds=12), timedelta(minutes=5))
    assert _sample("drd_rpo_exposure_seconds", workload=workload) == 12
    metrics.set_rpo(workload, None, timedelta(minutes=5))
    assert _sample("drd_rpo_exposure_seconds", workload=workload) is None
    assert _sample("drd_rpo_objective_seconds", workload=workload) == 300
    metrics.set_archiver(workload, None, 0)
    assert _sample("drd_wal_archive_last_success_timestamp_seconds", workload=workload) is None


def test_forget_workload_drops_all_its_series(workload: str) -> None:
    """A workload removed from the config leaves nothing behind in the exposition."""
    metrics.record_backup_success(workload, "incr", 5, FINISHED)
    metrics.record_backup_failure(workload, "full")
    metrics.set_archiver(workload, FINISHED, 1)
    metrics.set_continuity_gaps(workload, 0)
    metrics.set_rpo(workload, timedelta(seconds=3), timedelta(minutes=5))
    metrics.record_heartbeat(workload, FINISHED)
    assert workload in metrics.render().decode()
    metrics.forget_workload(workload)
    assert workload not in metrics.render().decode()
    metrics.forget_workload(workload)  # idempotent


def test_bad_observations_are_refused(workload: str) -> None:
    """Unknown backup types, naive times and negative counts raise instead of polluting."""
    with pytest.raises(ValueError, match="unknown backup type"):
        metrics.record_backup_success(workload, "snapshot", 1, FINISHED)
    with pytest.raises(ValueError, match="unknown backup type"):
        metrics.record_backup_failure(workload, "FULL")
    with pytest.raises(ValueError, match="naive"):
        metrics.record_heartbeat(workload, datetime(2024, 5, 1, 3, 0))
    with pytest.raises(ValueError, match="negative"):
        metrics.set_archiver(workload, FINISHED, -1)
    with pytest.raises(ValueError, match="negative"):
        metrics.set_continuity_gaps(workload, -1)
    assert workload not in metrics.render().decode()


def test_registry_is_drds_own() -> None:
    """Nothing from the default registry (process/platform collectors) leaks in."""
    text = metrics.render().decode()
    assert "process_cpu_seconds_total" not in text
    assert "python_info" not in text
    assert metrics.CONTENT_TYPE_LATEST.startswith("text/plain")


def test_a_replica_that_stops_leading_drops_its_live_measurements(workload: str) -> None:
    """Only the leader measures RPO exposure and archiving; a former leader's values go."""
    metrics.set_rpo(workload, timedelta(seconds=40), timedelta(minutes=15))
    metrics.set_archiver(workload, FINISHED, 2)
    metrics.set_continuity_gaps(workload, 1)
    metrics.record_drill(workload, passed=True, rpo=1.0, rto=2.0, finished_at=FINISHED)
    metrics.forget_live_measurements(workload)
    text = metrics.render().decode()
    for name in ("drd_rpo_exposure_seconds", "drd_wal_archive_failed_total",
                 "drd_wal_continuity_gaps"):  # fmt: skip
        assert f'{name}{{workload="{workload}"}}' not in text
    assert f'drd_rpo_objective_seconds{{workload="{workload}"}}' in text  # the tier's, kept
    assert f'drd_drill_verdict{{workload="{workload}"}}' in text  # from the catalog, kept
