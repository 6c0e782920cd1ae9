"""The estate status page: one row per workload, each cell red, amber or green.

The page must answer "are we safe?" at 3 a.m. without waiting on anything: it is built
from the catalog (last backup, snapshot and drill) and from ``WorkloadStatus`` objects
the daemon's monitoring job measured already (``drd.status.workload_status`` talks to
PostgreSQL and pgBackRest, so it never runs on a page request). ``build_view`` reads
only the catalog (a few indexed queries per workload), so the daemon may call it per
request or cache it; ``render_page`` turns it into HTML, ``EstateView.as_dict`` into
``/status.json``.

One rule colours every cell (``judge``): green within the limit, amber from the
tier's ``alerts.rpo_warning_ratio`` of it, red above it, failed or missing; "none"
(N/A) when the limit does not apply (no filestore, no such backup type). Limits:

    RPO exposure   tier objectives.rpo, judged on exposure + time since measured
                   (an upper bound: the safe point can only have moved forward)
    last backup    drd.check.allowed_backup_age per type; a late diff/incr is at
                   worst amber, as ``drd check`` treats them as non-critical
    last snapshot  longest gap of the tier's filestore cron x 1.5 (as for backups)
    last drill     verdict pass, age within drills.max_age, measured RPO and RTO
                   within the objectives
    checks         the monitoring verdict: ok, warning, critical

"Within" includes the limit itself, as in ``drd check`` and the drill verdict (an RPO
of exactly the objective meets it); ``drd.rpo.verdict`` calls that point critical, a
difference of one instant that only shows in tests.
"""

from __future__ import annotations

import functools
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar, cast

import jinja2

from drd.catalog import BackupRecord, Catalog, DrillRecord, SnapshotRecord
from drd.check import AGE_GRACE, SATISFIES, allowed_backup_age
from drd.config import Estate, Tier, Workload
from drd.config.cron import max_interval
from drd.config.types import format_duration
from drd.daemon.state import Role
from drd.errors import DrdError
from drd.log import get_logger
from drd.redact import redact
from drd.status import WorkloadStatus

log = get_logger("drd.daemon")

Rag = Literal["green", "amber", "red", "none"]
#: Words next to the colours: the page must read the same without colour vision.
LABELS: Mapping[Rag, str] = {"green": "OK", "amber": "WARN", "red": "FAIL", "none": "N/A"}
_SEVERITY: Mapping[Rag, int] = {"none": 0, "green": 1, "amber": 2, "red": 3}
REFRESH_SECONDS = 30


def judge(
    value: timedelta | None, limit: timedelta | None, warning_ratio: float, *, failed: bool = False
) -> Rag:
    """The one RAG rule: N/A without a limit; red when failed, missing or above it;
    amber from ``warning_ratio`` of it; green below that."""
    if limit is None:
        return "none"
    if failed or value is None or value > limit:
        return "red"
    if value >= limit * warning_ratio:
        return "amber"
    return "green"


def worst(rags: Iterable[Rag]) -> Rag:
    return max(rags, key=_SEVERITY.__getitem__, default="none")


def human(value: timedelta) -> str:
    """Two significant units, for eyes rather than parsers: '2d 4h', '4m 12s', '35s'."""
    seconds = max(int(value.total_seconds()), 0)
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    for index, (name, size) in enumerate(units):
        if seconds >= size or name == "s":
            text = f"{seconds // size}{name}"
            if index + 1 < len(units):
                sub_name, sub_size = units[index + 1]
                rest = (seconds % size) // sub_size
                text += f" {rest}{sub_name}" if rest else ""
            return text
    return "0s"  # pragma: no cover - the loop always returns at "s"


# Schedule limits scan up to a year of cron fires (tens of ms each) but only change when
# the tier does: computed once per schedule and day, so a page over many workloads stays
# a few catalog queries per row.
T = TypeVar("T")
_limits_lock = threading.Lock()
_limits: dict[tuple[Any, ...], Any] = {}


def _cached(key: tuple[Any, ...], compute: Callable[[], T]) -> T:
    with _limits_lock:
        if key in _limits:
            return cast(T, _limits[key])
    value = compute()
    with _limits_lock:
        if len(_limits) > 4096:
            _limits.clear()
        _limits[key] = value
    return value


def backup_limit(tier: Tier, kind: str, now: datetime) -> timedelta | None:
    """``drd.check.allowed_backup_age``, cached (the same rule as ``drd check``)."""
    policy = tier.postgres
    key = ("backup", kind, policy.full, policy.diff, policy.incr, tier.alerts.backup_age_max)
    return _cached((*key, now.date()), lambda: allowed_backup_age(tier, kind, now))


def snapshot_limit(cron: str, now: datetime) -> timedelta:
    """How old the newest snapshot may be: the cron's longest gap with the backups' grace."""
    return _cached(("snapshot", cron, now.date()), lambda: max_interval(cron, now) * AGE_GRACE)


@dataclass(frozen=True)
class Part:
    """One judged line inside a cell (a backup type, the drill's RPO ...)."""

    name: str
    text: str
    rag: Rag

    @property
    def label(self) -> str:
        return LABELS[self.rag]


@dataclass(frozen=True)
class Cell:
    rag: Rag
    text: str
    detail: str = ""
    parts: tuple[Part, ...] = ()

    @property
    def label(self) -> str:
        return LABELS[self.rag]

    def as_dict(self) -> dict[str, Any]:
        return {
            "rag": self.rag,
            "label": self.label,
            "text": self.text,
            "detail": self.detail,
            "parts": [
                {"name": p.name, "text": p.text, "rag": p.rag, "label": p.label} for p in self.parts
            ],
        }


COLUMNS = ("rpo", "backup", "snapshot", "drill", "checks")
COLUMN_TITLES = {
    "rpo": "RPO exposure",
    "backup": "Last backup",
    "snapshot": "Last snapshot",
    "drill": "Last drill",
    "checks": "Checks",
}
COLUMN_SHORT = {
    "rpo": "RPO",
    "backup": "backup",
    "snapshot": "snapshot",
    "drill": "drill",
    "checks": "checks",
}


@dataclass(frozen=True)
class WorkloadRow:
    workload: str
    tier: str
    objectives: str
    overall: Cell
    cells: Mapping[str, Cell]  # by COLUMNS
    values: Mapping[str, Any] = field(default_factory=dict)  # raw numbers for JSON readers

    def as_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "tier": self.tier,
            "objectives": self.objectives,
            "overall": self.overall.as_dict(),
            **{name: cell.as_dict() for name, cell in self.cells.items()},
            "values": dict(self.values),
        }


@dataclass(frozen=True)
class EstateView:
    title: str
    generated_at: datetime
    role: Role
    rows: tuple[WorkloadRow, ...]
    config_path: str = ""
    refresh_seconds: int = REFRESH_SECONDS

    def overall(self) -> Rag:
        return worst(row.overall.rag for row in self.rows)

    def counts(self) -> dict[str, int]:
        return {rag: sum(1 for r in self.rows if r.overall.rag == rag) for rag in LABELS}

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "generated_at": self.generated_at.isoformat(),
            "role": self.role,
            "config": self.config_path,
            "overall": self.overall(),
            "counts": self.counts(),
            "workloads": [row.as_dict() for row in self.rows],
        }


# -- cells (pure: records in, judged cell out) --------------------------------------------


def rpo_cell(status: WorkloadStatus | None, tier: Tier, elapsed: timedelta) -> Cell:
    objective = tier.objectives.rpo
    ratio = tier.alerts.rpo_warning_ratio
    limit = f"objective {format_duration(objective)}"
    if status is None:
        return Cell("red", "not measured yet", f"{limit}; waiting for the monitoring job")
    parts = []
    if status.archive_age is not None:
        parts.append(Part("last WAL archived", f"{human(status.archive_age)} ago", "none"))
    if status.archive_failures:
        parts.append(Part("archive failures", str(status.archive_failures), "none"))
    if status.rpo_exposure is None:
        why = "primary down" if status.primary_state == "down" else "no heartbeat"
        return Cell("red", "unknown", f"{limit}; cannot be measured: {why}", tuple(parts))
    stale = f"; measured {human(elapsed)} ago" if elapsed >= timedelta(seconds=1) else ""
    rag = judge(status.rpo_exposure + elapsed, objective, ratio)
    return Cell(rag, human(status.rpo_exposure), limit + stale, tuple(parts))


def backup_cell(newest: Mapping[str, BackupRecord | None], tier: Tier, now: datetime) -> Cell:
    """``newest`` maps full/diff/incr to the newest backup of exactly that type."""
    ratio = tier.alerts.rpo_warning_ratio
    parts = []
    for kind in ("full", "diff", "incr"):
        allowed = backup_limit(tier, kind, now)
        if allowed is None:
            continue
        candidates = [b for k, b in newest.items() if k in SATISFIES[kind] and b is not None]
        best = max(candidates, key=lambda b: b.stopped_at, default=None)
        age = now - best.stopped_at if best else None
        rag = judge(age, allowed, ratio)
        if kind != "full" and rag == "red":
            rag = "amber"  # non-critical in `drd check`
        text = f"{human(age)} ago" if age is not None else "none yet"
        parts.append(Part(kind, f"{text} · max {human(allowed)}", rag))
    latest = max((b for b in newest.values() if b), key=lambda b: b.stopped_at, default=None)
    if latest is None:
        return Cell("red", "no backup yet", "", tuple(parts))
    headline = f"{human(now - latest.stopped_at)} ago"
    return Cell(
        worst(p.rag for p in parts), headline, f"{latest.type} {latest.label}", tuple(parts)
    )


def snapshot_cell(
    snapshot: SnapshotRecord | None, tier: Tier, workload: Workload, now: datetime
) -> Cell:
    if workload.filestore is None or tier.filestore is None:
        return Cell("none", "no filestore")
    allowed = snapshot_limit(tier.filestore.snapshot, now)
    if snapshot is None:
        return Cell("red", "no snapshot yet", f"max {human(allowed)}")
    age = now - snapshot.created_at
    rag = judge(age, allowed, tier.alerts.rpo_warning_ratio)
    detail = f"max {human(allowed)} · {snapshot.files} files · {snapshot.id[:8]}"
    return Cell(rag, f"{human(age)} ago", detail)


def _seconds(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)


def drill_cell(drill: DrillRecord | None, running: bool, tier: Tier, now: datetime) -> Cell:
    """The newest finished drill (``running``: another one is under way)."""
    ratio = tier.alerts.rpo_warning_ratio
    note = "a drill is running now" if running else ""
    if drill is None:
        return Cell("red", "no drill yet", note or f"required every {human(tier.drills.max_age)}")
    age = now - (drill.finished_at or drill.started_at)
    passed = drill.verdict == "pass"
    rpo, rto = _seconds(drill.measured_rpo_seconds), _seconds(drill.measured_rto_seconds)
    objectives = tier.objectives

    def measured(value: timedelta | None, objective: timedelta) -> str:
        shown = human(value) if value is not None else "not measured"
        return f"{shown} of {format_duration(objective)}"  # "35s of 15m"

    max_age = tier.drills.max_age
    parts = (
        Part("RPO", measured(rpo, objectives.rpo), judge(rpo, objectives.rpo, ratio)),
        Part("RTO", measured(rto, objectives.rto), judge(rto, objectives.rto, ratio)),
        Part("age", f"{human(age)} of {human(max_age)}", judge(age, max_age, ratio)),
    )
    reasons = drill.details.get("reasons") if isinstance(drill.details, dict) else None
    if not passed and isinstance(reasons, list) and reasons:
        note = "; ".join([str(reasons[0])[:160], note]).strip("; ")
    # The drill as a whole: a failed verdict is red however fresh; then each part.
    rag = worst([judge(age, max_age, ratio, failed=not passed), *(p.rag for p in parts)])
    return Cell(rag, f"{'passed' if passed else 'failed'} {human(age)} ago", redact(note), parts)


_VERDICT_RAG: Mapping[str, Rag] = {"ok": "green", "warning": "amber", "critical": "red"}


def checks_cell(status: WorkloadStatus | None) -> Cell:
    if status is None:
        return Cell("red", "not checked yet", "waiting for the monitoring job")
    summary, _, failing = status.checks.partition("; ")
    parts = []
    if status.primary_state != "primary":
        error = f": {redact(status.primary_error)}" if status.primary_error else ""
        parts.append(Part("primary", f"{status.primary_state}{error}"[:200], "red"))
    return Cell(_VERDICT_RAG.get(status.verdict, "red"), summary, failing, tuple(parts))


def overall_cell(cells: Mapping[str, Cell]) -> Cell:
    """The worst cell; the detail names the cells that need someone: 'FAIL: RPO; WARN: drill'."""
    rag = worst(c.rag for c in cells.values())
    named = [
        f"{LABELS[level]}: {', '.join(COLUMN_SHORT[n] for n, c in cells.items() if c.rag == level)}"
        for level in ("red", "amber")
        if any(c.rag == level for c in cells.values())
    ]
    return Cell(rag, LABELS[rag], "; ".join(named))


# -- building the view (reads the catalog, never PostgreSQL) -------------------------------


def _catalog_cells(
    catalog: Catalog, tier: Tier, workload: Workload, now: datetime
) -> tuple[dict[str, Cell], dict[str, Any]]:
    name = workload.name
    try:
        newest = {kind: catalog.latest_backup(name, type=kind) for kind in ("full", "diff", "incr")}
        snapshot = catalog.latest_snapshot(name)
        recent = catalog.list_drills(name, limit=10)
    except DrdError as exc:
        log.warning("status_page_catalog_failed", workload=name, error=str(exc))
        broken = Cell("red", "catalog unreachable", redact(str(exc))[:200])
        snapshot_na = snapshot_cell(None, tier, workload, now) if not workload.filestore else None
        return {"backup": broken, "snapshot": snapshot_na or broken, "drill": broken}, {}
    running = bool(recent) and recent[0].status == "running"
    drill = next((d for d in recent if d.status != "running"), None)
    cells = {
        "backup": backup_cell(newest, tier, now),
        "snapshot": snapshot_cell(snapshot, tier, workload, now),
        "drill": drill_cell(drill, running, tier, now),
    }
    values: dict[str, Any] = {
        f"last_{kind}_age_seconds": (now - b.stopped_at).total_seconds() if b else None
        for kind, b in newest.items()
    }
    values["last_snapshot_age_seconds"] = (
        (now - snapshot.created_at).total_seconds() if snapshot else None
    )
    values["drill_verdict"] = drill.verdict if drill else None
    values["drill_rpo_seconds"] = drill.measured_rpo_seconds if drill else None
    values["drill_rto_seconds"] = drill.measured_rto_seconds if drill else None
    return cells, values


def build_view(
    estate: Estate,
    catalog: Catalog,
    *,
    statuses: Mapping[str, WorkloadStatus] | None = None,
    measured_at: Mapping[str, datetime] | None = None,
    role: Role = "unknown",
    now: datetime | None = None,
    title: str | None = None,
    refresh_seconds: int = REFRESH_SECONDS,
) -> EstateView:
    """The page's data: ``statuses`` are the monitoring job's latest results by workload
    (None or missing: not measured yet, shown red), ``measured_at`` when each was taken.

    Reads only the catalog (a few indexed queries per workload); a catalog error turns
    that workload's catalog cells red instead of failing the page.
    """
    now = now or datetime.now(UTC)
    rows = []
    for workload in estate.config.workloads:
        tier = estate.tiers[workload.tier]
        status = (statuses or {}).get(workload.name)
        taken = (measured_at or {}).get(workload.name)
        elapsed = max(now - taken, timedelta(0)) if taken is not None else timedelta(0)
        cells, values = _catalog_cells(catalog, tier, workload, now)
        cells = {"rpo": rpo_cell(status, tier, elapsed), **cells, "checks": checks_cell(status)}
        cells = {name: cells[name] for name in COLUMNS}
        values |= {
            "rpo_exposure_seconds": status.rpo_exposure.total_seconds()
            if status and status.rpo_exposure is not None
            else None,
            "rpo_objective_seconds": tier.objectives.rpo.total_seconds(),
            "rto_objective_seconds": tier.objectives.rto.total_seconds(),
            "measured_at": taken.isoformat() if taken else None,
            "verdict": status.verdict if status else None,
        }
        rpo, rto = tier.objectives.rpo, tier.objectives.rto
        objectives = f"RPO {format_duration(rpo)} · RTO {format_duration(rto)}"
        rows.append(
            WorkloadRow(
                workload.name, workload.tier, objectives, overall_cell(cells), cells, values
            )
        )
    # Worst first: on a big estate the rows that need someone are at the top.
    rows.sort(key=lambda r: (-_SEVERITY[r.overall.rag], r.tier, r.workload))
    return EstateView(
        title=title or socket.gethostname(),
        generated_at=now,
        role=role,
        rows=tuple(rows),
        config_path=str(estate.path),
        refresh_seconds=refresh_seconds,
    )


# -- HTML -----------------------------------------------------------------------------------


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("drd.daemon", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_page(view: EstateView, *, now: datetime | None = None) -> str:
    """The HTML page; says so in a banner when ``view`` is older than 3 refreshes
    (the daemon stopped updating it: what it shows may no longer be true)."""
    now = now or datetime.now(UTC)
    age = max(now - view.generated_at, timedelta(0))
    stale = age > timedelta(seconds=3 * view.refresh_seconds)
    return (
        _environment()
        .get_template("status.html")
        .render(
            view=view,
            overall=view.overall(),
            labels=LABELS,
            columns=COLUMNS,
            titles=COLUMN_TITLES,
            counts=view.counts(),
            age=human(age),
            stale=stale,
        )
    )
