"""A drd restore drill vs. the same restore done by hand, on the same backup, one run.

hand:  pgbackrest restore (--type=default, --archive-mode=off) into a scratch dir,
       own port and socket, pg_ctl start, wait until recovery ends
drd:   drd drill run WORKLOAD (local sandbox: the same restore + verification,
       heartbeat RPO, catalog and repository records)
Then the same with a filestore: the drill restores database and filestore in parallel,
so the target is drill <= 1.2 x max(hand db restore, drd snapshot restore alone).

    .venv/bin/python bench/drill_overhead.py [--rows 2000000] [--files 4000]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

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


def timed(argv: list[str], **kw: object) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]
    return time.perf_counter() - started


def hand_restore(scratch: Scratch, cfg_path: Path, stanza: str, os_user: str, bin_dir: Path) -> float:
    target = PgCluster.allocate(scratch, f"hand-{free_port()}")
    started = time.perf_counter()
    subprocess.run(
        [*as_user_prefix(os_user), "pgbackrest", f"--config={cfg_path}", f"--stanza={stanza}",
         f"--pg1-path={target.data_dir}", "--archive-mode=off", "--type=default", "restore"],
        check=True, stdout=subprocess.DEVNULL, cwd="/",
    )
    target.configure({})
    target.start()
    target.wait_out_of_recovery()
    elapsed = time.perf_counter() - started
    target.stop(mode="immediate")
    shutil.rmtree(target.root, ignore_errors=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--files", type=int, default=4000, help="filestore files (~50 KB each)")
    args = parser.parse_args()
    log.configure("warning")
    scratch = Scratch(prefix="drd-bench-drill-")
    try:
        builder = EstateBuilder(scratch, name="bench")
        cluster = PgCluster.allocate(scratch, "bench")
        filestore = builder.root / "filestore"
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "snapshot_vs_restic.py"), "--generate", str(filestore),
             "--files", str(args.files), "--scale", "1.0"],
            check=True,
        )
        repo = builder.filesystem_repo()
        builder.workload("db", cluster, repo)
        builder.workload("full", cluster, repo, filestore=filestore)
        builder.workloads[-1]["postgres"]["stanza"] = "db"  # same database, same backups
        config = builder.write()
        estate = builder.load()
        cfg, pgbr = start_protected(estate, "db", cluster)
        cluster.execute(f"CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, {args.rows}) g")
        primary = estate.config.workload("db").postgres.primary
        write_heartbeat(primary)
        pgbr.backup("full")
        write_heartbeat(primary)
        cluster.switch_wal_and_wait_archived()
        size = cluster.scalar("SELECT pg_size_pretty(pg_database_size('postgres'))")
        drd = [sys.executable, "-m", "drd", "--config", str(config)]

        hand = hand_restore(scratch, cfg.path, cfg.stanza, cfg.os_user, cluster.bin_dir)
        drill_db = timed([*drd, "drill", "run", "db", "--sandbox", "local"])
        print(f"database {size}: hand restore+start {hand:.2f}s, drd drill {drill_db:.2f}s, "
              f"ratio {drill_db / hand:.2f} (target <= 1.2)")

        init_repository(open_store(estate.config.repository(repo)), PassphraseWrapper(builder.passphrase))
        subprocess.run([*drd, "snapshot", "create", "full"], check=True, stdout=subprocess.DEVNULL)
        write_heartbeat(primary)
        cluster.switch_wal_and_wait_archived()
        snap_id = subprocess.run([*drd, "-o", "json", "snapshot", "list", "full"], check=True,
                                 capture_output=True, text=True).stdout
        import json  # noqa: PLC0415

        newest = json.loads(snap_id)[-1]["id"]
        files_alone = timed([*drd, "snapshot", "restore", newest, "--target", str(scratch.path / "fs-alone")])
        drill_full = timed([*drd, "drill", "run", "full", "--sandbox", "local"])
        bound = max(hand, files_alone)
        print(f"with filestore ({args.files} files): db alone {hand:.2f}s, filestore alone "
              f"{files_alone:.2f}s, drill {drill_full:.2f}s, ratio to the max {drill_full / bound:.2f} "
              "(target <= 1.2)")
        cluster.stop()
    finally:
        REGISTRY.kill_all()
        scratch.cleanup()


if __name__ == "__main__":
    main()
