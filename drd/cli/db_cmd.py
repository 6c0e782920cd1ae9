"""``drd db setup``, ``drd backup db``, ``drd heartbeat``, ``drd check``: database protection."""

from __future__ import annotations

import getpass
import os
import threading
from typing import Annotated

import typer

from drd import metrics
from drd.backup.db import BACKUP_TYPES, backup_db
from drd.backup.setup import setup
from drd.catalog import open_configured
from drd.check import failed_critical, run_checks
from drd.cli.context import state
from drd.cli.output import OutputFormat, write_json, write_table
from drd.errors import ChecksFailedError
from drd.postgres.heartbeat import run_heartbeat, write_heartbeat

db_app = typer.Typer(help="Prepare a workload's PostgreSQL cluster for drd (archiving, stanza).")
backup_app = typer.Typer(help="Run backups.")


def actor() -> str:
    """Who is acting, for the audit log: the invoking user behind sudo, else the login."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


@db_app.command("setup")
def db_setup(
    ctx: typer.Context,
    workload: Annotated[str, typer.Argument(help="workload name")],
    apply: Annotated[
        bool, typer.Option("--apply", help="change settings and create the stanza")
    ] = False,
) -> None:
    """Report (or with --apply, fix) archive settings and the pgBackRest stanza."""
    st = state(ctx)
    estate = st.estate()
    with open_configured(estate.config) as catalog:
        report = setup(estate, workload, catalog, apply=apply, actor=actor())
    if st.output is OutputFormat.json:
        write_json(report.as_dict())
        return
    typer.echo(f"workload {report.workload}, stanza {report.stanza}, config {report.config_path}")
    if not report.drift:
        typer.echo("settings: in line with the tier")
    for item in report.drift:
        verb = "changed" if report.applied else "would change"
        restart = " (restart required)" if item.restart_required else ""
        typer.echo(
            f"{verb} {item.setting}: {item.current!r} -> {item.desired!r}{restart}: {item.reason}"
        )
    if report.stanza_created:
        typer.echo(f"stanza {report.stanza}: created")
    elif not report.stanza_exists:
        typer.echo(f"stanza {report.stanza}: missing (would create)")
    else:
        typer.echo(f"stanza {report.stanza}: exists")
    if report.restart_required:
        typer.echo(f"restart PostgreSQL for: {', '.join(report.restart_required)}")
    if not apply and not report.in_sync:
        typer.echo(f"run `drd db setup {workload} --apply` to make these changes")


@backup_app.command("db")
def backup_database(
    ctx: typer.Context,
    workload: Annotated[str, typer.Argument(help="workload name")],
    backup_type: Annotated[str, typer.Option("--type", help="full, diff or incr")] = "incr",
) -> None:
    """Back up the workload's database with pgBackRest and record it in the catalog."""
    st = state(ctx)
    if backup_type not in BACKUP_TYPES:
        raise typer.BadParameter("must be full, diff or incr", param_hint="--type")
    estate = st.estate()
    with open_configured(estate.config) as catalog:
        outcome = backup_db(estate, workload, backup_type, catalog)
    record = outcome.record
    data = {
        "workload": outcome.workload,
        "label": record.label,
        "type": record.type,
        "requested_type": outcome.requested_type,
        "promoted_to_full": outcome.promoted_to_full,
        "started_at": record.started_at,
        "stopped_at": record.stopped_at,
        "wal_start": record.wal_start,
        "wal_stop": record.wal_stop,
        "size": record.size,
        "repo_size": record.repo_size,
        "duration_seconds": round(outcome.duration_seconds, 3),
        "run_id": outcome.run_id,
    }
    if st.output is OutputFormat.json:
        write_json(data)
        return
    if outcome.promoted_to_full:
        typer.echo(f"no prior full backup: took a full backup instead of {outcome.requested_type}")
    typer.echo(
        f"backup {record.label} ({record.type}) of {workload}: {record.size or 0} bytes, "
        f"{record.repo_size or 0} in repository, WAL {record.wal_start}..{record.wal_stop}, "
        f"{outcome.duration_seconds:.1f}s"
    )


def heartbeat(
    ctx: typer.Context,
    workload: Annotated[str, typer.Argument(help="workload name")],
    once: Annotated[bool, typer.Option("--once", help="write one heartbeat and exit")] = False,
) -> None:
    """Write heartbeat rows (the clock drills measure RPO with); --once writes one."""
    st = state(ctx)
    estate = st.estate()
    primary = estate.config.workload(workload).postgres.primary
    if once:
        beat = write_heartbeat(primary)
        metrics.record_heartbeat(workload, beat.ts)
        if st.output is OutputFormat.json:
            write_json({"workload": workload, "seq": beat.seq, "ts": beat.ts, "lsn": beat.lsn})
        else:
            typer.echo(f"heartbeat {beat.seq} at {beat.ts.isoformat()} (lsn {beat.lsn})")
        return
    interval = estate.tier_of(workload).postgres.heartbeat_interval.total_seconds()
    typer.echo(f"writing a heartbeat every {interval:g}s into {primary.describe()}; Ctrl-C to stop")
    stop = threading.Event()
    try:
        run_heartbeat(
            primary,
            interval,
            stop,
            on_beat=lambda beat: metrics.record_heartbeat(workload, beat.ts),
        )
    except KeyboardInterrupt:
        stop.set()


def check(
    ctx: typer.Context,
    workload: Annotated[str, typer.Argument(help="workload name")],
    quick: Annotated[
        bool, typer.Option("--quick", help="skip the check that forces a WAL switch")
    ] = False,
    archive_timeout: Annotated[
        float, typer.Option("--archive-timeout", help="seconds to wait for the forced WAL switch")
    ] = 60.0,
) -> None:
    """Run the health checks; exit 11 if a critical one fails."""
    st = state(ctx)
    estate = st.estate()
    estate.config.workload(workload)
    results = run_checks(estate, workload, quick=quick, archive_timeout=archive_timeout)
    failed = failed_critical(results)
    if st.output is OutputFormat.json:
        write_json(
            {"workload": workload, "ok": not failed, "checks": [r.as_dict() for r in results]}
        )
    else:
        rows = [
            {
                "check": r.name,
                "result": "ok" if r.ok else ("FAILED" if r.critical else "warning"),
                "detail": r.detail,
                "hint": r.hint,
            }
            for r in results
        ]
        write_table(rows, ("check", "result", "detail", "hint"))
    if failed:
        raise ChecksFailedError(
            f"{len(failed)} critical check(s) failed for {workload}: "
            + ", ".join(r.name for r in failed)
        )
