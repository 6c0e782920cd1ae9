"""``make demo``: a local estate on the embedded default, protected end to end by drd.

Starts a real PostgreSQL 15 cluster (harness) whose archiving is *not* set up, writes a
config derived from ``examples/local/drd.yaml`` for it, then runs the real ``drd``
commands an operator would: ``db setup`` (drift report, then ``--apply``), a heartbeat,
``backup db`` (an incr with no prior full becomes a full), ``check`` and ``status``;
then fills an Odoo-style database and filestore, snapshots the filestore twice (the
second reads only what changed), restores it byte-identical, verifies the repository,
and runs a restore drill that neutralizes the copy, checks every attachment and
measures RPO and RTO.
Then ``drd daemon`` runs the estate on a demo tier with minute-scale schedules
(``examples/local/demo-tier.yaml``): it catches up with what is due - a backup, a
snapshot, retention, then a restore drill that neutralizes the copy, checks every
attachment and measures RPO and RTO - while serving its status page. The demo prints
the drill's measurements against the tier's objectives, the status page's verdicts
and the retention plan, then stops the daemon with SIGTERM.
Everything it starts is stopped at the end; ``DRD_DEMO_KEEP=1`` keeps the scratch
directory (config, catalog, repository, daemon log) for a look around.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from drd import log
from drd.testing import PgCluster, Scratch
from drd.testing.odoo import create_odoo_schema, populate
from drd.testing.processes import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "local" / "drd.yaml"
DEMO_TIER = ROOT / "examples" / "local" / "demo-tier.yaml"
DAEMON_WAIT = 240.0  # seconds for the daemon's first drill (it usually takes ~30)
PASSPHRASE_ENV = "DRD_LOCAL_PASSPHRASE"  # noqa: S105 - the name of a variable, not a secret


def _say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _drd(config: Path, *args: str, env: dict[str, str], ok: tuple[int, ...] = (0,)) -> int:
    print(f"$ drd {' '.join(args)}", flush=True)
    code = subprocess.run(
        [sys.executable, "-m", "drd", "--config", str(config), *args], env=env, check=False
    ).returncode
    if code not in ok:
        raise SystemExit(f"demo: `drd {' '.join(args)}` exited {code}")
    return code


def _drd_json(config: Path, *args: str, env: dict[str, str]) -> Any:
    print(f"$ drd -o json {' '.join(args)}", flush=True)
    result = subprocess.run(
        [sys.executable, "-m", "drd", "--config", str(config), "-o", "json", *args],
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(
            f"demo: `drd {' '.join(args)}` exited {result.returncode}: {result.stderr}"
        )
    return json.loads(result.stdout)


def _fill_filestore(root: Path) -> None:
    """An Odoo-like filestore: files named by the SHA-1 of their content."""
    rng = random.Random(2026)  # noqa: S311 - demo data
    for i in range(300):
        data = rng.randbytes(rng.randint(1_000, 60_000)) if i % 3 else (b"invoice line\n" * (i + 1))
        sha = hashlib.sha1(data).hexdigest()  # noqa: S324 - Odoo's naming, not security
        (root / sha[:2]).mkdir(exist_ok=True)
        (root / sha[:2] / sha).write_bytes(data)


def _fill_filestore_more(root: Path) -> None:
    (root / "ff").mkdir(exist_ok=True)
    data = b"a new attachment after the first snapshot\n" * 50
    (root / "ff" / hashlib.sha1(data).hexdigest()).write_bytes(data)  # noqa: S324


def _same_tree(a: Path, b: Path) -> bool:
    def files(root: Path) -> dict[str, bytes]:
        return {
            p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
        }

    return files(a) == files(b)


def _demo_config(scratch: Scratch, cluster: PgCluster) -> Path:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    data["state_dir"] = str(scratch.path / "state")
    tiers = scratch.dir("tiers", mode=0o755)
    for tier in (ROOT / "tiers").glob("*.yaml"):
        (tiers / tier.name).write_text(tier.read_text())
    (tiers / "demo.yaml").write_text(DEMO_TIER.read_text())
    data["tiers_dir"] = str(tiers)
    data["daemon"] = {"listen_port": free_port(), "jitter": "0s", "shutdown_grace": "2m"}
    data["repositories"][0]["path"] = str(scratch.path / "repository")
    workload = data["workloads"][0]
    workload["tier"] = "demo"
    workload["postgres"]["primary"]["port"] = cluster.port
    workload["postgres"]["pgdata"] = str(cluster.data_dir)
    workload["postgres"]["socket_dir"] = str(cluster.socket_dir)
    workload["postgres"]["os_user"] = cluster.os_user
    workload["filestore"]["path"] = str(scratch.path / "filestore")
    path = scratch.path / "drd.yaml"
    header = f"# Generated by `make demo` from {EXAMPLE.relative_to(ROOT)}\n"
    path.write_text(header + yaml.safe_dump(data, sort_keys=False))
    return path


def _filestore_and_drill(
    config: Path, cluster: PgCluster, scratch: Scratch, env: dict[str, str]
) -> None:
    """Snapshots of an Odoo-like filestore, a verified restore, then a restore drill."""
    filestore = scratch.dir("filestore", mode=0o755)
    _fill_filestore(filestore)
    create_odoo_schema(cluster, "acme")
    populate(cluster, "acme", filestore, attachments=40)  # ir_attachment rows + their files
    count = sum(1 for _ in filestore.rglob("*/*"))
    _say(f"filestore: {count} Odoo-style files; encrypted, deduplicated snapshots")
    _drd(config, "repo", "init", "local", env=env)
    _drd(config, "snapshot", "create", "acme-erp", "--tag", "demo", env=env)
    _fill_filestore_more(filestore)
    created = _drd_json(config, "snapshot", "create", "acme-erp", env=env)
    print(
        f"second snapshot {created['snapshot_id'][:8]}: read {created['files_read']} changed "
        f"files of {created['files']}, {created['bytes_new']} new bytes"
    )
    _drd(config, "snapshot", "list", env=env)
    _say("restore the newest snapshot into a scratch directory, then verify the repository")
    target = scratch.path / "restored"
    _drd(
        config,
        "snapshot",
        "restore",
        created["snapshot_id"][:12],
        "--target",
        str(target),
        env=env,
    )
    identical = _same_tree(filestore, target)
    print(f"restored tree identical to the filestore: {identical}")
    if not identical:
        raise SystemExit("demo: restored filestore differs")
    _drd(config, "snapshot", "verify", "--read-data", env=env)

    _run_daemon(config, scratch, env)

    _say("retention: what the tier's keep rules keep (and why), expire and prune: the plan now")
    _drd(config, "retention", "plan", env=env)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - 127.0.0.1
        return str(response.read().decode())


def _run_daemon(config: Path, scratch: Scratch, env: dict[str, str]) -> None:
    """The daemon on the demo tier until its first drill is recorded, then SIGTERM."""
    port = yaml.safe_load(config.read_text())["daemon"]["listen_port"]
    _say(
        "the daemon: demo tier (incr backup and snapshot every minute, heartbeat every 2 s, "
        "drill every 2 minutes); on start it catches up with everything due"
    )
    print(f"$ drd daemon    (log: {scratch.path / 'daemon.log'})", flush=True)
    with (scratch.path / "daemon.log").open("w") as daemon_log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "drd", "--config", str(config), "daemon"],
            env=env,
            stdout=daemon_log,
            stderr=subprocess.STDOUT,
        )
        try:
            drills = wait_until(
                lambda: _drills(config, env),
                timeout=DAEMON_WAIT,
                interval=2.0,
                what="the daemon's first restore drill",
            )
            print(f"status page: http://127.0.0.1:{port}/  (JSON: /status.json, /metrics)")
            view = json.loads(_get(f"http://127.0.0.1:{port}/status.json"))
            print(f"  as {view['role']}: overall {view['overall']}")
            for row in view.get("workloads", []):
                verdicts = ", ".join(
                    f"{name} {row[name]['label']} ({row[name]['text']})"
                    for name in ("rpo", "backup", "snapshot", "drill", "checks")
                    if name in row
                )
                print(f"  {row['workload']}: {row['overall']['label']}; {verdicts}")
            _print_drill(_drd_json(config, "drill", "show", str(drills[0]["id"]), env=env))
            metrics = _get(f"http://127.0.0.1:{port}/metrics")
            for line in metrics.splitlines():
                if line.startswith(("drd_drill_rpo_seconds", "drd_drill_verdict")):
                    print(f"  {line}")
        finally:
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(timeout=180)
        print(f"daemon stopped by SIGTERM (exit {code}) after finishing its running jobs")
        if code != 0:
            raise SystemExit(f"demo: the daemon exited {code}; see {scratch.path / 'daemon.log'}")


def _drills(config: Path, env: dict[str, str]) -> list[dict[str, Any]] | None:
    result = subprocess.run(
        [sys.executable, "-m", "drd", "--config", str(config), "-o", "json", "drill", "list"],
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    found = json.loads(result.stdout) if result.returncode == 0 and result.stdout else []
    return found or None


def _print_drill(detail: dict[str, Any]) -> None:
    rpo, rto = detail.get("rpo_seconds"), detail.get("rto_seconds")
    if rpo is None or rto is None:
        print(f"drill {detail.get('drill_id')}: {detail.get('verdict')} {detail.get('reasons')}")
        return
    print(
        f"drill {detail['drill_id']} of {detail['workload']} by the daemon: "
        f"{str(detail['verdict']).upper()}; RPO {rpo:.1f}s (objective "
        f"{detail['rpo_objective_seconds']:.0f}s), RTO {rto:.1f}s (objective "
        f"{detail['rto_objective_seconds']:.0f}s)"
    )
    phases = ", ".join(f"{k} {v:.2f}s" for k, v in detail.get("phases", {}).items())
    print(f"  phases: {phases}")
    for check in detail.get("checks", []):
        print(f"  check {check.get('name')}: {'ok' if check.get('ok') else 'FAILED'}")


def run_demo(env: dict[str, str], scratch: Scratch) -> None:
    _say(
        "a local PostgreSQL 15 server (harness: initdb as postgres, 127.0.0.1), "
        "archiving not set up"
    )
    cluster = PgCluster.allocate(scratch, "acme")
    try:
        # archive_mode needs a restart to change; the archive_command is wrong on purpose.
        cluster.initdb(archive_command="/bin/false", settings={"archive_timeout": "1h"})
        cluster.start()
        cluster.execute("CREATE DATABASE acme")
        cluster.execute(
            "CREATE TABLE sale_order (id serial PRIMARY KEY, name text, amount numeric)",
            dbname="acme",
        )
        cluster.execute(
            "INSERT INTO sale_order (name, amount)"
            " SELECT 'SO' || g, g * 10 FROM generate_series(1, 1000) g",
            dbname="acme",
        )
        config = _demo_config(scratch, cluster)
        print(f"PostgreSQL on 127.0.0.1:{cluster.port}; config {config}")

        _say("validate the config")
        _drd(config, "config", "validate", env=env)
        _say("what drd would change (no --apply: report only)")
        _drd(config, "db", "setup", "acme-erp", env=env)
        _say(
            "apply: archive settings via ALTER SYSTEM + reload, stanza created, audit entry written"
        )
        _drd(config, "db", "setup", "acme-erp", "--apply", env=env)
        _say("a heartbeat row (the clock restore drills read back), then a backup")
        _drd(config, "heartbeat", "acme-erp", "--once", env=env)
        _drd(config, "backup", "db", "acme-erp", "--type", "incr", env=env)
        cluster.execute("SELECT 1")
        cluster.switch_wal_and_wait_archived()
        _say("health checks (forces a WAL switch through pgBackRest)")
        _drd(config, "check", "acme-erp", env=env)
        _say("drd status")
        _drd(config, "status", env=env)

        _filestore_and_drill(config, cluster, scratch, env)
    finally:
        cluster.stop()


def main() -> int:
    log.configure("warning")
    env = dict(os.environ)
    env.setdefault(PASSPHRASE_ENV, "demo-passphrase-change-me")
    scratch = Scratch(prefix="drd-demo-")
    try:
        run_demo(env, scratch)
    finally:
        if os.environ.get("DRD_DEMO_KEEP"):
            print(f"\nkept {scratch.path} (DRD_DEMO_KEEP is set); PostgreSQL has been stopped")
        else:
            scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
