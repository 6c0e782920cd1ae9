"""``drd retention``: what the tiers' keep rules keep and delete, shown before it is done."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from drd.catalog import open_configured
from drd.cli.context import state
from drd.cli.db_cmd import actor
from drd.cli.output import OutputFormat, write_json
from drd.retention import service

app = typer.Typer(help="Retention by tier: GFS keep rules, pruning, Object Lock awareness.")


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


def _echo_plan(doc: dict[str, Any]) -> None:
    for item in doc["workloads"]:
        typer.echo(f"{item['workload']} (tier {item['tier']}, repository {item['repository']})")
        for problem in item["disagreements"]:
            typer.echo(f"  ! catalog and repository disagree: {problem}")
        db = item["database"]
        if db is not None:
            expired = set(db["expired"])
            typer.echo(
                f"  database: keep {len(db['kept'])} backup set(s), expire {len(expired)}, "
                f"locked {len(db['locked'])}; point-in-time recovery from "
                f"{db['window_start'] or '-'} to the newest archived WAL"
            )
            for backup in db["kept"]:
                reasons = ", ".join(backup["reasons"])
                typer.echo(f"    keep    {backup['label']:<26} {backup['type']:<4} {reasons}")
            for label in db["expired"]:
                typer.echo(f"    expire  {label}")
            for backup in db["locked"]:
                typer.echo(f"    locked  {backup['label']:<26} {', '.join(backup['reasons'])}")
        files = item["filestore"]
        if files is not None:
            typer.echo(
                f"  filestore: keep {len(files['kept'])} snapshot(s), forget "
                f"{len(files['forget'])}; restorable from {files['window_start'] or '-'}"
            )
            for snap in files["kept"]:
                typer.echo(f"    keep    {snap['id'][:12]}  {', '.join(snap['reasons'])}")
            for snapshot_id in files["forget"]:
                typer.echo(f"    forget  {snapshot_id[:12]}")
    for repository, prune in doc["prune"].items():
        typer.echo(
            f"{repository}: prune deletes {len(prune['delete_packs'])} pack(s), repacks "
            f"{len(prune['repack_packs'])}, frees {_size(prune['bytes_freed'])}; "
            f"{len(prune['kept_for_grace'])} unreferenced pack(s) kept for the grace period"
        )
        for locked in prune["locked"]:
            typer.echo(f"    locked  {locked}")


@app.command("plan")
def plan_cmd(
    ctx: typer.Context,
    workload: Annotated[str | None, typer.Argument(help="workload name; default: all")] = None,
) -> None:
    """Per workload and kind: what is kept (with every rule that keeps it), what would be
    deleted, what is locked, and the recovery window that remains. Changes nothing."""
    st = state(ctx)
    estate = st.estate()
    with open_configured(estate.config) as catalog:
        doc = service.plan(estate, catalog, workload).as_dict()
    if st.output is OutputFormat.json:
        write_json(doc)
    else:
        _echo_plan(doc)


@app.command("apply")
def apply_cmd(
    ctx: typer.Context,
    workload: Annotated[str | None, typer.Argument(help="workload name; default: all")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="check and show the plan, delete nothing")
    ] = False,
) -> None:
    """Expire, forget and prune what the plan deletes; one audit entry per deletion.

    Refused (exit 10) while the catalog and a repository disagree: run `drd catalog
    rebuild` first."""
    st = state(ctx)
    estate = st.estate()
    with open_configured(estate.config) as catalog:
        report = service.apply(estate, catalog, workload, dry_run=dry_run, actor=actor())
    if st.output is OutputFormat.json:
        write_json(report)
        return
    _echo_plan(report["plan"])
    if dry_run:
        typer.echo("dry run: nothing deleted")
        return
    typer.echo(
        f"deleted {len(report['deleted'])} item(s); extended {report['locks_extended']} lock(s)"
    )
    for item in report["deleted"]:
        typer.echo(f"  {item['kind']:<8} {item['subject']}/{item['key']}")
