"""Scheduling logic with a stub runner: due jobs, coalesced catch-up, limits, backoff."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from drd.daemon.jobs import JobSpec, LastRuns, due_jobs
from drd.daemon.scheduler import Scheduler


def _job(
    kind: str = "backup-incr", workload: str = "erp", repo: str = "r1", cron: str = "0 * * * *"
) -> JobSpec:
    return JobSpec(kind, workload, repo, cron=cron)  # type: ignore[arg-type]


NOW = datetime(2026, 11, 29, 10, 30, tzinfo=UTC)


def test_a_job_three_slots_late_is_due_once() -> None:
    """Hourly incr last ran 3.5 h ago: due (once: due_jobs lists it one time)."""
    job = _job()
    last = LastRuns({job.id: NOW - timedelta(hours=3, minutes=30)})
    assert due_jobs([job], last, NOW) == [job]


def test_a_job_that_ran_after_its_last_slot_is_not_due() -> None:
    job = _job()
    assert due_jobs([job], LastRuns({job.id: NOW - timedelta(minutes=20)}), NOW) == []
    # 10:00 fired after 09:59: due
    assert due_jobs([job], LastRuns({job.id: NOW - timedelta(minutes=31)}), NOW) == [job]


def test_a_job_that_never_ran_is_due_and_intervals_are_not_caught_up() -> None:
    job = _job()
    beat = JobSpec("heartbeat", "erp", None, interval=timedelta(seconds=10))
    assert due_jobs([job, beat], LastRuns({}), NOW) == [job]


def test_one_backup_per_workload_the_biggest_due() -> None:
    """Full and incr both due: only the full runs (it satisfies the incr)."""
    full, incr = _job("backup-full", cron="0 1 * * 0"), _job("backup-incr")
    other = _job("backup-incr", workload="crm")
    assert due_jobs([full, incr, other], LastRuns({}), NOW) == [full, other]


def test_weekly_cron_uses_crontab_sunday() -> None:
    """'0 1 * * 0' is Sunday 01:00 (crontab), not Monday (APScheduler's own numbering)."""
    job = _job("backup-full", cron="0 1 * * 0")
    saturday = datetime(2026, 11, 28, 12, tzinfo=UTC)
    assert job.next_fire(saturday) == datetime(2026, 11, 29, 1, tzinfo=UTC)


class Recorder:
    """A runner that records overlap and can be told to fail or to block."""

    def __init__(self, *, hold: float = 0.0, fail: set[str] | None = None) -> None:
        self.hold = hold
        self.fail = fail or set()
        self.lock = threading.Lock()
        self.active: dict[str, int] = {}
        self.peak_total = 0
        self.peak_repo: dict[str, int] = {}
        self.calls: list[str] = []

    def __call__(self, job: JobSpec, cancel: threading.Event) -> None:
        repo = str(job.repository)
        with self.lock:
            self.calls.append(job.id)
            self.active[repo] = self.active.get(repo, 0) + 1
            self.peak_repo[repo] = max(self.peak_repo.get(repo, 0), self.active[repo])
            self.peak_total = max(self.peak_total, sum(self.active.values()))
        try:
            cancel.wait(self.hold)
            if job.id in self.fail:
                raise RuntimeError(f"{job.id} broke")
        finally:
            with self.lock:
                self.active[repo] -= 1


def test_limits_global_and_per_repository() -> None:
    runner = Recorder(hold=0.2)
    scheduler = Scheduler(runner, max_concurrent=3, max_per_repository=2, jitter=timedelta(0))
    jobs = [_job(workload=f"w{i}", repo=f"r{i % 2}") for i in range(8)]
    results = scheduler.run_once(jobs)
    assert all(results.values())
    assert sorted(runner.calls) == sorted(job.id for job in jobs)
    assert runner.peak_total == 3
    assert max(runner.peak_repo.values()) == 2


def test_a_failing_job_does_not_stop_the_others_and_is_retried_with_backoff() -> None:
    jobs = [_job(workload="ok"), _job(workload="bad")]
    runner = Recorder(fail={"backup-incr:bad"})
    scheduler = Scheduler(
        runner,
        max_concurrent=2,
        max_per_repository=2,
        jitter=timedelta(0),
        backoff_base=timedelta(milliseconds=200),
    )
    scheduler.configure(jobs)
    scheduler.start()
    try:
        scheduler.catch_up(jobs)
        deadline = time.monotonic() + 10
        while runner.calls.count("backup-incr:bad") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        scheduler.stop(timedelta(seconds=2))
    assert runner.calls.count("backup-incr:ok") == 1
    assert runner.calls.count("backup-incr:bad") >= 3  # retried: 0.2 s, 0.4 s ...
    assert scheduler.failures["backup-incr:bad"] >= 3


def test_a_job_never_overlaps_itself() -> None:
    job = _job()
    runner = Recorder(hold=0.3)
    scheduler = Scheduler(runner, max_concurrent=4, max_per_repository=4, jitter=timedelta(0))
    scheduler.jobs[job.id] = job
    threads = [threading.Thread(target=scheduler._run, args=(job.id,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert runner.calls == [job.id]


def test_stop_waits_for_running_jobs_within_grace_then_cancels() -> None:
    finished = Recorder(hold=0.3)
    scheduler = Scheduler(finished, max_concurrent=1, max_per_repository=1, jitter=timedelta(0))
    job = _job()
    scheduler.jobs[job.id] = job
    worker = threading.Thread(target=scheduler._run, args=(job.id,))
    worker.start()
    time.sleep(0.05)
    started = time.monotonic()
    scheduler.stop(timedelta(seconds=5))
    worker.join()
    assert not scheduler.running
    assert scheduler.failures == {}  # it finished normally inside the grace period
    assert time.monotonic() - started < 5

    stuck = Recorder(hold=30)
    scheduler = Scheduler(stuck, max_concurrent=1, max_per_repository=1, jitter=timedelta(0))
    scheduler.jobs[job.id] = job
    worker = threading.Thread(target=scheduler._run, args=(job.id,))
    worker.start()
    time.sleep(0.05)
    scheduler.stop(timedelta(milliseconds=200))  # grace over: cancelled
    worker.join(timeout=5)
    assert not worker.is_alive()
    assert not scheduler.accepting


def test_catch_up_runs_backups_then_snapshots_then_drills_then_retention() -> None:
    """After downtime a drill must test the backup just taken, not race it; retention's
    prune (exclusive repository lock) must not race the drill's restore."""
    runner = Recorder()
    scheduler = Scheduler(runner, max_concurrent=4, max_per_repository=4, jitter=timedelta(0))
    jobs = [
        _job("drill", cron="0 6 * * *"),
        _job("retention", cron="30 4 * * *"),
        _job("snapshot", cron="*/5 * * * *"),
        _job("backup-full", cron="0 1 * * 0"),
    ]
    scheduler.catch_up(jobs).join(timeout=10)
    order = runner.calls
    assert order == ["backup-full:erp", "snapshot:erp", "drill:erp", "retention:erp"]


def test_catch_up_is_spread_by_the_jitter() -> None:
    starts: list[float] = []

    def runner(job: JobSpec, cancel: threading.Event) -> None:
        starts.append(time.monotonic())

    scheduler = Scheduler(
        runner, max_concurrent=8, max_per_repository=8, jitter=timedelta(seconds=1)
    )
    began = time.monotonic()
    results = scheduler.run_once([_job(workload=f"w{i}") for i in range(8)])
    assert all(results.values())
    assert 0 < max(starts) - min(starts) <= 1.5
    assert max(starts) - began <= 1.5
