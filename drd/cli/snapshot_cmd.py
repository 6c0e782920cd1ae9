"""``drd snapshot``: create, list, show, diff, restore and verify filestore snapshots.

A thin layer: parse, call ``drd.snapshot`` (service, inspect, restore, verify), render.
``--repository`` may be left out when the config has exactly one repository (or, for
``list WORKLOAD`` and ``create``, it is the workload's). Progress bars are drawn only
when stdout is a terminal and never with ``--output json``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from drd.cli.context import AppState, state
from drd.cli.output import OutputFormat, write_json, write_table
from drd.errors import ConfigError, SnapshotError

if TYPE_CHECKING:
    from drd.config import Estate
    from drd.snapshot.repository import Repository
    from drd.snapshot.verify import VerifyReport

app = typer.Typer(
    help="Encrypted, deduplicated filestore snapshots: create, list, show, diff, restore, verify.",
    no_args_is_help=True,
)

RepositoryOption = Annotated[
    str | None,
    typer.Option("--repository", "-r", help="repository name (default: the only configured one)"),
]


# -- helpers ---------------------------------------------------------------------------


def repository_name(estate: Estate, given: str | None, *, workload: str | None = None) -> str:
    """``given``, else the workload's repository, else the only configured repository."""
    if given:
        return given
    if workload is not None:
        return estate.config.workload(workload).repository
    names = [r.name for r in estate.config.repositories]
    if len(names) == 1:
        return names[0]
    if not names:
        raise ConfigError(f"{estate.path}: no repositories are configured")
    raise ConfigError(
        f"{len(names)} repositories are configured ({', '.join(names)}): "
        "choose one with --repository"
    )


def _open(st: AppState, given: str | None, *, workload: str | None = None) -> Repository:
    from drd.snapshot.service import open_repo  # noqa: PLC0415 - keep CLI start-up light

    estate = st.estate()
    return open_repo(estate, repository_name(estate, given, workload=workload))


def human_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"  # pragma: no cover - the loop always returns


class _Bar:
    """A Rich progress bar for one task; ``update`` is safe from worker threads."""

    def __init__(self, description: str, unit: str) -> None:
        from rich.progress import (  # noqa: PLC0415 - only for interactive terminals
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]} " + unit),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            transient=True,
        )
        self.task = self.progress.add_task(description, total=None, count="0")

    def counts(self, done: int, nbytes: int) -> None:
        self.progress.update(self.task, completed=nbytes, count=str(done))

    def totals(self, done: int, nbytes: int, total: int, total_bytes: int) -> None:
        self.progress.update(
            self.task, completed=nbytes, total=total_bytes, count=f"{done}/{total}"
        )


@contextmanager
def progress_bar(st: AppState, description: str, unit: str = "files") -> Iterator[_Bar | None]:
    """A progress bar when stdout is a terminal and the output is not JSON, else None."""
    if st.output is OutputFormat.json or not sys.stdout.isatty():
        yield None
        return
    bar = _Bar(description, unit)
    with bar.progress:
        yield bar


def _short(value: str | None) -> str | None:
    return value[:8] if value else value


# -- commands --------------------------------------------------------------------------


@app.command("create")
def create(
    ctx: typer.Context,
    workload: Annotated[str, typer.Argument(help="workload whose filestore to snapshot")],
    tag: Annotated[
        list[str] | None, typer.Option("--tag", "-t", help="tag the snapshot (repeatable)")
    ] = None,
) -> None:
    """Snapshot a workload's filestore into its repository, paired with a DB restore point."""
    from drd.catalog import open_configured  # noqa: PLC0415
    from drd.snapshot.service import snapshot_workload  # noqa: PLC0415

    st = state(ctx)
    estate = st.estate()
    with open_configured(estate.config) as catalog, progress_bar(st, "snapshot") as bar:
        result = snapshot_workload(
            estate,
            workload,
            catalog=catalog,
            tags=tuple(tag or ()),
            progress=bar.counts if bar is not None else None,
        )
    stats = result.stats
    if st.output is OutputFormat.json:
        write_json(
            {
                "snapshot_id": result.snapshot_id,
                "workload": workload,
                "time": result.manifest.time,
                "parent": result.manifest.parent,
                "tags": list(result.manifest.tags),
                **stats.as_dict(),
            }
        )
        return
    typer.echo(
        f"snapshot {result.snapshot_id[:8]} of {workload}: {stats.files} files, "
        f"{human_bytes(stats.bytes_new)} new of {human_bytes(stats.bytes)}, "
        f"{human_bytes(stats.bytes_written)} written, {stats.duration_seconds:.1f}s"
    )
    typer.echo(f"id {result.snapshot_id}")


@app.command("list")
def list_(
    ctx: typer.Context,
    workload: Annotated[str | None, typer.Argument(help="only this workload's snapshots")] = None,
    repository: RepositoryOption = None,
) -> None:
    """Snapshots in a repository, oldest first."""
    from drd.snapshot.inspect import list_snapshots  # noqa: PLC0415

    st = state(ctx)
    rows = list_snapshots(_open(st, repository, workload=workload), workload)
    if st.output is OutputFormat.json:
        write_json([r.as_dict() for r in rows])
        return
    write_table(
        [
            {
                "id": r.short_id,
                "time": r.time[:19].replace("T", " "),
                "workload": r.workload,
                "tier": r.tier,
                "tags": ",".join(r.tags) or None,
                "files": r.files,
                "size": human_bytes(r.bytes),
                "parent": _short(r.parent),
            }
            for r in rows
        ],
        ("id", "time", "workload", "tier", "tags", "files", "size", "parent"),
    )


@app.command("show")
def show(
    ctx: typer.Context,
    snapshot: Annotated[str, typer.Argument(help="snapshot id or unique prefix")],
    repository: RepositoryOption = None,
) -> None:
    """One snapshot: manifest, summary and the paired database restore point."""
    from drd.snapshot import inspect  # noqa: PLC0415

    st = state(ctx)
    detail = inspect.show(_open(st, repository), snapshot).as_dict()
    if st.output is OutputFormat.json:
        write_json(detail)
        return
    for key in ("id", "time", "workload", "tier", "source", "hostname", "parent", "tags"):
        value = detail[key]
        typer.echo(f"{key}: {', '.join(value) if isinstance(value, list) else value or '-'}")
    typer.echo(f"entries: {detail['entries']} ({detail['tree_blobs']} tree blobs)")
    _echo_mapping("summary", detail["summary"])
    _echo_mapping("db restore point", detail["db_restore_point"])


def _echo_mapping(title: str, mapping: dict[str, Any] | None) -> None:
    if not mapping:
        typer.echo(f"{title}: -")
        return
    typer.echo(f"{title}:")
    for key, value in mapping.items():
        shown = human_bytes(value) if key.startswith("bytes") and isinstance(value, int) else value
        typer.echo(f"  {key.replace('_', ' ')}: {shown}")


@app.command("diff")
def diff(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(help="older snapshot (id or prefix)")],
    b: Annotated[str, typer.Argument(help="newer snapshot (id or prefix)")],
    repository: RepositoryOption = None,
) -> None:
    """Paths added (+), removed (-) and changed (M) from snapshot A to snapshot B."""
    from drd.snapshot import inspect  # noqa: PLC0415

    st = state(ctx)
    result = inspect.diff(_open(st, repository), a, b)
    if st.output is OutputFormat.json:
        write_json(result.as_dict())
        return
    lines = [(e.path, f"+ {e.path}") for e in result.added]
    lines += [(e.path, f"- {e.path}") for e in result.removed]
    lines += [(c.path, f"M {c.path} ({', '.join(c.fields)})") for c in result.changed]
    for _, line in sorted(lines):
        typer.echo(line)
    typer.echo(
        f"{len(result.added)} added, {len(result.removed)} removed, {len(result.changed)} changed"
    )


@app.command("restore")
def restore(
    ctx: typer.Context,
    snapshot: Annotated[str, typer.Argument(help="snapshot id or unique prefix")],
    *,
    target: Annotated[
        Path, typer.Option("--target", help="directory to restore into (empty unless --force)")
    ],
    include: Annotated[
        list[str] | None,
        typer.Option("--include", "-i", help="only paths matching this pattern (repeatable)"),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="restore into a non-empty directory, replacing files")
    ] = False,
    workers: Annotated[int, typer.Option("--workers", min=1, help="parallel file writers")] = 4,
    repository: RepositoryOption = None,
) -> None:
    """Restore a snapshot: byte-identical files, modes, mtimes and symlinks."""
    from drd.snapshot.restore import restore_snapshot  # noqa: PLC0415

    st = state(ctx)
    repo = _open(st, repository)
    with progress_bar(st, "restore") as bar:
        stats = restore_snapshot(
            repo,
            snapshot,
            target,
            include=tuple(include or ()),
            force=force,
            workers=workers,
            progress=bar.totals if bar is not None else None,
        )
    if st.output is OutputFormat.json:
        write_json(stats.as_dict())
        return
    typer.echo(
        f"restored {stats.snapshot_id[:8]} into {stats.target}: {stats.files} files, "
        f"{stats.dirs} dirs, {stats.symlinks} symlinks, {human_bytes(stats.bytes)}, "
        f"{stats.duration_seconds:.1f}s"
        + (f" ({stats.skipped} entries not included)" if stats.skipped else "")
    )


def parse_percent(value: str) -> float:
    """'10%' or '10' -> 10.0; BadParameter unless 0 < value <= 100."""
    try:
        percent = float(value.strip().removesuffix("%"))
    except ValueError:
        raise typer.BadParameter(
            "expected a percentage like 10%", param_hint="--read-data-subset"
        ) from None
    if not 0 < percent <= 100:
        raise typer.BadParameter(
            "must be above 0% and at most 100%", param_hint="--read-data-subset"
        )
    return percent


@app.command("verify")
def verify(
    ctx: typer.Context,
    *,
    repository: RepositoryOption = None,
    read_data: Annotated[
        bool, typer.Option("--read-data", help="also download and check every pack")
    ] = False,
    subset: Annotated[
        str | None,
        typer.Option("--read-data-subset", metavar="N%", help="download and check N% of packs"),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="parallel pack reads")] = 4,
) -> None:
    """Check the repository's structure (and with --read-data its content); exit 7 on damage."""
    from drd.snapshot.verify import verify_repository  # noqa: PLC0415

    st = state(ctx)
    if read_data and subset is not None:
        raise typer.BadParameter(
            "use either --read-data or --read-data-subset", param_hint="--read-data"
        )
    percent = parse_percent(subset) if subset is not None else None
    repo = _open(st, repository)
    with progress_bar(st, "verify", unit="packs") as bar:
        report = verify_repository(
            repo,
            read_data=read_data,
            subset_percent=percent,
            workers=workers,
            progress=bar.totals if bar is not None else None,
        )
    if st.output is OutputFormat.json:
        write_json(report.as_dict())
    else:
        _echo_report(report)
    if not report.ok:
        keys = report.damaged_keys()
        raise SnapshotError(
            f"repository {report.location}: {len(report.problems)} problem(s) in "
            f"{len(keys)} object(s): {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}",
            hint="restore the damaged objects from a copy of the repository, or take a new "
            "snapshot so that lost data is stored again",
        )


def _echo_report(report: VerifyReport) -> None:
    scope = "structure"
    if report.read_data:
        scope += " and data" + (
            f" ({report.subset_percent:g}% of packs)" if report.subset_percent else ""
        )
    typer.echo(
        f"checked {scope} of {report.location}: {report.snapshots} snapshots, "
        f"{report.indexes} indexes, {report.packs} packs, {report.blobs} blobs"
        + (
            f"; read {report.packs_read} packs ({human_bytes(report.bytes_read)}), "
            f"{report.blobs_checked} blobs"
            if report.read_data
            else ""
        )
    )
    if report.unreferenced_packs:
        typer.echo(f"{report.unreferenced_packs} unreferenced pack(s) (removed by prune)")
    if report.ok:
        typer.echo("no problems found")
        return
    write_table(
        [{"object": p.key, "problem": p.problem} for p in report.problems], ("object", "problem")
    )
