"""Jobs on APScheduler, with the limits an estate needs.

* One APScheduler job per ``JobSpec``: cron triggers with crontab meaning
  (``drd.config.cron``) and ``jitter`` for estates where many workloads share one cron;
  interval triggers for heartbeats and monitoring. ``coalesce`` and ``max_instances=1``:
  missed fires collapse into one run and a job never overlaps itself.
* Two thread pools: ``heavy`` (backups, snapshots, retention, drills: at most
  ``max_concurrent_jobs`` at once, and at most ``max_jobs_per_repository`` per repository)
  and ``light`` (heartbeats, monitoring, sweeper), so a long backup never delays a
  heartbeat.
* A failing job never stops the scheduler: it is logged, counted, and retried after an
  exponential backoff (1 min doubling to 1 h) unless its schedule comes first.
* ``catch_up`` runs due jobs now (after downtime, or when becoming leader);
  ``run_once`` runs a list of jobs to completion under the same limits (``--once``).
* ``stop`` stops taking jobs, lets running ones finish within a grace period, then
  cancels the rest (their process groups are killed).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor as Pool
from concurrent.futures import wait
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from drd.config.cron import trigger as cron_trigger
from drd.daemon.jobs import SUBPROCESS, JobSpec
from drd.daemon.runner import JobRunner
from drd.log import get_logger

log = get_logger("drd.daemon")

BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=1)
LIGHT_THREADS = 8
PHASES: tuple[frozenset[str], ...] = (
    frozenset({"heartbeat", "monitor", "sweep", "backup-full", "backup-diff", "backup-incr"}),
    frozenset({"snapshot"}),
    frozenset({"drill"}),
    frozenset({"retention"}),  # last: its prune locks the snapshot repository exclusively
)


class Scheduler:
    def __init__(
        self,
        runner: JobRunner,
        *,
        max_concurrent: int,
        max_per_repository: int,
        jitter: timedelta,
        backoff_base: timedelta = BACKOFF_BASE,
        backoff_max: timedelta = BACKOFF_MAX,
    ) -> None:
        self.runner = runner
        self.max_concurrent = max_concurrent
        self.max_per_repository = max_per_repository
        self.jitter = jitter
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self.jobs: dict[str, JobSpec] = {}
        self.failures: dict[str, int] = {}
        self.running: dict[str, threading.Event] = {}  # job id -> its cancel event
        self.accepting = True
        self.paused = False
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._heavy = threading.BoundedSemaphore(max_concurrent)
        self._repos: dict[str, threading.BoundedSemaphore] = {}
        self._aps: Any = BackgroundScheduler(
            timezone=UTC,
            executors={
                "heavy": ThreadPoolExecutor(max_concurrent),
                "light": ThreadPoolExecutor(LIGHT_THREADS),
            },
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )

    # -- schedule ------------------------------------------------------------------

    def _trigger(self, job: JobSpec) -> Any:
        if job.interval is not None:
            return IntervalTrigger(seconds=job.interval.total_seconds(), timezone=UTC)
        cron = cron_trigger(str(job.cron))
        cron.jitter = int(self.jitter.total_seconds()) or None
        return cron

    def configure(self, jobs: Iterable[JobSpec]) -> None:
        """Make the scheduled set equal ``jobs`` (also on config reload)."""
        wanted = {job.id: job for job in jobs}
        with self._lock:
            for job_id in set(self.jobs) - set(wanted):
                self._remove(job_id)
            for job_id, job in wanted.items():
                if self.jobs.get(job_id) != job:
                    self._aps.add_job(
                        self._run,
                        self._trigger(job),
                        args=[job_id],
                        id=job_id,
                        name=job_id,
                        executor="heavy" if job.kind in SUBPROCESS else "light",
                        replace_existing=True,
                    )
            self.jobs = wanted

    def _remove(self, job_id: str) -> None:
        for suffix in ("", ":retry", ":now"):
            if self._aps.get_job(job_id + suffix) is not None:
                self._aps.remove_job(job_id + suffix)

    def start(self, *, paused: bool = False) -> None:
        self.paused = paused
        self._aps.start(paused=paused)

    def pause(self) -> None:
        """Start nothing more (leadership lost); running jobs are cancelled separately."""
        self.paused = True
        self._aps.pause()

    def resume(self) -> None:
        self.paused = False
        self._aps.resume()

    def catch_up(self, due: Iterable[JobSpec]) -> threading.Thread:
        """Run these jobs now, once each, in the background, phase by phase (``run_once``);
        the thread is returned for tests to join."""
        batch = list(due)
        worker = threading.Thread(target=self.run_once, args=(batch,), name="drd-catch-up")
        worker.daemon = True
        worker.start()
        return worker

    def _once(self, job: JobSpec, when: datetime, suffix: str) -> None:
        self._aps.add_job(
            self._run,
            DateTrigger(when),
            args=[job.id],
            id=job.id + suffix,
            executor="heavy" if job.kind in SUBPROCESS else "light",
            replace_existing=True,
        )

    # -- execute -------------------------------------------------------------------

    def _repo_slot(self, job: JobSpec) -> threading.BoundedSemaphore | None:
        if job.kind not in SUBPROCESS or job.repository is None:
            return None
        with self._lock:
            return self._repos.setdefault(
                job.repository, threading.BoundedSemaphore(self.max_per_repository)
            )

    def _run(self, job_id: str) -> bool:
        """Run one job under the limits; True if it succeeded. Never raises."""
        job = self.jobs.get(job_id)
        if job is None or not self.accepting or self.paused:
            return False
        cancel = threading.Event()
        with self._lock:
            if job_id in self.running:  # a catch-up run and a scheduled fire coincided
                return False
            self.running[job_id] = cancel
        slot = self._repo_slot(job)
        heavy = job.kind in SUBPROCESS
        try:
            if heavy:
                self._heavy.acquire()
            if slot is not None:
                slot.acquire()
            try:
                if cancel.is_set() or not self.accepting or self.paused:
                    return False
                started = time.monotonic()
                log.info("job_started", job=job_id)
                self.runner(job, cancel)
                log.info("job_finished", job=job_id, duration=round(time.monotonic() - started, 3))
                self.failures.pop(job_id, None)
                return True
            finally:
                if slot is not None:
                    slot.release()
                if heavy:
                    self._heavy.release()
        except Exception as exc:
            count = self.failures[job_id] = self.failures.get(job_id, 0) + 1
            wait_for = min(self.backoff_base * 2 ** (count - 1), self.backoff_max)
            log.warning("job_failed", job=job_id, failures=count, retry_in=str(wait_for),
                        error=str(exc)[:500])  # fmt: skip
            if self.accepting and not cancel.is_set() and job.kind in SUBPROCESS:
                self._once(job, datetime.now(UTC) + wait_for, ":retry")
            return False
        finally:
            with self._lock:
                self.running.pop(job_id, None)

    def run_once(self, jobs: Iterable[JobSpec]) -> dict[str, bool]:
        """Run ``jobs`` now under the same limits; job id -> succeeded.

        In phases (``PHASES``): heartbeats and backups first, then snapshots (they pair
        with the newest backup), then drills (a drill after downtime should test the
        backup just taken), then retention (its prune takes the snapshot repository's
        exclusive lock, which a drill restoring from it would run into). Within a
        phase jobs run in parallel, up to the limits, each after a random delay of at
        most ``jitter`` so that an estate's catch-up does not start all at once.
        """
        batch = list(jobs)
        for job in batch:
            self.jobs.setdefault(job.id, job)
        results: dict[str, bool] = {}
        spread = self.jitter.total_seconds()
        for phase in PHASES:
            group = [job for job in batch if job.kind in phase]
            if not group or not self.accepting:
                continue
            with Pool(max_workers=self.max_concurrent + LIGHT_THREADS) as pool:
                futures = {
                    job.id: pool.submit(self._delayed, job.id, random.uniform(0, spread))  # noqa: S311
                    for job in group
                }
                wait(futures.values())
            results.update({job_id: future.result() for job_id, future in futures.items()})
        return results

    def _delayed(self, job_id: str, delay: float) -> bool:
        if delay > 0 and self._stopping.wait(delay):
            return False
        return self._run(job_id)

    def cancel_running(self) -> None:
        with self._lock:
            for event in self.running.values():
                event.set()

    def stop(self, grace: timedelta) -> None:
        """Take no new jobs; wait up to ``grace`` for running ones, then cancel them."""
        self.accepting = False
        self._stopping.set()
        if self._aps.running:
            self._aps.shutdown(wait=False)
        deadline = time.monotonic() + grace.total_seconds()
        while self.running and time.monotonic() < deadline:
            time.sleep(0.2)
        if self.running:
            log.warning("jobs_cancelled_at_shutdown", jobs=sorted(self.running))
            self.cancel_running()
            while self.running:
                time.sleep(0.1)
