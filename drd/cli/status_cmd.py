"""``drd status``: one row per workload, objectives against what is measured now."""

from __future__ import annotations

import typer

from drd.cli.context import state
from drd.cli.output import OutputFormat, write_json, write_table
from drd.status import estate_status

COLUMNS = (
    "workload",
    "tier",
    "primary_state",
    "last_full_age",
    "last_diff_age",
    "last_incr_age",
    "last_archived_wal",
    "archive_age",
    "rpo_exposure",
    "rpo",
    "checks",
    "verdict",
)


def status(ctx: typer.Context) -> None:
    """Per workload: backups by type and age, archived WAL and lag, RPO exposure vs objective."""
    st = state(ctx)
    estate = st.estate()
    rows = [s.as_dict() for s in estate_status(estate)]
    if st.output is OutputFormat.json:
        write_json({"config": str(estate.path), "workloads": rows})
    else:
        write_table(rows, COLUMNS)
