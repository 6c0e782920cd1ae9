"""drd's added wall time per backup vs. running the same `pgbackrest backup` by hand.

Same cluster, same repository, same data, one run: alternates
  hand: runuser -u postgres -- pgbackrest --config=F --stanza=S --type=T backup
  drd:  python -m drd --config C backup db W --type T
for full and incr backups, and prints medians, the difference and the ratio. drd's
extra work per backup: Python start-up, config load and validation, regenerating the
pgBackRest config, `pgbackrest info` before and after (two extra pgBackRest runs),
catalog writes.

Usage (as root, after `make test` installed everything):
    .venv/bin/python bench/backup_overhead.py [--rows 2000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drd import log  # noqa: E402
from drd.command import as_user_prefix  # noqa: E402
from drd.testing import REGISTRY, PgCluster, Scratch  # noqa: E402
from drd.testing.estate import EstateBuilder, start_protected  # noqa: E402


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, cwd="/")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows in the test table (~70 B each)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    log.configure("warning")
    scratch = Scratch(prefix="drd-bench-")
    try:
        builder = EstateBuilder(scratch, name="bench")
        cluster = PgCluster.allocate(scratch, "bench")
        builder.workload("bench", cluster, builder.filesystem_repo())
        estate = builder.load()
        cfg, pgbr = start_protected(estate, "bench", cluster)
        cluster.execute(
            f"CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, {args.rows}) g"
        )
        size = cluster.scalar("SELECT pg_size_pretty(pg_database_size('postgres'))")
        env = dict(os.environ)
        hand_base = [*as_user_prefix(cfg.os_user), "pgbackrest", f"--config={cfg.path}", f"--stanza={cfg.stanza}"]
        drd_base = [sys.executable, "-m", "drd", "--config", str(builder.root / "drd.yaml"), "backup", "db", "bench"]
        print(f"database size {size}; pgBackRest process-max 2, zstd, aes-256-cbc, posix repository")
        print(f"{'type':<5} {'hand (s)':>9} {'drd (s)':>9} {'added (s)':>10} {'ratio':>6}")
        for kind in ("full", "incr"):
            hand, drd = [], []
            for _ in range(args.rounds):
                cluster.execute(f"UPDATE t SET v = md5(v) WHERE id % 50 = {len(hand)}")
                hand.append(timed([*hand_base, f"--type={kind}", "backup"], env))
                cluster.execute(f"UPDATE t SET v = md5(v) WHERE id % 50 = {len(drd) + 25}")
                drd.append(timed([*drd_base, "--type", kind], env))
            h, d = statistics.median(hand), statistics.median(drd)
            print(f"{kind:<5} {h:>9.2f} {d:>9.2f} {d - h:>10.2f} {d / h:>6.2f}")
        cluster.stop()
    finally:
        REGISTRY.kill_all()
        scratch.cleanup()


if __name__ == "__main__":
    main()
