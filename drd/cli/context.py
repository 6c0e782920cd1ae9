"""What every command gets from the global options: config path, output format."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import typer

from drd.cli.output import OutputFormat
from drd.config import Estate, load

DEFAULT_CONFIG = Path("/etc/drd/drd.yaml")


@dataclass
class AppState:
    config_path: Path
    output: OutputFormat
    log_level: str

    def estate(self, *, check_secrets: bool = True) -> Estate:
        return load(self.config_path, check_secrets=check_secrets)


def state(ctx: typer.Context) -> AppState:
    obj = ctx.find_root().obj
    if not isinstance(obj, AppState):  # pragma: no cover - the callback always sets it
        raise TypeError("CLI state missing")
    return obj


def default_config_path() -> Path:
    return Path(os.environ.get("DRD_CONFIG", str(DEFAULT_CONFIG)))
