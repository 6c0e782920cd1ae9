"""A drd restore drill vs. the same restore done by hand, on the same backup.

hand:  pgbackrest restore (--type=default, --archive-mode=off) into a scratch dir,
       own port and socket, pg_ctl start, wait until recovery ends
drd:   drd drill run WORKLOAD (local sandbox: the same restore + verification,
       heartbeat RPO, catalog and repository records)
Target: drd <= 1.2 x hand for the database alone. After one warm-up pair (not
counted: the first restore after the backup is often an outlier), hand and drd runs
alternate (and which goes first alternates), --repeat times (default 3; this bench
used to do one run), and the medians are compared: on a shared machine a single run
says little. The drill's own phases (from its JSON result) show where drd's time
goes; drd's own time is its wall time minus db_restore and wal_replay (the work the
hand run does too):

    before the drill clock   python start, imports, config load, catalog run record
    inside the RTO           provision (pgbackrest info + version, sandbox dirs),
                             verification (readiness, heartbeat, amcheck, custom checks)
    after the verdict        teardown (stop the copy, remove it; not part of the RTO)
                             and recording (repository object, catalog, metrics, exit)

Then the same with a filestore (skipped with --files 0): the drill restores database
and filestore in parallel, so the target is drill <= 1.2 x max(hand db restore,
drd snapshot restore alone).

    .venv/bin/python bench/drill_overhead.py [--rows 2000000] [--files 4000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drd import log  # noqa: E402
from drd.command import as_user_prefix  # noqa: E402
from drd.postgres.heartbeat import write_heartbeat  # noqa: E402
from drd.snapshot.keys import PassphraseWrapper, init_repository  # noqa: E402
from drd.storage.factory import open_store  # noqa: E402
from drd.testing import REGISTRY, PgCluster, Scratch  # noqa: E402
from drd.testing.estate import EstateBuilder, start_protected  # noqa: E402
from drd.testing.processes import free_port  # noqa: E402

# What `drd drill run` imports before it can do anything (the CLI loads a command's
# module only when it runs).
DRILL_IMPORTS = (
    "import drd.cli.app, drd.cli.drill_cmd, drd.drill.service, drd.drill.checks, drd.drill.odoo"
)


def timed(argv: list[str], **kw: object) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]
    return time.perf_counter() - started


def hand_restore(
    scratch: Scratch, cfg_path: Path, stanza: str, os_user: str
) -> dict[str, float]:
    """Seconds: total (restore + start + recovery), restore, and the cleanup after (not
    counted: a hand-run restore is left for the operator)."""
    target = PgCluster.allocate(scratch, f"hand-{free_port()}")
    started = time.perf_counter()
    subprocess.run(
        [*as_user_prefix(os_user), "pgbackrest", f"--config={cfg_path}", f"--stanza={stanza}",
         f"--pg1-path={target.data_dir}", "--archive-mode=off", "--type=default", "restore"],
        check=True, stdout=subprocess.DEVNULL, cwd="/",
    )
    restored = time.perf_counter()
    target.configure({})
    target.start()
    target.wait_out_of_recovery()
    ended = time.perf_counter()
    target.stop(mode="immediate")
    shutil.rmtree(target.root, ignore_errors=True)
    return {"total": ended - started, "restore": restored - started,
            "cleanup": time.perf_counter() - ended}


def drill(drd: list[str], workload: str) -> dict[str, Any]:
    """One `drd drill run`, its wall time and where it went (seconds)."""
    began = time.time()
    started = time.perf_counter()
    proc = subprocess.run([*drd, "-o", "json", "drill", "run", workload, "--sandbox", "local"],
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    ended = began + wall
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        sys.exit(f"drd drill run {workload} printed no result ({proc.returncode}):\n{proc.stderr}")
    if result["verdict"] != "pass":
        sys.exit(f"drill of {workload} failed: {result['reasons']}")
    phases: dict[str, float] = result["phases"]
    rto = float(result["rto_seconds"])
    teardown = float(result.get("teardown_seconds") or 0.0)
    drill_start = datetime.fromisoformat(result["started_at"]).timestamp()
    verdict_at = datetime.fromisoformat(result["finished_at"]).timestamp()
    return {
        "wall": wall,
        "rto": rto,
        "phases": phases,
        "startup": drill_start - began,
        "residual": rto - sum(phases.values()),
        "teardown": teardown,
        "recording": ended - verdict_at - teardown,
    }


def import_probe() -> dict[str, float]:
    """A bare interpreter importing what a drill run imports: seconds until the imports
    are done, and from then until the process has exited (interpreter shutdown)."""
    began = time.time()
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", f"{DRILL_IMPORTS}; import time; print(repr(time.time()))"],
        check=True, capture_output=True, text=True, cwd=ROOT,
    ).stdout
    ended = began + (time.perf_counter() - started)
    imported = float(done.strip())
    return {"imports": imported - began, "exit": ended - imported}


def med(values: list[float]) -> float:
    return statistics.median(values)


def report_db(
    size: str, rows: int, hands: list[dict[str, float]], drills: list[dict[str, Any]],
    probes: list[dict[str, float]],
) -> float:
    hand = med([h["total"] for h in hands])
    wall = med([d["wall"] for d in drills])
    pairs = zip(drills, hands, strict=True)
    runs = ", ".join(f"{d['wall']:.2f}/{h['total']:.2f}" for d, h in pairs)
    print(f"database {size} ({rows:,} rows), {len(drills)} run(s), medians:")
    print(f"  hand restore+start  {hand:5.2f}s  (pgbackrest restore "
          f"{med([h['restore'] for h in hands]):.2f}s; its cleanup, not counted, "
          f"{med([h['cleanup'] for h in hands]):.2f}s)")
    print(f"  drd drill           {wall:5.2f}s  ratio {wall / hand:.2f} (target <= 1.2); "
          f"drd/hand per run: {runs}")
    phase = {n: med([d["phases"].get(n, 0.0) for d in drills]) for n in drills[0]["phases"]}
    print(f"  drill phases (RTO {med([d['rto'] for d in drills]):.2f}s): "
          + ", ".join(f"{name} {value:.3f}s" for name, value in phase.items()))
    own = med([d["wall"] - d["phases"]["db_restore"] - d["phases"]["wal_replay"] for d in drills])
    same_work = med([d["phases"]["db_restore"] + d["phases"]["wal_replay"] for d in drills])
    startup, residual = med([d["startup"] for d in drills]), med([d["residual"] for d in drills])
    teardown = med([d["teardown"] for d in drills])
    recording = med([d["recording"] for d in drills])
    print(f"  drd - hand {wall - hand:.2f}s: drd's own time {own:.2f}s (wall minus db_restore "
          f"and wal_replay, the work the hand run does too), and {same_work - hand:+.2f}s "
          "restore + replay vs the hand run (the same work: noise, polling granularity)")
    print(f"  drd's own time {own:.2f}s:")
    imports, shutdown = med([p["imports"] for p in probes]), med([p["exit"] for p in probes])
    print(f"    before the drill clock  {startup:.3f}s  python, imports, config, catalog "
          f"(python + the drill's imports alone: {imports:.3f}s)")
    print(f"    inside the RTO          {phase.get('provision', 0.0):.3f}s provision (pgbackrest "
          f"info+version, sandbox), {phase.get('verification', 0.0):.3f}s verification, "
          f"{residual:.3f}s between phases")
    print(f"    after the verdict       {teardown:.3f}s teardown (stop + remove the copy), "
          f"{recording:.3f}s recording (repository, catalog, metrics) and exit "
          f"(interpreter shutdown with the drill's modules loaded: {shutdown:.3f}s)")
    return hand


def with_filestore(
    args: argparse.Namespace, builder: EstateBuilder, cluster: PgCluster, drd: list[str],
    hand: float,
) -> None:
    estate, scratch = builder.load(), builder.scratch
    primary = estate.config.workload("db").postgres.primary
    store = open_store(estate.config.repository(builder.repositories[0]["name"]))
    init_repository(store, PassphraseWrapper(builder.passphrase))
    subprocess.run([*drd, "snapshot", "create", "full"], check=True, stdout=subprocess.DEVNULL)
    write_heartbeat(primary)
    cluster.switch_wal_and_wait_archived()
    listed = subprocess.run([*drd, "-o", "json", "snapshot", "list", "full"], check=True,
                            capture_output=True, text=True).stdout
    newest = json.loads(listed)[-1]["id"]
    alone, full = [], []
    for n in range(args.repeat):
        target = scratch.path / f"fs-alone-{n}"
        alone.append(timed([*drd, "snapshot", "restore", newest, "--target", str(target)]))
        shutil.rmtree(target, ignore_errors=True)
        full.append(drill(drd, "full"))
    files_alone, drill_full = med(alone), med([d["wall"] for d in full])
    bound = max(hand, files_alone)
    print(f"with filestore ({args.files} files): db alone {hand:.2f}s, filestore alone "
          f"{files_alone:.2f}s, drill {drill_full:.2f}s, ratio to the max "
          f"{drill_full / bound:.2f} (target <= 1.2)")
    phases = {n: med([d["phases"].get(n, 0.0) for d in full]) for n in full[0]["phases"]}
    print("  drill phases: " + ", ".join(f"{n} {v:.3f}s" for n, v in phases.items())
        + f"; before the clock {med([d['startup'] for d in full]):.3f}s, teardown "
        f"{med([d['teardown'] for d in full]):.3f}s, recording "
        f"{med([d['recording'] for d in full]):.3f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--files", type=int, default=4000,
                        help="filestore files (~50 KB each); 0 skips the filestore comparison")
    parser.add_argument("--repeat", type=int, default=3, help="hand/drd pairs (medians reported)")
    args = parser.parse_args()
    log.configure("warning")
    scratch = Scratch(prefix="drd-bench-drill-")
    try:
        builder = EstateBuilder(scratch, name="bench")
        cluster = PgCluster.allocate(scratch, "bench")
        filestore = builder.root / "filestore"
        if args.files:
            subprocess.run(
                [sys.executable, str(ROOT / "bench" / "snapshot_vs_restic.py"), "--generate",
                 str(filestore), "--files", str(args.files), "--scale", "1.0"],
                check=True,
            )
        repo = builder.filesystem_repo()
        builder.workload("db", cluster, repo)
        if args.files:
            builder.workload("full", cluster, repo, filestore=filestore)
            builder.workloads[-1]["postgres"]["stanza"] = "db"  # same database, same backups
        config = builder.write()
        estate = builder.load()
        cfg, pgbr = start_protected(estate, "db", cluster)
        cluster.execute("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v"
                        f" FROM generate_series(1, {args.rows}) g")
        primary = estate.config.workload("db").postgres.primary
        write_heartbeat(primary)
        pgbr.backup("full")
        write_heartbeat(primary)
        cluster.switch_wal_and_wait_archived()
        size = cluster.scalar("SELECT pg_size_pretty(pg_database_size('postgres'))")
        drd = [sys.executable, "-m", "drd", "--config", str(config)]

        hand_restore(scratch, cfg.path, cfg.stanza, cfg.os_user)  # warm-up pair, not counted
        drill(drd, "db")
        hands: list[dict[str, float]] = []
        drills: list[dict[str, Any]] = []
        probes: list[dict[str, float]] = []
        for n in range(args.repeat):  # alternating which goes first
            if n % 2:
                drills.append(drill(drd, "db"))
            hands.append(hand_restore(scratch, cfg.path, cfg.stanza, cfg.os_user))
            if not n % 2:
                drills.append(drill(drd, "db"))
            probes.append(import_probe())
        hand = report_db(size, args.rows, hands, drills, probes)
        if args.files:
            with_filestore(args, builder, cluster, drd, hand)
        cluster.stop()
    finally:
        REGISTRY.kill_all()
        scratch.cleanup()


if __name__ == "__main__":
    main()
