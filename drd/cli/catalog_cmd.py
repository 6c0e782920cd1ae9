"""``drd catalog``: where the catalog is, its schema, and the audit chain's integrity."""

from __future__ import annotations

import typer

from drd.catalog import open_configured
from drd.cli.context import state
from drd.cli.output import OutputFormat, write_json

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
