"""``drd drill``: restore drills that measure real RPO and RTO.

``run`` drills in the tier's sandbox (or ``--sandbox``): local, or a Kubernetes Job
that runs ``drd drill agent`` from the drd image. ``sweep`` deletes drill namespaces
left behind past their TTL (a crashed drd cannot delete its own).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from drd.catalog import open_configured
from drd.cli.context import state
from drd.cli.output import OutputFormat, write_json, write_table
from drd.errors import ConfigError, SafetyError

# The drill machinery (agent, service: metrics, Kubernetes client, snapshot stack) is
# imported by the commands that run drills, not by `drill list` or `drill show`.

app = typer.Typer(help="Restore drills: restore for real into a sandbox, verify, measure RPO/RTO.")


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(
            f"--at {value!r} is not an ISO 8601 time (e.g. 2026-11-29T03:00:00Z)"
        ) from exc
    if parsed.tzinfo is None:
        raise ConfigError(f"--at {value!r} needs a time zone (e.g. a trailing Z for UTC)")
    return parsed.astimezone(UTC)


class SandboxKind(StrEnum):
    local = "local"
    kubernetes = "kubernetes"


@app.command("run")
def run(
    ctx: typer.Context,
    workload: Annotated[str, typer.Argument(help="workload name")],
    sandbox: Annotated[
        SandboxKind | None,
        typer.Option("--sandbox", help="where to restore; default: the tier's drills.sandbox"),
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="disaster time T0 (ISO 8601); default now")
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="leave a local sandbox running for inspection")
    ] = False,
) -> None:
    """Restore the newest restore point at T0 into a sandbox, verify, measure; exit 0 only
    on pass."""
    from drd.drill.service import run_drill  # noqa: PLC0415 - see the imports

    st = state(ctx)
    estate = st.estate()
    t0 = _parse_time(at)
    with open_configured(estate.config) as catalog:
        result = run_drill(
            estate,
            workload,
            catalog,
            t0=t0,
            keep=keep,
            sandbox=sandbox.value if sandbox else None,
        )
    if st.output is OutputFormat.json:
        write_json(result.as_dict())
    else:
        typer.echo(f"drill {result.drill_id} of {workload}: {result.verdict.upper()}")
        snapshot = (result.snapshot_id or "-")[:8]
        typer.echo(
            f"  restored backup {result.backup_label}, snapshot {snapshot}, "
            f"db target {result.db_target}"
        )
        rpo = f"{result.rpo_seconds:.1f}s" if result.rpo_seconds is not None else "unknown"
        typer.echo(
            f"  RPO {rpo} (objective {result.rpo_objective_seconds:.0f}s), "
            f"RTO {result.rto_seconds or 0:.1f}s (objective {result.rto_objective_seconds:.0f}s)"
        )
        typer.echo("  phases: " + ", ".join(f"{k} {v:.2f}s" for k, v in result.phases.items()))
        for reason in result.reasons:
            typer.echo(f"  - {reason}")
        if keep and result.sandbox:
            typer.echo(
                f"  sandbox kept in {result.sandbox}: psql -h {result.sandbox}/run "
                f"-p {result.sandbox_port} -U postgres; stop: pg_ctl -D {result.sandbox}/data stop"
            )
    if result.verdict != "pass":
        raise SafetyError(f"drill of {workload} failed: {'; '.join(result.reasons)[:500]}")


@app.command("agent", hidden=True)
def agent(
    workload: Annotated[str, typer.Argument(help="workload name")],
    drill_id: Annotated[str, typer.Option("--drill-id")],
    requested_at: Annotated[str, typer.Option("--requested-at")],
    at: Annotated[str | None, typer.Option("--at")] = None,
) -> None:
    """Run the drill agent inside a drill pod and print its result as one JSON line.

    The config comes from the DRD_DRILL_BUNDLE environment variable (secrets from the
    drill Secret). Exit 0 whenever a result was printed, pass or fail: the verdict is in
    the result; a non-zero exit means the agent could not produce one.
    """
    from drd.config import load  # noqa: PLC0415 - see the imports
    from drd.drill import bundle  # noqa: PLC0415
    from drd.drill.agent import run_local_drill  # noqa: PLC0415

    raw = os.environ.get(bundle.BUNDLE_ENV)
    if not raw:
        raise ConfigError(f"{bundle.BUNDLE_ENV} is not set: this command runs in a drill pod")
    scratch = Path(os.environ.get(bundle.SCRATCH_ENV) or tempfile.mkdtemp(prefix="drd-drill-"))
    config_path = bundle.materialize(raw, Path(tempfile.gettempdir()) / "drd-drill-config", scratch)
    estate = load(config_path)
    requested = _parse_time(requested_at)
    result = run_local_drill(
        estate, workload, t0=_parse_time(at), drill_id=drill_id, requested_at=requested
    )
    sys.stdout.write(json.dumps(result.as_dict(), default=str) + "\n")
    sys.stdout.flush()


@app.command("sweep")
def sweep_namespaces(ctx: typer.Context) -> None:
    """Delete drill namespaces whose TTL has passed (left by a drd that crashed)."""
    from drd.drill.kubernetes import KubernetesCluster, sweep  # noqa: PLC0415 - slow client

    st = state(ctx)
    estate = st.estate()
    settings = estate.config.kubernetes
    cluster = KubernetesCluster.from_environment(context=settings.context if settings else None)
    deleted = sweep(cluster)
    if st.output is OutputFormat.json:
        write_json({"deleted": deleted})
    else:
        typer.echo(f"deleted {len(deleted)} expired drill namespace(s)")
        for name in deleted:
            typer.echo(f"  {name}")


@app.command("list")
def list_drills(
    ctx: typer.Context,
    workload: Annotated[str | None, typer.Argument(help="workload name")] = None,
) -> None:
    """Drills recorded in the catalog, newest first."""
    st = state(ctx)
    estate = st.estate()
    with open_configured(estate.config) as catalog:
        drills = catalog.list_drills(workload)
    rows = [
        {
            "id": d.id,
            "workload": d.workload,
            "started_at": d.started_at,
            "verdict": d.verdict,
            "rpo_s": d.measured_rpo_seconds,
            "rto_s": d.measured_rto_seconds,
        }
        for d in drills
    ]
    if st.output is OutputFormat.json:
        write_json(rows)
    else:
        write_table(rows, ("id", "workload", "started_at", "verdict", "rpo_s", "rto_s"))


@app.command("show")
def show(
    ctx: typer.Context,
    drill_id: Annotated[int, typer.Argument(help="drill id from `drd drill list`")],
) -> None:
    """Everything a drill recorded: restore point, measurements, phases, checks, verdict."""
    st = state(ctx)
    estate = st.estate()
    with open_configured(estate.config) as catalog:
        found = next((d for d in catalog.list_drills() if d.id == drill_id), None)
    if found is None:
        raise ConfigError(f"no drill {drill_id} in the catalog")
    write_json(found.details)
