"""The daemon on an estate of 1,000 simulated workloads: CPU of one reconcile pass, RSS.

No databases: a config with 1,000 workloads (tiers as shipped), a SQLite catalog filled
with a realistic history (a week of backups per workload, snapshots, drills, runs), and
jobs stubbed at the runner boundary (the ``JobRunner`` the daemon calls). Measured:

* CPU time (user + system, this process) of one reconcile pass: build the job list from
  the tiers, read what last ran from the catalog, decide what is due, run the due jobs
  through the scheduler (stubbed), publish the metrics from the catalog;
* the resident memory of the process with all ~7,000 jobs scheduled in APScheduler.

Targets (issue): pass < 0.5 s CPU, RSS < 200 MB.

    .venv/bin/python bench/daemon_reconcile.py [--workloads 1000]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drd import log  # noqa: E402
from drd.catalog import BackupRecord, DrillRecord, SnapshotRecord, open_configured  # noqa: E402
from drd.config import load  # noqa: E402
from drd.daemon.jobs import JobSpec, LastRuns, due_jobs, jobs_for  # noqa: E402
from drd.daemon.runner import publish_from_catalog, publish_thresholds  # noqa: E402
from drd.daemon.scheduler import Scheduler  # noqa: E402


def write_estate(root: Path, count: int) -> Path:
    tiers = ["tier-0", "tier-1", "tier-2", "tier-3"]
    config = {
        "version": 1,
        "state_dir": str(root / "state"),
        "tiers_dir": str(ROOT / "tiers"),
        "repositories": [
            {"name": f"r{i}", "type": "filesystem", "path": str(root / f"repo{i}"),
             "encryption": {"passphrase": {"env": "DRD_BENCH_PASSPHRASE"}}}
            for i in range(10)
        ],
        "workloads": [
            {"name": f"w{i:04d}", "tier": tiers[i % 4], "repository": f"r{i % 10}",
             "postgres": {"primary": {"port": 5432}, "pgdata": f"/srv/pg/{i}"},
             "filestore": {"path": f"/srv/fs/{i}"}}
            for i in range(count)
        ],
    }  # fmt: skip
    path = root / "drd.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def fill_catalog(estate: object, count: int) -> None:
    now = datetime.now(UTC)
    with open_configured(estate.config) as catalog:  # type: ignore[attr-defined]
        for i in range(count):
            name = f"w{i:04d}"
            for day in range(7):
                stop = now - timedelta(days=day, hours=1)
                kind = "full" if day == 6 else "incr"
                catalog.record_backup(BackupRecord(
                    workload=name, stanza=name, repository=f"r{i % 10}",
                    label=f"{stop:%Y%m%d-%H%M%S}{kind[0].upper()}", type=kind,
                    started_at=stop - timedelta(minutes=5), stopped_at=stop))  # fmt: skip
                run = catalog.start_run("backup", name, {"requested_type": kind})
                catalog.finish_run(run, "succeeded")
            catalog.finish_run(catalog.start_run("retention", name), "succeeded")
            catalog.record_snapshot(SnapshotRecord(
                id=f"{i:064x}", workload=name, repository=f"r{i % 10}",
                created_at=now - timedelta(minutes=30), files=1000, bytes=10**8,
                added_bytes=10**6))  # fmt: skip
            catalog.record_drill(DrillRecord(
                workload=name, t0=now - timedelta(hours=5), started_at=now - timedelta(hours=5),
                finished_at=now - timedelta(hours=5) + timedelta(minutes=4), status="succeeded",
                measured_rpo_seconds=30.0, measured_rto_seconds=240.0, phases={}, verdict="pass",
                details={}))  # fmt: skip


def stub(job: JobSpec, cancel: threading.Event) -> None:
    """The runner boundary: a job that succeeds instantly."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workloads", type=int, default=1000)
    args = parser.parse_args()
    log.configure("error")
    os.environ["DRD_BENCH_PASSPHRASE"] = "bench-passphrase-not-secret"  # noqa: S105 - unused
    with tempfile.TemporaryDirectory(prefix="drd-bench-daemon-") as tmp:
        root = Path(tmp)
        estate = load(write_estate(root, args.workloads))
        started = time.perf_counter()
        fill_catalog(estate, args.workloads)
        print(f"estate: {args.workloads} workloads; catalog filled in "
              f"{time.perf_counter() - started:.1f}s")  # fmt: skip

        publish_thresholds(estate)  # at start and on reload only
        with open_configured(estate.config) as catalog:
            scheduler = Scheduler(stub, max_concurrent=4, max_per_repository=2,
                                  jitter=timedelta(seconds=30))  # fmt: skip
            cpu0, wall0 = time.process_time(), time.perf_counter()
            jobs = jobs_for(estate, retention_cron="30 4 * * *", job_timeout=timedelta(hours=6))
            due = due_jobs(jobs, LastRuns.from_catalog(catalog, jobs))
            results = scheduler.run_once(due)
            publish_from_catalog(estate, catalog)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            print(f"reconcile pass: {len(jobs)} jobs, {len(due)} due and run (stubbed), "
                  f"{sum(results.values())} ok; CPU {cpu:.3f}s (target < 0.5 s), "
                  f"wall {wall:.3f}s")  # fmt: skip

            scheduler.configure(jobs)
            scheduler.start(paused=True)
            rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"daemon process with {len(jobs)} scheduled jobs: peak RSS {rss_mb:.0f} MB "
                  "(target < 200 MB)")  # fmt: skip
            scheduler.stop(timedelta(seconds=1))


if __name__ == "__main__":
    main()
