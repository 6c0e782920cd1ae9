"""Live RPO exposure: LSN and segment arithmetic (pure), verdicts, and the measurement
against a real primary archiving through drd's pgBackRest config."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from drd.config.models import PostgresEndpoint
from drd.errors import PostgresError
from drd.postgres import heartbeat
from drd.rpo import (
    DEFAULT_SEGMENT_SIZE,
    exposure,
    format_lsn,
    measure_exposure,
    parse_lsn,
    segment_end_lsn,
    segment_name,
    segment_start_lsn,
    verdict,
)
from drd.testing import PgCluster
from drd.testing.estate import EstateBuilder, start_protected
from drd.testing.processes import free_port

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_lsn_text_round_trips() -> None:
    """'X/Y' parses to a byte position and formats back the way PostgreSQL prints it."""
    assert parse_lsn("0/0") == 0
    assert parse_lsn("0/5000000") == 0x5000000
    assert parse_lsn("16/B374D848") == 0x16 * 2**32 + 0xB374D848
    assert parse_lsn("16/b374d848") == parse_lsn("16/B374D848")
    assert format_lsn(0x16 * 2**32 + 0xB374D848) == "16/B374D848"
    assert format_lsn(0x5000000) == "0/5000000"
    assert format_lsn(parse_lsn("FFFFFFFF/FFFFFFFF")) == "FFFFFFFF/FFFFFFFF"
    for bad in ("", "5000000", "0/", "G/0", "0/123456789", "1/2/3"):
        with pytest.raises(ValueError, match="not an LSN"):
            parse_lsn(bad)
    with pytest.raises(ValueError, match="out of range"):
        format_lsn(-1)


def test_segment_end_is_the_start_of_the_next_segment() -> None:
    """A 16 MiB segment ends where the next starts, across the 4 GiB log-id boundary too."""
    assert segment_start_lsn("000000010000000000000005") == "0/5000000"
    assert segment_end_lsn("000000010000000000000005") == "0/6000000"
    assert segment_end_lsn("000000010000000000000001") == "0/2000000"
    # Last segment of log id 0 (0xFF with 16 MiB segments): the end is 1/0.
    assert segment_end_lsn("0000000100000000000000FF") == "1/0"
    assert segment_end_lsn("00000003000000160000000B") == "16/C000000"
    # The timeline does not move positions.
    assert segment_end_lsn("00000002000000000000000A") == segment_end_lsn(
        "00000001000000000000000A"
    )
    assert DEFAULT_SEGMENT_SIZE == 16 * 1024 * 1024


def test_segment_arithmetic_with_other_segment_sizes() -> None:
    """initdb --wal-segsize changes how many segments a log id holds."""
    one_mib, one_gib = 1 << 20, 1 << 30
    assert segment_end_lsn("000000010000000000000FFF", one_mib) == "1/0"
    assert segment_end_lsn("000000010000000000000002", one_gib) == "0/C0000000"
    assert segment_end_lsn("000000010000000100000003", one_gib) == "2/0"
    with pytest.raises(ValueError, match="does not exist"):
        segment_end_lsn("000000010000000000000004", one_gib)  # only 4 per log id
    with pytest.raises(ValueError, match="power of two"):
        segment_end_lsn("000000010000000000000001", 3 << 20)


def test_segment_name_matches_lsn_positions() -> None:
    """segment_name is pg_walfile_name: an LSN lies in [start, end) of its segment."""
    for lsn in ("0/0", "0/5000000", "0/5FFFFFF", "16/B374D848", "FFFFFFFF/FE000000"):
        name = segment_name(lsn, timeline=1)
        start, end = parse_lsn(segment_start_lsn(name)), parse_lsn(segment_end_lsn(name))
        assert start <= parse_lsn(lsn) < end
        assert end - start == DEFAULT_SEGMENT_SIZE
    assert segment_name("16/B374D848", timeline=3) == "0000000300000016000000B3"


def test_bad_segment_names_are_refused() -> None:
    """Only the 24-hex-digit names pgBackRest reports are accepted."""
    for bad in ("", "00000001000000000000000", "000000010000000000000005.partial", "0" * 23 + "g"):
        with pytest.raises(ValueError, match="not a WAL segment name"):
            segment_end_lsn(bad)


def test_exposure_and_verdict() -> None:
    """Exposure is now - ts (never negative); the verdict follows RPO and warning ratio."""
    assert exposure(T0, None) is None
    assert exposure(T0, T0 - timedelta(seconds=42)) == timedelta(seconds=42)
    assert exposure(T0, T0 + timedelta(seconds=1)) == timedelta(0)
    rpo = timedelta(minutes=15)
    assert verdict(None, rpo, 0.8) == "unknown"
    assert verdict(timedelta(minutes=5), rpo, 0.8) == "ok"
    assert verdict(timedelta(minutes=12), rpo, 0.8) == "warning"
    assert verdict(timedelta(minutes=14, seconds=59), rpo, 0.8) == "warning"
    assert verdict(timedelta(minutes=15), rpo, 0.8) == "critical"
    assert verdict(timedelta(hours=3), rpo, 0.8) == "critical"
    assert verdict(timedelta(minutes=14), rpo, 1.0) == "ok"


@pytest.mark.integration
def test_unreachable_primary_raises_postgres_error() -> None:
    """No server: the caller gets a PostgresError naming the endpoint, not a result."""
    dead = PostgresEndpoint(host="127.0.0.1", port=free_port())
    with pytest.raises(PostgresError, match=f"127.0.0.1:{dead.port}/postgres"):
        measure_exposure(dead, "000000010000000000000005", timeout=2)


@pytest.mark.integration
def test_exposure_counts_only_heartbeats_inside_the_archived_range(
    estate_builder: EstateBuilder, make_cluster: Callable[..., PgCluster]
) -> None:
    """A beat switched out and archived is safe; a newer unarchived beat is not."""
    cluster = make_cluster("rposrc")
    estate_builder.workload("rpo", cluster, estate_builder.filesystem_repo())
    estate = estate_builder.load()
    _, pgbr = start_protected(estate, "rpo", cluster)
    primary = estate.config.workload("rpo").postgres.primary

    # Nothing written yet: unknown, not zero.
    empty = measure_exposure(primary, pgbr.info().archive_max)
    assert empty.exposure is None
    assert empty.newest_heartbeat is None
    assert empty.segment_size == DEFAULT_SEGMENT_SIZE  # read from the server

    safe = heartbeat.write_heartbeat(primary)
    switched = cluster.switch_wal_and_wait_archived()
    archive_max = pgbr.info().archive_max
    assert archive_max is not None
    assert archive_max >= switched

    # The arithmetic agrees with the server's own naming of positions.
    end = segment_end_lsn(archive_max)
    # (PostgreSQL 15 names a boundary LSN after the segment it ends: probe either side.)
    assert cluster.scalar("SELECT pg_walfile_name(%s::pg_lsn - 1)", (end,)) == archive_max
    after = cluster.scalar("SELECT pg_walfile_name(%s::pg_lsn + 1)", (end,))
    assert after == segment_name(end, timeline=1) > archive_max

    first = measure_exposure(primary, archive_max)
    assert first.safe_heartbeat == safe
    assert first.newest_heartbeat == safe
    assert first.end_lsn == end
    assert first.exposure is not None
    assert timedelta(0) <= first.exposure < timedelta(minutes=1)
    assert first.lower_bound is False
    assert "archive_max" in first.method

    unsafe = heartbeat.write_heartbeat(primary)  # no switch: its WAL is not archived
    assert parse_lsn(unsafe.lsn) >= parse_lsn(end)
    now = unsafe.ts + timedelta(seconds=30)
    second = measure_exposure(primary, archive_max, now=now)
    assert second.newest_heartbeat == unsafe
    assert second.safe_heartbeat == safe
    assert second.exposure == now - safe.ts
    assert second.measured_at == now
    assert verdict(second.exposure, timedelta(minutes=15), 0.8) == "ok"

    # An archive that ends before the first beat proves nothing since then: lower bound.
    earlier = segment_name(format_lsn(parse_lsn(safe.lsn) - DEFAULT_SEGMENT_SIZE), timeline=1)
    before = measure_exposure(primary, earlier, now=now)
    assert before.safe_heartbeat is None
    assert before.lower_bound is True
    assert before.exposure == now - safe.ts
    nothing = measure_exposure(primary, None, now=now)
    assert nothing.end_lsn is None
    assert nothing.lower_bound is True
    assert nothing.exposure == now - safe.ts
