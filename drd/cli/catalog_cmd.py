"""``drd catalog``: where the catalog is, its schema, the audit chain's integrity, and
rebuilding it from the repositories (the catalog is an index; the repositories are the
truth)."""

from __future__ import annotations

from typing import Annotated

import typer

from drd.catalog import open_configured
from drd.cli.context import state
from drd.cli.output import OutputFormat, write_json
from drd.errors import ChecksFailedError

app = typer.Typer(help="Inspect the catalog and verify its audit log.")


@app.command("info")
def info(ctx: typer.Context) -> None:
    """Backend, location (no password), schema version and audit log length."""
    st = state(ctx)
    estate = st.estate()
    with open_configured(estate.config) as catalog:
        entries = catalog.audit_entries()
        data = {
            "backend": catalog.backend,
            "location": catalog.location,
            "schema_version": catalog.schema_version(),
            "audit_entries": len(entries),
            "last_audit_hash": entries[-1].hash if entries else None,
        }
    if st.output is OutputFormat.json:
        write_json(data)
    else:
        for key, value in data.items():
            typer.echo(f"{key.replace('_', ' ')}: {value if value is not None else '-'}")


@app.command("verify-audit")
def verify_audit(ctx: typer.Context) -> None:
    """Recompute the audit log's hash chain; exit 3 naming the first broken entry."""
    st = state(ctx)
    estate = st.estate()
    with open_configured(estate.config) as catalog:
        count = catalog.verify_audit_chain()
    if st.output is OutputFormat.json:
        write_json({"intact": True, "entries": count})
    else:
        typer.echo(f"audit chain intact: {count} entries verified")


@app.command("rebuild")
def rebuild(
    ctx: typer.Context,
    repository: Annotated[
        str | None, typer.Option("--repository", help="only this repository; default: all")
    ] = None,
) -> None:
    """Recreate the catalog's backups, snapshots and drills from the repositories alone.

    Idempotent; one audit entry. Exit 11 when some object exists but cannot be read (its
    row is left as it was and named)."""
    from drd.catalog.rebuild import rebuild_catalog  # noqa: PLC0415 - pulls the storage stack
    from drd.cli.db_cmd import actor  # noqa: PLC0415

    st = state(ctx)
    estate = st.estate()
    with open_configured(estate.config) as catalog:
        report = rebuild_catalog(estate, catalog, repository=repository, actor=actor())
    if st.output is OutputFormat.json:
        write_json(report.as_dict())
    else:
        typer.echo(f"rebuilt from {', '.join(report.repositories)}")
        for kind in ("backups", "snapshots", "drills"):
            counts = getattr(report, kind)
            typer.echo(
                f"  {kind}: {counts.added} added, {counts.updated} updated, "
                f"{counts.removed} removed, {counts.unchanged} unchanged"
                + (f", {counts.orphaned} kept without their object" if counts.orphaned else "")
            )
        for problem in report.problems:
            typer.echo(f"  ! {problem}")
    if report.problems:
        raise ChecksFailedError(
            f"catalog rebuilt, but {len(report.problems)} object(s) could not be read"
        )
