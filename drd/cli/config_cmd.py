"""``drd config``: validate the configuration and its tiers, print the JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from drd.cli.context import state
from drd.cli.output import OutputFormat, write_json
from drd.config import json_schema, load
from drd.errors import ConfigError

app = typer.Typer(help="Validate the configuration and tier files; print the config JSON Schema.")


@app.command("validate")
def validate(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="config file (default: the global --config)"),
    ] = None,
    skip_secrets: Annotated[
        bool,
        typer.Option("--skip-secrets", help="do not check that secret references can be read"),
    ] = False,
) -> None:
    """Exit 0 if the config and every tier file are valid; else exit 2, one line per problem."""
    st = state(ctx)
    path = config or st.config_path
    try:
        estate = load(path, check_secrets=not skip_secrets)
    except ConfigError as exc:
        if st.output is OutputFormat.json:
            write_json({"valid": False, "config": str(path), "problems": exc.problems})
        else:
            for problem in exc.problems:
                typer.echo(problem, err=True)
        raise typer.Exit(exc.exit_code) from None
    summary = {
        "valid": True,
        "config": str(estate.path),
        "tiers": sorted(estate.tiers),
        "repositories": [r.name for r in estate.config.repositories],
        "workloads": [w.name for w in estate.config.workloads],
    }
    if st.output is OutputFormat.json:
        write_json(summary)
    else:
        typer.echo(
            f"{estate.path}: valid ({len(estate.tiers)} tiers, "
            f"{len(estate.config.repositories)} repositories, "
            f"{len(estate.config.workloads)} workloads)"
        )


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of the config file (tier files: ``$defs/Tier``)."""
    typer.echo(json.dumps(json_schema(), indent=2))
