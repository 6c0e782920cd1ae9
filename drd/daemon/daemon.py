"""``drd daemon``: keep every workload within its tier.

Start-up: load and validate the config (exit 2 otherwise), open the catalog, check that
immutable tiers' buckets can lock objects, join leader election, serve HTTP. While
leader: run the jobs the tiers schedule, after catching up from the catalog on what fell
due while no daemon led (each due job once). While follower: serve HTTP, keep polling
for leadership.

Signals: SIGTERM (and Ctrl-C) stop taking new jobs, let running ones finish within
``daemon.shutdown_grace``, then exit 0. SIGHUP re-reads the config; an invalid one is
logged with every problem and the daemon keeps running on the old one.

``--once`` (for cron users and tests): one reconcile pass - every due catch-up job plus
one heartbeat and monitoring round per workload - under the same limits, then exit: 0
when every job succeeded, 6 otherwise (the log says which failed).
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from drd import metrics
from drd.catalog import Catalog, open_configured
from drd.config import Estate, load
from drd.daemon.jobs import JobSpec, LastRuns, due_jobs, jobs_for
from drd.daemon.leader import POLL, Leadership, leadership_for
from drd.daemon.runner import DrdRunner, JobRunner, publish_from_catalog, publish_thresholds
from drd.daemon.scheduler import Scheduler
from drd.daemon.state import Readiness
from drd.errors import CommandError, ConfigError, DrdError
from drd.log import get_logger

log = get_logger("drd.daemon")

#: The main loop's tick; leadership is polled every ``POLL`` seconds.
TICK = 0.5
PUBLISH_EVERY = 60.0


@dataclass
class Daemon:
    config_path: Path
    log_level: str = "info"
    runner: JobRunner | None = None  # None: the real DrdRunner
    serve_http: bool = True
    estate: Estate = field(init=False)
    statuses: dict[str, Any] = field(default_factory=dict)  # workload -> WorkloadStatus
    measured_at: dict[str, datetime] = field(default_factory=dict)  # ... and when

    def __post_init__(self) -> None:
        self.estate = load(self.config_path)
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.catalog: Catalog = open_configured(self.estate.config)
        self.leadership: Leadership = leadership_for(self.catalog, self.estate.config.state_dir)
        settings = self.estate.config.daemon
        self.scheduler = Scheduler(
            self.runner or self._real_runner(),
            max_concurrent=settings.max_concurrent_jobs,
            max_per_repository=settings.max_jobs_per_repository,
            jitter=settings.jitter,
        )
        self.http: Any = None

    def _real_runner(self) -> JobRunner:
        return DrdRunner(
            estate=lambda: self.estate,
            config_path=self.config_path,
            log_level=self.log_level,
            on_status=self._on_status,
        )

    def _on_status(self, workload: str, status: Any) -> None:
        self.statuses[workload] = status
        self.measured_at[workload] = datetime.now(UTC)

    def jobs(self) -> list[JobSpec]:
        settings = self.estate.config.daemon
        return jobs_for(
            self.estate, retention_cron=settings.retention_cron, job_timeout=settings.job_timeout
        )

    # -- state for /readyz and the status page ---------------------------------------

    def readiness(self) -> Readiness:
        try:
            self.catalog.ping()
            catalog_ok, detail = True, ""
        except DrdError as exc:
            catalog_ok, detail = False, str(exc)
        return Readiness(True, catalog_ok, self.leadership.role, detail)

    def _check_immutability(self) -> None:
        from drd.retention.immutability import require_estate_object_lock  # noqa: PLC0415

        for warning in require_estate_object_lock(self.estate):
            log.warning("immutability_warning", detail=warning)

    def _start_http(self) -> None:
        if not self.serve_http:
            return
        from drd.daemon.http import HttpServer  # noqa: PLC0415 - not needed for --once
        from drd.daemon.status_page import build_view  # noqa: PLC0415

        settings = self.estate.config.daemon
        self.http = HttpServer(
            settings.listen_host,
            settings.listen_port,
            readiness=self.readiness,
            status=lambda: build_view(
                self.estate,
                self.catalog,
                statuses=dict(self.statuses),
                measured_at=dict(self.measured_at),
                role=self.leadership.role,
            ),
        )
        self.http.start()
        log.info("http_listening", url=self.http.url)

    # -- signals --------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._reload.set()
        else:
            log.info("daemon_stopping", signal=signal.Signals(signum).name)
            self._stop.set()

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    def _reload_config(self) -> None:
        self._reload.clear()
        try:
            estate = load(self.config_path)
        except ConfigError as exc:
            problems = [str(p) for p in exc.problems] or [str(exc)]
            log.error(  # noqa: TRY400 - the problems are the message; no traceback wanted
                "config_reload_rejected", problems=problems, keeping="the running config"
            )
            return
        self.estate = estate
        self.scheduler.configure(self.jobs())
        publish_thresholds(estate)
        log.info("config_reloaded", workloads=len(estate.config.workloads))

    # -- main loop ------------------------------------------------------------------

    def _become_leader(self) -> None:
        jobs = self.jobs()
        self.scheduler.configure(jobs)
        due = due_jobs(jobs, LastRuns.from_catalog(self.catalog, jobs))
        log.info("leader_catching_up", due=[job.id for job in due])
        # A new leader also measures at once: the page and /metrics should not wait for
        # the first monitoring interval.
        rounds = [job for job in jobs if job.kind in ("heartbeat", "monitor")]
        self.scheduler.resume()
        self.scheduler.catch_up([*rounds, *due])

    def _publish(self) -> None:
        try:
            publish_from_catalog(self.estate, self.catalog)
        except DrdError as exc:
            log.warning("metrics_publish_failed", error=str(exc))

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; the exit code."""
        handlers = {
            sig: signal.signal(sig, self._on_signal)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }
        try:
            self._check_immutability()
            publish_thresholds(self.estate)
            self._publish()
            self.scheduler.configure(self.jobs())
            self.scheduler.start(paused=True)
            self._start_http()
            last_poll = last_publish = 0.0
            while not self._stop.is_set():
                now = time.monotonic()
                if self._reload.is_set():
                    self._reload_config()
                if now - last_poll >= POLL:
                    last_poll = now
                    self._lead()
                if now - last_publish >= PUBLISH_EVERY:
                    last_publish = now
                    self._publish()
                self._stop.wait(TICK)
            self.scheduler.stop(self.estate.config.daemon.shutdown_grace)
            log.info("daemon_stopped")
            return 0
        finally:
            if self.http is not None:
                self.http.stop()
            self.leadership.release()
            self.catalog.close()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    def _lead(self) -> None:
        was = self.leadership.role
        role = self.leadership.poll()
        if role == "leader" and was != "leader":
            self._become_leader()
        elif role != "leader" and was == "leader":
            log.warning("leadership_lost", role=role)
            self.scheduler.pause()
            self.scheduler.cancel_running()
            for workload in self.estate.config.workloads:
                metrics.forget_live_measurements(workload.name)
            self.statuses.clear()
            self.measured_at.clear()

    def run_once(self) -> int:
        """One reconcile pass; 0 when every job it ran succeeded."""
        try:
            if self.leadership.poll() != "leader":
                log.info("not_leader", detail="another daemon leads; nothing to do")
                return 0
            self._check_immutability()
            jobs = self.jobs()
            due = due_jobs(jobs, LastRuns.from_catalog(self.catalog, jobs))
            rounds = [job for job in jobs if job.kind in ("heartbeat", "monitor")]
            started = datetime.now(UTC)
            results = self.scheduler.run_once([*rounds, *due])
            publish_thresholds(self.estate)
            self._publish()
            failed = sorted(job_id for job_id, ok in results.items() if not ok)
            log.info(
                "reconcile_pass_done",
                ran=len(results),
                failed=failed,
                seconds=round((datetime.now(UTC) - started).total_seconds(), 3),
            )
            if failed:
                raise CommandError(f"{len(failed)} job(s) failed: {', '.join(failed)}")
            return 0
        finally:
            self.leadership.release()
            self.catalog.close()
