"""``drd status``: one row per workload, objectives against what is measured now."""

from __future__ import annotations

import typer

from drd.catalog import open_configured
from drd.cli.context import state
from drd.cli.output import OutputFormat, write_json, write_table
from drd.status import estate_status

COLUMNS = (
    "workload",
    "tier",
    "rpo",
    "rto",
    "primary",
    "primary_state",
    "archive_age",
    "archive_failures",
    "last_backup",
    "last_drill_verdict",
    "verdict",
)


def status(ctx: typer.Context) -> None:
    """Show each workload's tier, primary state, live archive age (RPO exposure) and verdict."""
    st = state(ctx)
    estate = st.estate()
    with open_configured(estate.config) as catalog:
        rows = [s.as_dict() for s in estate_status(estate, catalog)]
    if st.output is OutputFormat.json:
        write_json({"config": str(estate.path), "workloads": rows})
    else:
        write_table(rows, COLUMNS)
