"""Entry point of the ``drd`` command: global options, command groups, error handling.

Exit codes are those of ``drd.errors.EXIT_CODES``. A ``DrdError`` prints one line
(``drd: error: ...``) and exits with its code; the traceback is shown only with
``--log-level debug``. Click usage errors exit 2 like config errors.
"""

from __future__ import annotations

import gc
import importlib
import sys
import traceback
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from drd import __version__, log
from drd.cli.context import AppState, default_config_path
from drd.cli.output import OutputFormat
from drd.errors import EXIT_CODES, EXIT_INTERRUPTED, ConfigError, DrdError
from drd.redact import redact

# Commands and groups, in help order: (module, attribute, is a group). A command's
# module - and what it imports: the catalog, psycopg, boto3, the snapshot stack - is
# imported only when that command runs (or for --help), not on every start of drd.
_COMMANDS: dict[str, tuple[str, str, bool]] = {
    "check": ("drd.cli.db_cmd", "check", False),
    "heartbeat": ("drd.cli.db_cmd", "heartbeat", False),
    "status": ("drd.cli.status_cmd", "status", False),
    "config": ("drd.cli.config_cmd", "app", True),
    "catalog": ("drd.cli.catalog_cmd", "app", True),
    "db": ("drd.cli.db_cmd", "db_app", True),
    "backup": ("drd.cli.db_cmd", "backup_app", True),
    "repo": ("drd.cli.repo_cmd", "app", True),
    "snapshot": ("drd.cli.snapshot_cmd", "app", True),
    "drill": ("drd.cli.drill_cmd", "app", True),
    "retention": ("drd.cli.retention_cmd", "app", True),
    "daemon": ("drd.cli.daemon_cmd", "daemon", False),
}

_SETTINGS: dict[str, Any] = {
    "pretty_exceptions_enable": False,
    "add_completion": False,
    "rich_markup_mode": None,
}


def _load_command(name: str) -> Any:
    """The click command for ``name``, built by Typer exactly as a registration on
    ``app`` would build it (same settings), from its module imported now."""
    module, attribute, is_group = _COMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    holder = typer.Typer(**_SETTINGS)
    if is_group:
        holder.add_typer(target, name=name)
    else:
        holder.command(name)(target)
    return typer.main.get_group(holder).commands[name]


class _LazyCommands(MutableMapping[str, Any]):
    """A group's ``commands``: every name is listed; a command is built on first use."""

    def __init__(self, built: MutableMapping[str, Any]) -> None:
        self._built = dict(built)
        self._names = [*(n for n in _COMMANDS if n not in self._built), *self._built]

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            if name not in _COMMANDS:
                raise KeyError(name)
            self._built[name] = _load_command(name)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command
        if name not in self._names:
            self._names.append(name)

    def __delitem__(self, name: str) -> None:
        self._names.remove(name)
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._names))

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names


class _LazyGroup(TyperGroup):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = _LazyCommands(self.commands)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # names only: building is for get_command


app = typer.Typer(
    name="drd",
    help="Backup and disaster-recovery orchestration for PostgreSQL-backed applications.",
    no_args_is_help=True,
    cls=_LazyGroup,
    epilog="Exit codes: "
    + "; ".join(f"{code} {meaning.split(' (')[0]}" for code, meaning in EXIT_CODES.items()),
    **_SETTINGS,
)


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
    code = main()
    # Everything alive now dies with the process: freezing it spares the collector a
    # pass over every imported module at exit (~0.1 s of each short command).
    gc.freeze()
    sys.exit(code)
