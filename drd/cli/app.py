"""Entry point of the ``drd`` command: global options, command groups, error handling.

Exit codes are those of ``drd.errors.EXIT_CODES``. A ``DrdError`` prints one line
(``drd: error: ...``) and exits with its code; the traceback is shown only with
``--log-level debug``. Click usage errors exit 2 like config errors.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

from drd import __version__, log
from drd.cli import (
    catalog_cmd,
    config_cmd,
    db_cmd,
    drill_cmd,
    repo_cmd,
    retention_cmd,
    snapshot_cmd,
    status_cmd,
)
from drd.cli.context import AppState, default_config_path
from drd.cli.output import OutputFormat
from drd.errors import EXIT_CODES, EXIT_INTERRUPTED, ConfigError, DrdError
from drd.redact import redact

app = typer.Typer(
    name="drd",
    help="Backup and disaster-recovery orchestration for PostgreSQL-backed applications.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    epilog="Exit codes: "
    + "; ".join(f"{code} {meaning.split(' (')[0]}" for code, meaning in EXIT_CODES.items()),
)
app.add_typer(config_cmd.app, name="config")
app.add_typer(catalog_cmd.app, name="catalog")
app.add_typer(db_cmd.db_app, name="db")
app.add_typer(db_cmd.backup_app, name="backup")
app.add_typer(repo_cmd.app, name="repo")
app.add_typer(snapshot_cmd.app, name="snapshot")
app.add_typer(drill_cmd.app, name="drill")
app.add_typer(retention_cmd.app, name="retention")
app.command("check")(db_cmd.check)
app.command("heartbeat")(db_cmd.heartbeat)
app.command("status")(status_cmd.status)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"drd {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global_options(
    ctx: typer.Context,
    config: Annotated[
        str | None,
        typer.Option(
            "--config", "-c", help="config file (env DRD_CONFIG, default /etc/drd/drd.yaml)"
        ),
    ] = None,
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="table or json")
    ] = OutputFormat.table,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error")
    ] = "warning",
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    level = log_level.lower()
    if level not in log.LEVELS:
        raise typer.BadParameter(
            f"must be one of {', '.join(log.LEVELS)}", param_hint="--log-level"
        )
    log.configure(level)
    ctx.obj = AppState(
        config_path=Path(config) if config else default_config_path(),
        output=output,
        log_level=level,
    )


def _requested_log_level(argv: list[str]) -> str | None:
    """The --log-level value from raw arguments (errors can happen before parsing ends)."""
    for index, arg in enumerate(argv):
        if arg.startswith("--log-level="):
            return arg.split("=", 1)[1].lower()
        if arg == "--log-level" and index + 1 < len(argv):
            return argv[index + 1].lower()
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (``sys.exit`` is left to the console script)."""
    command = typer.main.get_command(app)
    debug = _requested_log_level(sys.argv[1:] if argv is None else argv) == "debug"
    try:
        result = command.main(args=argv, prog_name="drd", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("drd: interrupted", err=True)
        return EXIT_INTERRUPTED
    except typer.TyperException as exc:  # usage errors: bad option, unknown command
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"drd: usage error: {exc}", err=True)
        return ConfigError.exit_code
    except ConfigError as exc:
        typer.echo(f"drd: error: {exc}", err=True)
        for problem in exc.problems:
            if problem != exc.message:
                typer.echo(f"  {problem}", err=True)
        return exc.exit_code
    except DrdError as exc:
        if debug:
            typer.echo(redact(traceback.format_exc()), err=True)
        typer.echo(f"drd: error: {redact(str(exc))}", err=True)
        return exc.exit_code
    except Exception as exc:
        if debug:
            typer.echo(redact(traceback.format_exc()), err=True)
        typer.echo(
            f"drd: internal error: {type(exc).__name__}: {redact(str(exc))} "
            "(rerun with --log-level debug for the traceback; please report it)",
            err=True,
        )
        return DrdError.exit_code
    return int(result) if isinstance(result, int) else 0


def run() -> None:  # pragma: no cover - console script shim
    sys.exit(main())
