"""``drd db setup``: make a cluster archive through drd's pgBackRest config, safely.

Without ``apply`` this only reports drift: each setting that differs, its current and
desired value, and whether a restart is needed. With ``apply`` it writes an audit entry
*first*, then changes settings with ``ALTER SYSTEM`` + ``pg_reload_conf()`` and creates
the stanza if it is missing. It never restarts PostgreSQL: settings that need a restart
(``archive_mode``, ``wal_level``) are set and reported as pending.

The archive_timeout rule: at most min(RPO/2, 1h) (see docs/configuration.md); the value
applied is the tier's ``archive_timeout`` or that maximum.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from drd.catalog import Catalog
from drd.config import Estate
from drd.config.types import format_duration
from drd.errors import PostgresError
from drd.log import get_logger
from drd.pgbackrest.runner import Pgbackrest
from drd.pgbackrest.stanza import StanzaConfig, write_config
from drd.postgres.probe import connect

log = get_logger("drd.setup")


@dataclass(frozen=True)
class Drift:
    setting: str
    current: str
    desired: str
    reason: str
    restart_required: bool


@dataclass
class SetupReport:
    workload: str
    stanza: str
    config_path: str
    drift: list[Drift] = field(default_factory=list)
    stanza_exists: bool = False
    applied: bool = False
    stanza_created: bool = False
    restart_required: list[str] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return not self.drift and self.stanza_exists

    def as_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "stanza": self.stanza,
            "config_path": self.config_path,
            "in_sync": self.in_sync,
            "stanza_exists": self.stanza_exists,
            "applied": self.applied,
            "stanza_created": self.stanza_created,
            "restart_required": self.restart_required,
            "drift": [d.__dict__ for d in self.drift],
        }


def _settings(conn: psycopg.Connection[Any]) -> dict[str, tuple[str, str, bool]]:
    rows = conn.execute(
        "SELECT name, setting, context, pending_restart FROM pg_settings"
        " WHERE name IN ('archive_mode', 'archive_command', 'archive_timeout', 'wal_level')"
    ).fetchall()
    return {str(r[0]): (str(r[1]), str(r[2]), bool(r[3])) for r in rows}


def desired_drift(
    estate: Estate, workload_name: str, cfg: StanzaConfig, current: dict[str, tuple[str, str, bool]]
) -> list[Drift]:
    tier = estate.tier_of(workload_name)
    limit = int(tier.max_archive_timeout().total_seconds())
    target_timeout = int(tier.effective_archive_timeout().total_seconds())
    drift: list[Drift] = []
    mode, mode_ctx, _ = current["archive_mode"]
    if mode not in ("on", "always"):
        drift.append(
            Drift(
                "archive_mode", mode, "on", "WAL is not archived at all", mode_ctx == "postmaster"
            )
        )
    command, _, _ = current["archive_command"]
    if command != cfg.archive_command():
        why = "archive_command does not push to this workload's stanza with drd's pgBackRest config"
        drift.append(Drift("archive_command", command, cfg.archive_command(), why, False))
    timeout = int(current["archive_timeout"][0])  # seconds (pg_settings unit is s)
    if timeout == 0 or timeout > limit:
        drift.append(
            Drift(
                "archive_timeout",
                f"{timeout}s",
                f"{target_timeout}s",
                f"must be between 1s and {limit}s "
                f"(min(RPO/2, 1h) for {tier.name}, RPO {format_duration(tier.objectives.rpo)})",
                False,
            )
        )
    level, level_ctx, _ = current["wal_level"]
    if level not in ("replica", "logical"):
        drift.append(
            Drift(
                "wal_level",
                level,
                "replica",
                "archiving needs wal_level replica",
                level_ctx == "postmaster",
            )
        )
    return drift


def setup(
    estate: Estate,
    workload_name: str,
    catalog: Catalog,
    *,
    apply: bool,
    actor: str,
    pgbackrest: Pgbackrest | None = None,
) -> SetupReport:
    workload = estate.config.workload(workload_name)
    cfg = write_config(estate, workload_name)
    pgbr = pgbackrest or Pgbackrest(cfg)
    report = SetupReport(workload=workload_name, stanza=cfg.stanza, config_path=str(cfg.path))
    endpoint = workload.postgres.primary
    try:
        with connect(endpoint) as conn:
            current = _settings(conn)
            report.drift = desired_drift(estate, workload_name, cfg, current)
            report.stanza_exists = pgbr.info().exists
            if not apply or report.in_sync:
                return report
            catalog.append_audit(
                actor,
                "db.setup.apply",
                workload_name,
                {
                    "changes": [d.__dict__ for d in report.drift],
                    "create_stanza": not report.stanza_exists,
                },
            )
            for item in report.drift:
                conn.execute(
                    sql.SQL("ALTER SYSTEM SET {} = {}").format(
                        sql.Identifier(item.setting), sql.Literal(item.desired)
                    )
                )
                if item.restart_required:
                    report.restart_required.append(item.setting)
            conn.execute("SELECT pg_reload_conf()")
    except psycopg.Error as exc:
        raise PostgresError(
            f"db setup for {workload_name} on {endpoint.describe()}: {exc}".strip()
        ) from exc
    if not report.stanza_exists:
        pgbr.stanza_create()
        report.stanza_created = True
        report.stanza_exists = True
    report.applied = True
    log.info(
        "db_setup_applied",
        workload=workload_name,
        changed=[d.setting for d in report.drift],
        restart_required=report.restart_required,
        stanza_created=report.stanza_created,
    )
    return report
