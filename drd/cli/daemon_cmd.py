"""``drd daemon``: the scheduled service (see ``drd.daemon.daemon``)."""

from __future__ import annotations

from typing import Annotated

import typer

from drd.cli.context import state


def daemon(
    ctx: typer.Context,
    once: Annotated[
        bool,
        typer.Option("--once", help="one reconcile pass (due jobs, heartbeats, checks), then exit"),
    ] = False,
) -> None:
    """Run the daemon: schedule every workload's jobs from its tier, serve /metrics,
    /healthz, /readyz and the status page. SIGTERM: finish running jobs, exit 0.
    SIGHUP: reload the config (an invalid one is refused and the old one kept)."""
    from drd import log  # noqa: PLC0415
    from drd.daemon.daemon import Daemon  # noqa: PLC0415 - scheduler stack on demand

    st = state(ctx)
    service = Daemon(st.config_path, log_level=st.log_level, serve_http=not once)
    root = ctx.find_root()
    source = root.get_parameter_source("log_level")
    if getattr(source, "name", "DEFAULT") == "DEFAULT":
        # A service logs what it does: the config's log settings, unless --log-level.
        settings = service.estate.config.log
        json = {"json": True, "console": False}.get(settings.format)
        log.configure(settings.level, json=json)
        service.log_level = settings.level
    code = service.run_once() if once else service.run()
    raise typer.Exit(code)
