"""WAL continuity: is every segment that point-in-time recovery needs in the repository?

pgBackRest 2.45 cannot answer this for us: ``verify`` exits 0 even when it finds errors
(and reports gaps only as several WAL ranges at detail log level), and ``info`` shows
only the archive's min and max, which hide any hole between them. A single missing
segment makes every recovery target after it unreachable, so drd lists the archive
itself and does the arithmetic here.

Two layers:

- Pure segment arithmetic and gap detection (no I/O): ``parse_segment``,
  ``segment_position``, ``segment_name``, ``next_segment``, ``find_gaps``.
- ``check_continuity(pgbr)``: one ``info`` and one ``repo-ls`` through the pgBackRest
  runner, turned into a ``ContinuityReport``. Gaps are data in the report, never an
  exception; errors from pgBackRest propagate as ``BackupError``.

Segment names are ``TTTTTTTTLLLLLLLLSSSSSSSS`` (hex): timeline, log id, and segment
within the log id. A log id spans 4 GiB of WAL, so it holds ``0x100000000 //
wal_segment_size`` segments (256 for the default 16 MiB): after ``...000000FF`` comes
``...0000000100000000``. The *position* of a segment is ``log * per_log + seg``: the
same WAL bytes on every timeline.

Timelines: after a promotion the new timeline continues at the switch position (the
segment holding the switch point is archived again under the new timeline, the old
timeline's copy as ``.partial``). A position therefore counts as covered if a segment
of ANY timeline is archived at it. This does not follow timeline history files: a
position covered only by a timeline that recovery would not follow (say, an old primary
that kept archiving after a failover) still counts as covered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from drd.errors import ConfigError
from drd.log import get_logger
from drd.pgbackrest.runner import Pgbackrest

log = get_logger("drd.pgbackrest.continuity")

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
_LOG_ID_BYTES = 0x100000000  # WAL bytes per log id (the middle 8 hex digits of a name)
_MIN_SEGMENT_SIZE = 1024 * 1024  # PostgreSQL's initdb --wal-segsize range: 1 MiB ..
_MAX_SEGMENT_SIZE = 1024 * 1024 * 1024  # .. 1 GiB, powers of two

_SEGMENT = re.compile(r"[0-9A-F]{24}")
# An archived segment as pgBackRest stores it: name, '-', sha1 of the (uncompressed)
# segment, optional compression extension. Backup history files
# ("<segment>.00000028.backup"), timeline history files ("00000002.history") and
# partial segments ("<segment>.partial-<sha1>.zst") do not match on purpose. The
# extension list is closed: a file we do not recognise shows up as a gap (loud) rather
# than being counted (silent).
_ARCHIVED = re.compile(r"(?P<name>[0-9A-F]{24})-[0-9a-f]{40}(?:\.(?:gz|bz2|lz4|zst|xz))?")


def segments_per_log(segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """How many segments one log id holds; ValueError for a size PostgreSQL cannot have."""
    if (
        segment_size < _MIN_SEGMENT_SIZE
        or segment_size > _MAX_SEGMENT_SIZE
        or segment_size & (segment_size - 1)
    ):
        raise ValueError(
            f"invalid WAL segment size {segment_size}: "
            "PostgreSQL uses a power of two from 1 MiB to 1 GiB"
        )
    return _LOG_ID_BYTES // segment_size


@dataclass(frozen=True, order=True)
class Segment:
    """A parsed segment name; ``seg`` is already checked against the segment size."""

    timeline: int
    log: int
    seg: int
    per_log: int = field(compare=False)

    @property
    def position(self) -> int:
        """Index of the segment in the WAL stream, the same on every timeline."""
        return self.log * self.per_log + self.seg

    @property
    def name(self) -> str:
        return f"{self.timeline:08X}{self.log:08X}{self.seg:08X}"


def parse_segment(name: str, *, segment_size: int = DEFAULT_SEGMENT_SIZE) -> Segment:
    """Parse ``TTTTTTTTLLLLLLLLSSSSSSSS``; ValueError for anything PostgreSQL would not write.

    Uppercase only, as PostgreSQL and pgBackRest write them; timeline 0 does not exist;
    the segment part must be below the number of segments per log id.
    """
    per_log = segments_per_log(segment_size)
    if not _SEGMENT.fullmatch(name):
        raise ValueError(f"not a WAL segment name: {name!r} (expected 24 uppercase hex digits)")
    timeline, log_id, seg = int(name[:8], 16), int(name[8:16], 16), int(name[16:], 16)
    if timeline == 0:
        raise ValueError(f"not a WAL segment name: {name!r} (timeline 0 does not exist)")
    if seg >= per_log:
        raise ValueError(
            f"not a WAL segment name for {segment_size}-byte segments: {name!r} does not exist "
            f"(segment part must be below {per_log:#x}); is the segment size right?"
        )
    return Segment(timeline, log_id, seg, per_log)


def segment_position(name: str, *, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """Position of ``name`` in the WAL stream (timeline ignored)."""
    return parse_segment(name, segment_size=segment_size).position


def segment_name(timeline: int, position: int, *, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    """The name of the segment at ``position`` on ``timeline``."""
    per_log = segments_per_log(segment_size)
    if not 0 < timeline <= 0xFFFFFFFF:
        raise ValueError(f"invalid timeline {timeline}")
    if not 0 <= position < per_log * 0x100000000:
        raise ValueError(f"WAL segment position {position} out of range")
    return Segment(timeline, position // per_log, position % per_log, per_log).name


def next_segment(name: str, *, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    """The segment after ``name`` on the same timeline (crossing log ids as needed)."""
    segment = parse_segment(name, segment_size=segment_size)
    return segment_name(segment.timeline, segment.position + 1, segment_size=segment_size)


def archived_segment(filename: str) -> str | None:
    """The segment name of an archived WAL file, or None for anything else in the archive."""
    match = _ARCHIVED.fullmatch(filename)
    return match.group("name") if match else None


@dataclass(frozen=True)
class Gap:
    """Consecutive missing positions, named on the timeline of the segment before them."""

    first_missing: str
    last_missing: str
    count: int


def find_gaps(
    segments: Iterable[str],
    start: str,
    end: str,
    *,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
) -> list[Gap]:
    """Missing positions from ``start`` to ``end`` inclusive, as maximal runs, in order.

    ``segments`` are plain segment names (any timelines, duplicates allowed, positions
    outside the range ignored). A gap is named on the highest timeline archived at the
    position just before it (the newest timeline is the one recovery follows), or on
    ``start``'s timeline when the gap begins at ``start``. ValueError for a bad name or
    ``start`` after ``end``.
    """
    first = parse_segment(start, segment_size=segment_size)
    last = parse_segment(end, segment_size=segment_size)
    if first.position > last.position:
        raise ValueError(f"WAL range start {start} is after its end {end}")
    timeline_at: dict[int, int] = {}  # position -> highest timeline archived there
    for name in segments:
        segment = parse_segment(name, segment_size=segment_size)
        if first.position <= segment.position <= last.position:
            timeline_at[segment.position] = max(
                segment.timeline, timeline_at.get(segment.position, 0)
            )

    # Walk the covered positions in order (not every position of the range: a range
    # can be huge when the archive is damaged, the listing is what bounds the work).
    gaps: list[Gap] = []
    previous = first.position - 1  # last position known covered (or just before start)
    for position in [*sorted(timeline_at), last.position + 1]:
        if position > previous + 1:
            timeline = timeline_at.get(previous, first.timeline)
            gaps.append(
                Gap(
                    first_missing=segment_name(timeline, previous + 1, segment_size=segment_size),
                    last_missing=segment_name(timeline, position - 1, segment_size=segment_size),
                    count=position - previous - 1,
                )
            )
        previous = position
    return gaps


def _plural(count: int) -> str:
    return f"{count} segment" if count == 1 else f"{count} segments"


@dataclass(frozen=True)
class ContinuityReport:
    """What ``check_continuity`` found for one stanza.

    ``start``/``end`` are the range checked: from the oldest backup's first WAL segment
    (the earliest point PITR must be able to start from) to the newest archived segment.
    When no range could be checked (nothing archived yet) they are None, ``reason`` says
    why, and the report is not ok: a stanza without archived WAL cannot be recovered.
    """

    stanza: str
    archive_id: str | None
    start: str | None
    end: str | None
    segments_checked: int
    gaps: tuple[Gap, ...] = ()
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None and not self.gaps

    @property
    def missing(self) -> int:
        """Number of missing segments over all gaps."""
        return sum(gap.count for gap in self.gaps)

    def describe(self, max_gaps: int = 3) -> str:
        """One line for logs, alerts and the CLI."""
        if self.reason is not None:
            return f"WAL continuity not checked for stanza {self.stanza}: {self.reason}"
        span = f"from {self.start} to {self.end}"
        if not self.gaps:
            return f"WAL continuous {span} ({_plural(self.segments_checked)})"
        parts = [
            f"{gap.first_missing} ({_plural(gap.count)})"
            if gap.count == 1
            else f"{gap.first_missing}..{gap.last_missing} ({_plural(gap.count)})"
            for gap in self.gaps[:max_gaps]
        ]
        if len(self.gaps) > max_gaps:
            more = len(self.gaps) - max_gaps
            parts.append(f"and {more} more gap{'s' if more > 1 else ''}")
        label = "WAL gap" if len(self.gaps) == 1 else f"{len(self.gaps)} WAL gaps"
        return (
            f"{label}: missing {', '.join(parts)} between {self.start} and {self.end}"
            f" ({self.missing} of {self.segments_checked} segments missing)"
        )


def _listed_segments(listing: Mapping[str, Mapping[str, object]]) -> list[str]:
    """Segment names of a ``repo-ls --recurse`` listing of one archive id.

    Only files in the directory archive-get looks in (``<first 16 hex digits>/``) count:
    a segment stored anywhere else cannot be restored.
    """
    names: list[str] = []
    for path, entry in listing.items():
        if entry.get("type") != "file":
            continue
        directory, _, filename = path.rpartition("/")
        name = archived_segment(filename)
        if name is not None and directory == name[:16]:
            names.append(name)
    return names


def check_continuity(
    pgbr: Pgbackrest, *, segment_size: int = DEFAULT_SEGMENT_SIZE
) -> ContinuityReport:
    """Check that the repository holds every WAL segment PITR needs for ``pgbr``'s stanza.

    Range: ``wal_start`` of the oldest backup to ``info``'s archive max of the current
    archive id. Without a backup, from the oldest segment listed to the archive max
    (``info``'s archive min may belong to an older archive id). ``segment_size`` must be
    the cluster's ``wal_segment_size``: pgBackRest does not report it.

    Only the current archive id is listed. Backups taken before a ``stanza-upgrade``
    (older PostgreSQL major) would make the range start in the previous archive id and
    show as a gap: ``BackupSet`` does not yet say which archive id a backup belongs to.
    """
    info = pgbr.info()
    stanza = info.name
    if info.archive_id is None or info.archive_max is None:
        report = ContinuityReport(
            stanza=stanza,
            archive_id=info.archive_id,
            start=None,
            end=None,
            segments_checked=0,
            reason="no WAL archived yet (is archive_command running pgBackRest?)",
        )
        log.warning("wal_continuity_unchecked", stanza=stanza, reason=report.reason)
        return report

    listing = pgbr.repo_ls(f"archive/{stanza}/{info.archive_id}", recurse=True)
    try:
        segments = [
            parse_segment(name, segment_size=segment_size) for name in _listed_segments(listing)
        ]
        end = parse_segment(info.archive_max, segment_size=segment_size)
        backup_starts = [b.wal_start for b in info.backups if b.wal_start]
        if backup_starts:  # info lists backups oldest first
            start = parse_segment(backup_starts[0], segment_size=segment_size)
        else:
            start = min(
                (s for s in segments if s.position <= end.position),
                key=lambda s: s.position,
                default=end,
            )
    except ValueError as exc:
        raise ConfigError(
            f"WAL continuity check for stanza {stanza}: {exc}",
            hint="pass the cluster's wal_segment_size (SHOW wal_segment_size)",
        ) from exc

    if start.position > end.position:
        report = ContinuityReport(
            stanza=stanza,
            archive_id=info.archive_id,
            start=start.name,
            end=end.name,
            segments_checked=0,
            reason=(
                f"the oldest backup starts at {start.name}, after the newest archived "
                f"segment {end.name} of archive {info.archive_id}"
            ),
        )
        log.warning("wal_continuity_unchecked", stanza=stanza, reason=report.reason)
        return report

    gaps = find_gaps((s.name for s in segments), start.name, end.name, segment_size=segment_size)
    report = ContinuityReport(
        stanza=stanza,
        archive_id=info.archive_id,
        start=start.name,
        end=end.name,
        segments_checked=end.position - start.position + 1,
        gaps=tuple(gaps),
    )
    if report.ok:
        log.info(
            "wal_continuity_ok",
            stanza=stanza,
            start=report.start,
            end=report.end,
            segments=report.segments_checked,
        )
    else:
        log.warning(
            "wal_continuity_gap",
            stanza=stanza,
            start=report.start,
            end=report.end,
            missing=report.missing,
            gaps=[(g.first_missing, g.last_missing, g.count) for g in gaps],
        )
    return report
