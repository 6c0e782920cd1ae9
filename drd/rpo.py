"""Live RPO exposure: how much committed data would be lost if the primary vanished now.

Method
------
Exposure = now - commit time of the newest data known to be safe in the repository.

"Safe" means restorable from the repository: inside the archived WAL range. drd's
heartbeat rows (``drd.postgres.heartbeat``) carry both a time (``ts``, server clock)
and a WAL position (``lsn``, the insert position when the row was written), so:

1. The repository's newest archived segment (pgBackRest ``info`` ``archive_max``, a
   24-hex name ``TTTTTTTTLLLLLLLLSSSSSSSS``) ends at the LSN where the next segment
   starts: ``end_lsn = (segment number + 1) * segment size``.
2. The safe heartbeat is the newest row whose recorded ``lsn`` is below ``end_lsn``.
3. Exposure = now - that row's ``ts``. ``now`` is the database server's clock unless
   the caller passes one, so drd host clock skew does not enter the measurement (both
   ends come from the same clock).

Edge (accepted, bounded): a row's recorded ``lsn`` is taken *before* its insert record,
and its commit record follows that. If a segment boundary falls between the two (the
row was written in the last few hundred bytes of a segment, or a WAL switch landed in
the microseconds between insert and commit), the row is counted safe although its
commit is in the next, unarchived segment. The error is then at most one heartbeat
interval: the previous beat, written by the same sequential writer, committed before
this row's recorded ``lsn`` and so is truly safe. Exposure may thus be *understated* by
at most one heartbeat interval, rarely; we accept that instead of the strictly
conservative rule (count a row only once a later row is proven archived), which would
overstate every measurement by one interval and could never credit the newest beat
right after a WAL switch.

What this does not see: ``archive_max`` hides holes in the archive (pgBackRest's
``info`` reports only min/max). WAL continuity is checked separately
(``drd_wal_continuity_gaps``); a caller that knows the end of the contiguous range from
the last backup should pass that segment instead of ``archive_max``.

Unknown and lower bounds: with no heartbeat at all the exposure is unknown (None).
When rows exist but none is inside the archived range (nothing archived since drd
started beating, archiving broken for longer than heartbeat retention, or no archive
at all), nothing written since the oldest kept row is safe: the exposure is reported
as ``now - oldest.ts`` with ``lower_bound=True``, so it still crosses the objective
and alerts instead of going quiet as "unknown". If the heartbeat writer stops, the
exposure grows from its last row even when WAL keeps being archived: no clock, no
proof (``drd_heartbeat_last_success_timestamp_seconds`` tells the two cases apart).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import psycopg

from drd.config.models import PostgresEndpoint
from drd.errors import PostgresError
from drd.pgbackrest import continuity as wal
from drd.postgres import heartbeat
from drd.postgres.heartbeat import Heartbeat
from drd.postgres.probe import connect
from drd.redact import redact

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
_XLOGID = 1 << 32  # bytes per "log id" (the high 32 bits of an LSN)
_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")

Verdict = Literal["ok", "warning", "critical", "unknown"]

METHOD = (
    "newest heartbeat whose recorded insert LSN is below the end of the newest archived "
    "segment (archive_max); exposure = now (server clock) - its ts; may be understated "
    "by at most one heartbeat interval when a beat straddles the segment end"
)


# -- LSN arithmetic (pure) ---------------------------------------------------------------


def parse_lsn(text: str) -> int:
    """'16/B374D848' -> byte position."""
    match = _LSN.match(text.strip())
    if match is None:
        raise ValueError(f"not an LSN: {text!r} (expected 'X/Y' in hexadecimal)")
    return int(match.group(1), 16) * _XLOGID + int(match.group(2), 16)


def format_lsn(position: int) -> str:
    """Byte position -> 'X/Y', as PostgreSQL prints it (upper case, no padding)."""
    if not 0 <= position < 1 << 64:
        raise ValueError(f"LSN out of range: {position}")
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def segment_number(segment_name: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """The segment's number in the WAL stream (the timeline part is ignored)."""
    return wal.segment_position(segment_name, segment_size=segment_size)


def segment_start_lsn(segment_name: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    return format_lsn(segment_number(segment_name, segment_size) * segment_size)


def segment_end_lsn(segment_name: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    """First LSN *after* the segment (= start of the next one): '…00000005' -> '0/6000000'."""
    return format_lsn((segment_number(segment_name, segment_size) + 1) * segment_size)


def segment_name(lsn: str, timeline: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    """The segment holding ``lsn`` on ``timeline``, as ``pg_walfile_name`` names it."""
    wal.segments_per_log(segment_size)  # validates the size before dividing by it
    return wal.segment_name(timeline, parse_lsn(lsn) // segment_size, segment_size=segment_size)


# -- exposure ----------------------------------------------------------------------------


def exposure(now: datetime, safe_heartbeat_ts: datetime | None) -> timedelta | None:
    """now - ts, never negative (clock granularity); None when nothing is known safe."""
    if safe_heartbeat_ts is None:
        return None
    return max(now - safe_heartbeat_ts, timedelta(0))


@dataclass(frozen=True)
class Exposure:
    """One measurement; ``exposure`` None means unknown (no heartbeat at all)."""

    measured_at: datetime
    exposure: timedelta | None
    lower_bound: bool  # True: nothing in the archived range; real exposure is larger
    safe_heartbeat: Heartbeat | None
    newest_heartbeat: Heartbeat | None
    archive_max: str | None
    end_lsn: str | None
    segment_size: int
    method: str = METHOD

    @property
    def seconds(self) -> float | None:
        return self.exposure.total_seconds() if self.exposure is not None else None


def measure_exposure(
    endpoint: PostgresEndpoint,
    archive_max: str | None,
    *,
    now: datetime | None = None,
    segment_size: int | None = None,
    timeout: float = heartbeat.DEFAULT_TIMEOUT,
) -> Exposure:
    """Measure exposure on the primary's heartbeat table against ``archive_max``.

    ``segment_size`` None reads the server's ``wal_segment_size``; ``now`` None uses the
    server's clock. Raises ``PostgresError`` when the server cannot be queried.
    """
    where = endpoint.describe()
    try:
        with connect(endpoint, timeout=timeout) as conn:
            row = conn.execute(
                b"SELECT clock_timestamp(), setting::bigint FROM pg_settings"
                b" WHERE name = 'wal_segment_size'"
            ).fetchone()
            if row is None:  # pragma: no cover - the setting always exists
                raise PostgresError(f"{where}: wal_segment_size is not readable")
            measured_at = now or row[0]
            size = segment_size or int(row[1])
            end_lsn = segment_end_lsn(archive_max, size) if archive_max else None
            newest = heartbeat.newest_heartbeat(conn)
            safe = (
                heartbeat.newest_heartbeat_before_lsn(conn, end_lsn)
                if end_lsn is not None and newest is not None
                else None
            )
            oldest = heartbeat.oldest_heartbeat(conn) if safe is None and newest else None
    except psycopg.Error as exc:
        detail = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
        raise PostgresError(
            f"RPO exposure measurement on {where} failed: {detail}",
            hint="check that the primary is up and reachable from drd",
        ) from exc
    if safe is not None:
        value, lower = exposure(measured_at, safe.ts), False
    elif oldest is not None:
        value, lower = exposure(measured_at, oldest.ts), True
    else:
        value, lower = None, False
    return Exposure(
        measured_at=measured_at,
        exposure=value,
        lower_bound=lower,
        safe_heartbeat=safe,
        newest_heartbeat=newest,
        archive_max=archive_max,
        end_lsn=end_lsn,
        segment_size=size,
    )


def verdict(exposure: timedelta | None, rpo: timedelta, warning_ratio: float) -> Verdict:
    """critical at or beyond the RPO, warning from ``warning_ratio`` * RPO, else ok."""
    if exposure is None:
        return "unknown"
    if exposure >= rpo:
        return "critical"
    if exposure >= rpo * warning_ratio:
        return "warning"
    return "ok"
