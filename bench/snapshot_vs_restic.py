"""drd filestore snapshots vs. restic on the same synthetic Odoo filestore, one run.

Generates a deterministic filestore (default 20,000 files, about 1 GiB: sizes mostly
10 KB-2 MB, a few of tens of MB; ~70% incompressible like JPEG/PDF, ~30% text), then
for restic and drd, each on a local repository:
  initial snapshot, incremental after +1% new and -0.5% deleted files, full restore,
  repository size, peak RSS (per process, from wait4).
Prints drd/restic ratios. Needs restic (`apt-get install restic`).

    .venv/bin/python bench/snapshot_vs_restic.py [--files 20000] [--scale 1.0] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench-password-not-secret"  # noqa: S105

DRD_SCRIPT = """
import sys
from pathlib import Path
from drd.snapshot.keys import PassphraseWrapper, init_repository, open_repository
from drd.snapshot.repository import Repository
from drd.storage.filesystem import FilesystemStore
action, repo_dir, path = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
store = FilesystemStore(repo_dir)
if action == "init":
    init_repository(store, PassphraseWrapper({pw!r}))
    raise SystemExit(0)
config, keys, _ = open_repository(store, [PassphraseWrapper({pw!r})])
repo = Repository(store, config, keys)
if action == "backup":
    from drd.snapshot.create import create_snapshot
    create_snapshot(repo, path, workload="bench", tier="tier-1")
else:
    from drd.snapshot.restore import restore_snapshot
    restore_snapshot(repo, repo.snapshots("bench")[-1].id, path)
""".format(pw=PASSWORD)


def generate(root: Path, files: int, scale: float, seed: int = 42) -> int:
    """Odoo-like: 98% small (8-80 KB), 2% medium (100 KB-2 MB), 1 in 2,500 big (15-35 MB);
    70% incompressible (random, like JPEG/PDF), 30% text. ~1 GiB for 20,000 files."""
    rng = random.Random(seed)  # noqa: S311 - reproducible data
    words = [b"invoice", b"order", b"customer", b"total", b"line", b"qty", b"EUR", b"\n"]
    total = 0
    for i in range(files):
        if i % 2500 == 2499:
            size = int(rng.uniform(15e6, 35e6) * scale)
        elif rng.random() < 0.02:
            size = int(100_000 * (20 ** rng.random()) * scale)
        else:
            size = int(8_000 * (10 ** rng.random()) * scale)
        if rng.random() < 0.7:
            data = rng.randbytes(size)
        else:
            sentence = b" ".join(rng.choice(words) for _ in range(64))
            data = (sentence * (size // len(sentence) + 1))[:size]
        sha = hashlib.sha1(data).hexdigest()  # noqa: S324 - Odoo's naming, not security
        path = root / sha[:2] / sha
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        total += len(data)
    return total


def mutate(root: Path, files: int, seed: int = 43) -> None:
    rng = random.Random(seed)
    existing = sorted(p for p in root.rglob("*") if p.is_file())
    for victim in rng.sample(existing, max(1, len(existing) // 200)):  # -0.5%
        victim.unlink()
    generate(root, max(1, files // 100), 1.0, seed=seed)  # +1% new files


def run(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (MiB) of one process."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return elapsed, usage.ru_maxrss // 1024


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--scale", type=float, default=1.0, help="size multiplier")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mutate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(args.generate, args.files, args.scale)
        return
    if args.mutate:
        mutate(args.mutate, args.files)
        return
    if not shutil.which("restic"):
        raise SystemExit("restic not found: apt-get install restic")
    work = Path(tempfile.mkdtemp(prefix="drd-bench-snap-"))
    env = {**os.environ, "RESTIC_PASSWORD": PASSWORD, "PYTHONPATH": str(ROOT)}
    try:
        source = work / "filestore"
        # Generate in a child: the peak RSS wait4 reports includes what a forked child
        # inherited from this process, so this process must stay small.
        subprocess.run(
            [sys.executable, __file__, "--generate", str(source), "--files", str(args.files),
             "--scale", str(args.scale)],
            check=True,
        )
        size = du(source)
        print(f"filestore: {args.files} files, {size / 2**30:.2f} GiB in {source}")
        restic_repo, drd_repo = work / "restic-repo", work / "drd-repo"
        restic = ["restic", "--repo", str(restic_repo), "--quiet"]
        drd = [sys.executable, "-c", DRD_SCRIPT]
        subprocess.run([*restic, "init"], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run([*drd, "init", str(drd_repo), "-"], env=env, check=True)
        rows = []
        for label, r_cmd, d_cmd in (
            ("initial", [*restic, "backup", str(source)], [*drd, "backup", str(drd_repo), str(source)]),
        ):
            rows.append((label, run(r_cmd, env), run(d_cmd, env)))
        subprocess.run(
            [sys.executable, __file__, "--mutate", str(source), "--files", str(args.files)], check=True
        )
        rows.append(
            (
                "incremental",
                run([*restic, "backup", str(source)], env),
                run([*drd, "backup", str(drd_repo), str(source)], env),
            )
        )
        r_target, d_target = work / "restore-restic", work / "restore-drd"
        rows.append(
            (
                "restore",
                run([*restic, "restore", "latest", "--target", str(r_target)], env),
                run([*drd, "restore", str(drd_repo), str(d_target)], env),
            )
        )
        print(f"{'step':<12} {'restic s':>9} {'drd s':>8} {'ratio':>6}   {'restic RSS':>10} {'drd RSS':>8} {'ratio':>6}")
        for label, (rt, rm), (dt, dm) in rows:
            print(f"{label:<12} {rt:>9.2f} {dt:>8.2f} {dt / rt:>6.2f}   {rm:>8}MiB {dm:>6}MiB {dm / rm:>6.2f}")
        rs, ds = du(restic_repo), du(drd_repo)
        print(f"{'repo size':<12} {rs / 2**20:>8.0f}M {ds / 2**20:>7.0f}M {ds / rs:>6.2f}")
        restored = d_target
        same = subprocess.run(["diff", "-r", "-q", str(source), str(restored)], check=False).returncode == 0
        print(f"drd restore identical to source: {same}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
