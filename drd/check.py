"""``drd check WORKLOAD``: named checks in the spirit of ``barman check``.

Each check has a name, is critical or not, and on failure says why and what would
make it pass. The command exits non-zero when a critical check fails. ``quick`` mode
(used by ``drd status``) skips the check that forces a WAL switch.

Backup age rule: the newest backup that satisfies a type (a full satisfies diff and
incr, a diff satisfies incr) must be younger than 1.5x the longest gap of that type's
cron schedule; for fulls, ``alerts.backup_age_max`` overrides when set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from drd import metrics
from drd.config import Estate, Tier
from drd.config.cron import max_interval
from drd.config.types import format_duration
from drd.errors import DrdError
from drd.pgbackrest.continuity import (
    ContinuityReport,
    check_continuity,
    parse_segment,
    segment_position,
)
from drd.pgbackrest.continuity import segment_name as continuity_segment_name
from drd.pgbackrest.info import StanzaInfo
from drd.pgbackrest.runner import Pgbackrest
from drd.pgbackrest.stanza import write_config
from drd.postgres.probe import ServerState, probe
from drd.rpo import Exposure, measure_exposure
from drd.rpo import verdict as rpo_verdict

SATISFIES = {"full": ("full",), "diff": ("full", "diff"), "incr": ("full", "diff", "incr")}
AGE_GRACE = 1.5


@dataclass(frozen=True)
class CheckResult:
    name: str
    critical: bool
    ok: bool
    detail: str
    hint: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Context:
    estate: Estate
    workload: str
    pgbr: Pgbackrest
    now: datetime
    server: ServerState | None = None
    info: StanzaInfo | None = None
    info_error: str | None = None
    exposure: Exposure | None = None
    continuity: ContinuityReport | None = None
    archive_timeout: float = 60.0
    results: list[CheckResult] = field(default_factory=list)


def _ok(name: str, detail: str, *, critical: bool = True) -> CheckResult:
    return CheckResult(name, critical, True, detail)


def _fail(name: str, detail: str, hint: str, *, critical: bool = True) -> CheckResult:
    return CheckResult(name, critical, False, detail, hint)


def _version(number: int | None) -> str:
    return "?" if number is None else f"{number // 10000}.{number % 10000}"


def check_connection(ctx: _Context) -> list[CheckResult]:
    primary = ctx.estate.config.workload(ctx.workload).postgres.primary
    ctx.server = probe(primary)
    if not ctx.server.reachable:
        return [
            _fail(
                "connection",
                f"{primary.describe()}: {ctx.server.error}",
                "is PostgreSQL running and reachable?",
            )
        ]
    if ctx.server.in_recovery:
        return [
            _fail(
                "connection",
                f"{primary.describe()} is in recovery (a standby)",
                "point primary at the primary",
            )
        ]
    return [
        _ok(
            "connection",
            f"{primary.describe()} is a primary (PostgreSQL {_version(ctx.server.server_version)})",
        )
    ]


def check_archive_settings(ctx: _Context) -> list[CheckResult]:
    server = ctx.server
    if server is None or not server.reachable:
        return []
    expected = ctx.pgbr.cfg.archive_command()
    results = [
        _ok("archive_mode", f"archive_mode={server.archive_mode}")
        if server.archive_mode in ("on", "always")
        else _fail(
            "archive_mode",
            f"archive_mode={server.archive_mode}",
            f"run `drd db setup {ctx.workload} --apply` and restart",
        ),
        _ok("archive_command", "pushes to this stanza with drd's config")
        if server.archive_command == expected
        else _fail(
            "archive_command",
            f"archive_command is {server.archive_command!r}, expected {expected!r}",
            f"run `drd db setup {ctx.workload} --apply`",
        ),
    ]
    archiver = server.archiver
    if archiver is not None:
        failing = archiver.last_failed_time is not None and (
            archiver.last_archived_time is None
            or archiver.last_failed_time > archiver.last_archived_time
        )
        if failing:
            results.append(
                _fail(
                    "archive_failures",
                    f"archiving is failing: {archiver.failed_count} failures, "
                    f"last {archiver.last_failed_wal} "
                    f"at {archiver.last_failed_time:%Y-%m-%d %H:%M:%SZ}",
                    "read the PostgreSQL log for 'archive command failed' "
                    "(runbooks/archive-failing.md)",
                )
            )
        else:
            results.append(
                _ok(
                    "archive_failures",
                    f"no failure since the last success ({archiver.failed_count} in total)",
                )
            )
    return results


def check_archiving_works(ctx: _Context) -> list[CheckResult]:
    try:
        ctx.pgbr.check(timeout=ctx.archive_timeout)
    except DrdError as exc:
        return [_fail("archiving_works", str(exc), exc.hint or "see runbooks/archive-failing.md")]
    return [_ok("archiving_works", "a forced WAL switch reached the repository (pgbackrest check)")]


def check_repository(ctx: _Context) -> list[CheckResult]:
    try:
        ctx.info = ctx.pgbr.info()
    except DrdError as exc:
        ctx.info_error = str(exc)
        return [_fail("repository", str(exc), exc.hint or "check the repository settings")]
    info = ctx.info
    return [
        _ok("repository", f"stanza {info.name}: {info.status_message}")
        if info.exists
        else _fail(
            "repository",
            f"stanza {info.name}: {info.status_message}",
            f"run `drd db setup {ctx.workload} --apply`",
        ),
        _ok("encryption", f"repository cipher {info.cipher}")
        if info.cipher == "aes-256-cbc"
        else _fail(
            "encryption",
            f"repository cipher is {info.cipher}",
            "backups must be encrypted: recreate the stanza with a passphrase",
        ),
    ]


def allowed_backup_age(tier: Tier, kind: str, now: datetime) -> timedelta | None:
    """How old the newest ``kind`` backup may be: its schedule's longest gap with grace
    (``alerts.backup_age_max`` for fulls when set); None when the tier has no such cron."""
    cron = {"full": tier.postgres.full, "diff": tier.postgres.diff, "incr": tier.postgres.incr}[
        kind
    ]
    if kind == "full" and tier.alerts.backup_age_max is not None:
        return tier.alerts.backup_age_max
    return None if cron is None else max_interval(cron, now) * AGE_GRACE


def check_backup_ages(ctx: _Context) -> list[CheckResult]:
    if ctx.info is None:
        return []
    tier = ctx.estate.tier_of(ctx.workload)
    results = []
    for kind in ("full", "diff", "incr"):
        allowed = allowed_backup_age(tier, kind, ctx.now)
        if allowed is None:
            continue
        candidates = [b for b in ctx.info.backups if b.type in SATISFIES[kind] and not b.error]
        name = f"backup_age_{kind}"
        if not candidates:
            results.append(
                _fail(
                    name,
                    f"no {kind} backup yet",
                    f"run `drd backup db {ctx.workload} --type {kind}`",
                    critical=kind == "full",
                )
            )
            continue
        newest = max(candidates, key=lambda b: b.stopped_at)
        age = ctx.now - newest.stopped_at
        detail = (
            f"newest {newest.label} is {format_duration(age)} old "
            f"(limit {format_duration(allowed)})"
        )
        if age <= allowed:
            results.append(_ok(name, detail, critical=kind == "full"))
        else:
            results.append(
                _fail(
                    name,
                    detail,
                    "is the daemon running its schedule? see `drd status`",
                    critical=kind == "full",
                )
            )
    return results


def check_wal_continuity(ctx: _Context) -> list[CheckResult]:
    if ctx.info is None or not ctx.info.exists:
        return []
    try:
        report = check_continuity(ctx.pgbr)
        ctx.continuity = report
    except DrdError as exc:
        return [_fail("wal_continuity", str(exc), exc.hint or "check the repository")]
    if report.ok:
        return [_ok("wal_continuity", report.describe())]
    return [
        _fail(
            "wal_continuity",
            report.describe(),
            "PITR across the gap is impossible: take a full backup now and investigate the archive",
        )
    ]


def recoverable_end(info: StanzaInfo, continuity: ContinuityReport | None) -> str | None:
    """The newest segment PITR can reach: the archive's end, or the segment before the
    first gap after the newest backup (``info``'s max hides gaps)."""
    end = info.archive_max
    newest = info.backups[-1] if info.backups else None
    if (
        end is None
        or continuity is None
        or not continuity.gaps
        or newest is None
        or not newest.wal_stop
    ):
        return end
    stop = segment_position(newest.wal_stop)
    for gap in sorted(continuity.gaps, key=lambda g: segment_position(g.first_missing)):
        first = segment_position(gap.first_missing)
        if first > stop:
            return continuity_segment_name(parse_segment(gap.first_missing).timeline, first - 1)
    return end


def check_rpo(ctx: _Context) -> list[CheckResult]:
    if ctx.server is None or not ctx.server.reachable or ctx.info is None:
        return []
    tier = ctx.estate.tier_of(ctx.workload)
    primary = ctx.estate.config.workload(ctx.workload).postgres.primary
    try:
        # The server's clock, not ours: host clock skew must not enter the measurement.
        measured = measure_exposure(primary, recoverable_end(ctx.info, ctx.continuity))
        ctx.exposure = measured
    except DrdError as exc:
        hint = f"is the heartbeat table there? run `drd heartbeat {ctx.workload} --once`"
        return [_fail("rpo_exposure", str(exc), hint)]
    if measured.exposure is None:
        return [
            _fail(
                "rpo_exposure",
                "no heartbeat has been written yet, so the exposure cannot be measured",
                f"run `drd heartbeat {ctx.workload} --once` (the daemon writes them continuously)",
            )
        ]
    at_least = "at least " if measured.lower_bound else ""
    rpo = tier.objectives.rpo
    detail = (
        f"{at_least}{format_duration(measured.exposure)} of data at risk "
        f"(objective {format_duration(rpo)})"
    )
    state = rpo_verdict(measured.exposure, rpo, tier.alerts.rpo_warning_ratio)
    if state == "critical":
        return [_fail("rpo_exposure", detail, "archiving is late: see runbooks/archive-failing.md")]
    if state == "warning":
        return [_ok("rpo_exposure", detail + f"; above {tier.alerts.rpo_warning_ratio:.0%} of it")]
    return [_ok("rpo_exposure", detail)]


CHECKS: tuple[Callable[[_Context], list[CheckResult]], ...] = (
    check_connection,
    check_archive_settings,
    check_archiving_works,
    check_repository,
    check_backup_ages,
    check_wal_continuity,
    check_rpo,
)


Inspection = _Context  # what a check run learned: results plus server, info, exposure


def inspect(
    estate: Estate,
    workload: str,
    *,
    quick: bool = False,
    now: datetime | None = None,
    archive_timeout: float = 60.0,
) -> Inspection:
    """Run every check for ``workload`` in order; ``quick`` skips the forced WAL switch.

    What the checks measured is also published as metrics (archiver state, continuity
    gaps, RPO exposure), so a ``drd check`` from cron keeps the gauges current too.
    """
    cfg = write_config(estate, workload)
    ctx = _Context(estate, workload, Pgbackrest(cfg), now or datetime.now(UTC))
    ctx.archive_timeout = archive_timeout
    for check in CHECKS:
        if quick and check is check_archiving_works:
            continue
        ctx.results.extend(check(ctx))
    _publish(ctx)
    return ctx


def _publish(ctx: _Context) -> None:
    tier = ctx.estate.tier_of(ctx.workload)
    if ctx.server is not None and ctx.server.archiver is not None:
        archiver = ctx.server.archiver
        metrics.set_archiver(ctx.workload, archiver.last_archived_time, archiver.failed_count)
    if ctx.continuity is not None:
        metrics.set_continuity_gaps(ctx.workload, len(ctx.continuity.gaps))
    exposure = ctx.exposure.exposure if ctx.exposure is not None else None
    metrics.set_rpo(ctx.workload, exposure, tier.objectives.rpo)


def run_checks(
    estate: Estate,
    workload: str,
    *,
    quick: bool = False,
    now: datetime | None = None,
    archive_timeout: float = 60.0,
) -> list[CheckResult]:
    return inspect(estate, workload, quick=quick, now=now, archive_timeout=archive_timeout).results


def failed_critical(results: list[CheckResult]) -> list[CheckResult]:
    return [r for r in results if r.critical and not r.ok]
