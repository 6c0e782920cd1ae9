"""WAL continuity without I/O: segment arithmetic, gap detection, and ``check_continuity``
over a fake pgBackRest runner that prints canned ``info`` and ``repo-ls`` JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drd.command import CommandResult
from drd.errors import BackupError, CommandError, ConfigError
from drd.pgbackrest.continuity import (
    ContinuityReport,
    Gap,
    archived_segment,
    check_continuity,
    find_gaps,
    next_segment,
    parse_segment,
    segment_name,
    segment_position,
    segments_per_log,
)
from drd.pgbackrest.runner import Pgbackrest
from drd.pgbackrest.stanza import StanzaConfig
from drd.retry import RetryPolicy

MiB = 1024 * 1024
SHA = "9ce6ea9e76194e841ac87c799e7c044a6a5225a7"


def seg(position: int, timeline: int = 1, segment_size: int = 16 * MiB) -> str:
    return segment_name(timeline, position, segment_size=segment_size)


# -- arithmetic ------------------------------------------------------------------------


def test_segments_per_log_for_each_size() -> None:
    """A log id spans 4 GiB: 256 segments of 16 MiB, 4096 of 1 MiB, 4 of 1 GiB."""
    assert segments_per_log() == 256
    assert segments_per_log(MiB) == 4096
    assert segments_per_log(64 * MiB) == 64
    assert segments_per_log(1024 * MiB) == 4


@pytest.mark.parametrize("size", [0, MiB // 2, 3 * MiB, 2048 * MiB, 16 * MiB + 1])
def test_segments_per_log_rejects_sizes_postgres_cannot_have(size: int) -> None:
    """Segment sizes that are not a power of two in 1 MiB..1 GiB raise ValueError."""
    with pytest.raises(ValueError, match="invalid WAL segment size"):
        segments_per_log(size)


def test_parse_segment_fields_and_position() -> None:
    """Timeline, log id and segment are read as hex; position ignores the timeline."""
    parsed = parse_segment("0000000A000000030000001F")
    assert (parsed.timeline, parsed.log, parsed.seg) == (10, 3, 31)
    assert parsed.position == 3 * 256 + 31
    assert parsed.name == "0000000A000000030000001F"
    assert segment_position("00000001000000030000001F") == segment_position(
        "0000000A000000030000001F"
    )


@pytest.mark.parametrize(
    "name",
    [
        "",
        "00000001000000000000001",  # 23 digits
        "0000000100000000000000011",  # 25 digits
        "00000001000000000000000a",  # lowercase
        "00000001000000000000000G",
        "000000000000000000000001",  # timeline 0
        "000000010000000000000100",  # segment part 0x100 >= 256 for 16 MiB
        "000000010000000000000001.partial",
        "00000002.history",
    ],
)
def test_parse_segment_rejects_bad_names(name: str) -> None:
    """Anything PostgreSQL would not name a 16 MiB segment raises ValueError."""
    with pytest.raises(ValueError, match="not a WAL segment name"):
        parse_segment(name)


def test_next_segment_crosses_log_id_boundary_for_16_mib() -> None:
    """...000000FF is followed by the next log id's segment 0 with 16 MiB segments."""
    assert next_segment("0000000100000000000000FE") == "0000000100000000000000FF"
    assert next_segment("0000000100000000000000FF") == "000000010000000100000000"
    assert next_segment("00000003000000AB000000FF") == "00000003000000AC00000000"


def test_next_segment_crosses_boundary_for_other_sizes() -> None:
    """The boundary is at 0x3F for 64 MiB, 0x3 for 1 GiB, 0xFFF for 1 MiB segments."""
    assert next_segment("00000001000000000000003F", segment_size=64 * MiB) == (
        "000000010000000100000000"
    )
    assert next_segment("000000010000000000000003", segment_size=1024 * MiB) == (
        "000000010000000100000000"
    )
    assert next_segment("000000010000000000000FFF", segment_size=MiB) == (
        "000000010000000100000000"
    )
    with pytest.raises(ValueError, match="segment part must be below 0x40"):
        parse_segment("000000010000000000000040", segment_size=64 * MiB)


@given(
    size_exp=st.integers(min_value=20, max_value=30),
    timeline=st.integers(min_value=1, max_value=0xFFFFFFFF),
    position=st.integers(min_value=0, max_value=2**40),
)
def test_name_and_position_round_trip(size_exp: int, timeline: int, position: int) -> None:
    """segment_name and parse_segment are inverse for every valid size, timeline, position."""
    size = 2**size_exp
    position %= segments_per_log(size) * 0x100000000
    parsed = parse_segment(segment_name(timeline, position, segment_size=size), segment_size=size)
    assert (parsed.timeline, parsed.position) == (timeline, position)


def test_segment_name_rejects_out_of_range() -> None:
    """Timeline 0 and negative positions have no name."""
    with pytest.raises(ValueError, match="invalid timeline"):
        segment_name(0, 5)
    with pytest.raises(ValueError, match="out of range"):
        segment_name(1, -1)


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        (f"000000010000000000000001-{SHA}.zst", "000000010000000000000001"),
        (f"000000010000000000000001-{SHA}.gz", "000000010000000000000001"),
        (f"000000010000000000000001-{SHA}", "000000010000000000000001"),
        (f"000000010000000000000001.partial-{SHA}.zst", None),
        ("000000010000000000000002.00000028.backup", None),
        ("00000002.history", None),
        (f"000000010000000000000001-{SHA}.zst.tmp", None),
        ("archive.info", None),
    ],
)
def test_archived_segment_only_accepts_full_segments(filename: str, expected: str | None) -> None:
    """Segment files count; .partial, .backup, .history and other files do not."""
    assert archived_segment(filename) == expected


# -- gaps -------------------------------------------------------------------------------


def test_no_gap() -> None:
    """A contiguous range across a log-id boundary has no gap."""
    names = [seg(p) for p in range(250, 262)]
    assert find_gaps(names, names[0], names[-1]) == []


def test_one_missing_segment() -> None:
    """One missing segment is one gap of count 1."""
    names = [seg(p) for p in range(2, 10) if p != 5]
    assert find_gaps(names, seg(2), seg(9)) == [Gap(seg(5), seg(5), 1)]


def test_multi_segment_gap_across_log_boundary_and_several_gaps() -> None:
    """Runs of missing positions are reported as maximal gaps, in order."""
    missing = {254, 255, 256, 300}
    names = [seg(p) for p in range(250, 310) if p not in missing]
    assert find_gaps(names, seg(250), seg(309)) == [
        Gap("0000000100000000000000FE", "000000010000000100000000", 3),
        Gap(seg(300), seg(300), 1),
    ]


def test_gap_at_start_and_end() -> None:
    """Missing first and last segments of the range are gaps too."""
    names = [seg(p) for p in range(3, 8)]
    assert find_gaps(names, seg(1), seg(10)) == [
        Gap(seg(1), seg(2), 2),
        Gap(seg(8), seg(10), 3),
    ]


def test_empty_listing_is_one_gap_named_on_start_timeline() -> None:
    """With nothing listed the whole range is missing, named on start's timeline."""
    assert find_gaps([], seg(4, timeline=2), seg(6, timeline=3)) == [
        Gap(seg(4, timeline=2), seg(6, timeline=2), 3)
    ]


def test_positions_covered_on_any_timeline() -> None:
    """After a promotion the new timeline continues at the switch position: no gap."""
    names = [seg(p, 1) for p in range(1, 6)] + [seg(p, 2) for p in range(5, 9)]
    assert find_gaps(names, seg(1, 1), seg(8, 2)) == []
    # Duplicates and segments outside the range are harmless.
    assert find_gaps([*names, *names, seg(40)], seg(2, 1), seg(7, 2)) == []


def test_gap_named_on_timeline_of_segment_before_it() -> None:
    """A gap after a timeline switch is named on the newest timeline just before it."""
    names = [seg(p, 1) for p in range(1, 6)] + [seg(5, 2), seg(6, 2), seg(9, 2)]
    assert find_gaps(names, seg(1, 1), seg(9, 2)) == [Gap(seg(7, 2), seg(8, 2), 2)]


def test_find_gaps_rejects_bad_input() -> None:
    """A bad segment name or a start after the end raises ValueError."""
    with pytest.raises(ValueError, match="not a WAL segment name"):
        find_gaps(["nonsense"], seg(1), seg(2))
    with pytest.raises(ValueError, match="after its end"):
        find_gaps([], seg(5), seg(4))


@given(
    data=st.data(),
    start=st.integers(min_value=0, max_value=5000),
    length=st.integers(min_value=1, max_value=600),
    size_exp=st.sampled_from([20, 24, 26, 30]),
)
def test_removed_segments_are_exactly_the_gaps(
    data: st.DataObject, start: int, length: int, size_exp: int
) -> None:
    """Removing any k segments from a contiguous range reports exactly those positions."""
    size = 2**size_exp
    positions = list(range(start, start + length))
    removed = set(data.draw(st.lists(st.sampled_from(positions), max_size=length)))
    names = [seg(p, segment_size=size) for p in positions if p not in removed]
    gaps = find_gaps(
        names,
        seg(start, segment_size=size),
        seg(positions[-1], segment_size=size),
        segment_size=size,
    )
    reported: set[int] = set()
    for gap in gaps:
        first = segment_position(gap.first_missing, segment_size=size)
        last = segment_position(gap.last_missing, segment_size=size)
        assert gap.count == last - first + 1
        reported.update(range(first, last + 1))
    assert reported == removed
    assert len(gaps) == len({p for p in removed if p - 1 not in removed})


# -- report -----------------------------------------------------------------------------


def test_describe_continuous_and_gaps() -> None:
    """describe() is one line naming the range, or the missing segments."""
    ok = ContinuityReport("main", "15-1", seg(2), seg(9), 8)
    assert ok.ok
    assert ok.describe() == f"WAL continuous from {seg(2)} to {seg(9)} (8 segments)"

    one = ContinuityReport("main", "15-1", seg(2), seg(9), 8, gaps=(Gap(seg(5), seg(5), 1),))
    assert not one.ok
    assert one.describe() == (
        f"WAL gap: missing {seg(5)} (1 segment) between {seg(2)} and {seg(9)}"
        " (1 of 8 segments missing)"
    )
    many = ContinuityReport(
        "main",
        "15-1",
        seg(0),
        seg(99),
        100,
        gaps=tuple(Gap(seg(p), seg(p + 1), 2) for p in (10, 20, 30, 40)),
    )
    text = many.describe()
    assert text.startswith(f"4 WAL gaps: missing {seg(10)}..{seg(11)} (2 segments), ")
    assert "and 1 more gap " in text
    assert "(8 of 100 segments missing)" in text
    assert "\n" not in text

    unchecked = ContinuityReport("main", None, None, None, 0, reason="no WAL archived yet")
    assert not unchecked.ok
    assert unchecked.describe() == (
        "WAL continuity not checked for stanza main: no WAL archived yet"
    )


# -- check_continuity over a fake runner -----------------------------------------------


def _backup(label: str, wal_start: str, wal_stop: str) -> dict[str, Any]:
    return {
        "label": label,
        "type": "full",
        "timestamp": {"start": 1700000000, "stop": 1700000100},
        "archive": {"start": wal_start, "stop": wal_stop},
        "lsn": {"start": "0/2000028", "stop": "0/2000100"},
        "info": {"size": 1, "delta": 1, "repository": {"size": 1, "delta": 1}},
        "error": False,
    }


def _info(
    backups: Sequence[dict[str, Any]], archive_min: str | None, archive_max: str | None
) -> list[dict[str, Any]]:
    archive = (
        [{"id": "15-1", "min": archive_min, "max": archive_max}] if archive_max is not None else []
    )
    return [
        {
            "name": "main",
            "status": {"code": 0 if backups else 2, "message": "ok"},
            "cipher": "aes-256-cbc",
            "backup": list(backups),
            "archive": archive,
            "db": [{"id": 1, "system-id": 7000000000000000001, "version": "15"}],
        }
    ]


def _listing(names: Sequence[str]) -> dict[str, dict[str, object]]:
    listing: dict[str, dict[str, object]] = {".": {"type": "path"}}
    for name in names:
        listing[name[:16]] = {"type": "path"}
        listing[f"{name[:16]}/{name}-{SHA}.zst"] = {"type": "file", "size": 100, "time": 1}
    listing["archive.info"] = {"type": "file", "size": 10, "time": 1}
    return listing


class FakeRunner:
    """Answers ``info`` and ``repo-ls`` like pgBackRest would; records every argv."""

    def __init__(self, info: Any, listing: dict[str, dict[str, object]]) -> None:
        self.info = info
        self.listing = listing
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], **_: Any) -> CommandResult:
        self.calls.append(list(argv))
        out = self.info if "info" in argv else self.listing
        return CommandResult(tuple(argv), 0, json.dumps(out), "", 0.0)


def _pgbr(runner: Any) -> Pgbackrest:
    cfg = StanzaConfig("main", "main", "fs", "postgres", Path("/nonexistent"))
    return Pgbackrest(cfg, retry=RetryPolicy(attempts=1, deadline=1, base_delay=0), runner=runner)


def test_check_continuity_from_oldest_backup_to_archive_max() -> None:
    """The range is the oldest backup's wal_start to archive max; the archive id is listed."""
    names = [seg(p) for p in range(1, 12)]
    runner = FakeRunner(
        _info([_backup("b1", seg(3), seg(3)), _backup("b2", seg(8), seg(8))], seg(1), seg(10)),
        _listing([*names, "000000010000000000000003.00000028.backup"]),
    )
    report = check_continuity(_pgbr(runner))
    assert report == ContinuityReport("main", "15-1", seg(3), seg(10), 8)
    assert {"repo-ls", "--recurse", "archive/main/15-1"} <= set(runner.calls[1])


def test_check_continuity_reports_gap_as_data() -> None:
    """A missing segment is a gap in the report, not an exception."""
    names = [seg(p) for p in range(1, 11) if p != 6]
    report = check_continuity(
        _pgbr(FakeRunner(_info([_backup("b1", seg(2), seg(2))], seg(1), seg(10)), _listing(names)))
    )
    assert not report.ok
    assert report.gaps == (Gap(seg(6), seg(6), 1),)


def test_check_continuity_ignores_partial_and_misplaced_files() -> None:
    """A .partial segment or a segment outside its log-id directory does not cover a gap."""
    names = [seg(p) for p in range(1, 11) if p not in (4, 5)]
    listing = _listing(names)
    listing[f"0000000100000000/{seg(4)}.partial-{SHA}.zst"] = {"type": "file"}
    listing[f"{seg(5)}-{SHA}.zst"] = {"type": "file"}
    report = check_continuity(
        _pgbr(FakeRunner(_info([_backup("b1", seg(1), seg(1))], seg(1), seg(10)), listing))
    )
    assert report.gaps == (Gap(seg(4), seg(5), 2),)


def test_check_continuity_without_backup_uses_oldest_listed_segment() -> None:
    """With no backup yet, the range starts at the oldest segment of the current archive id."""
    names = [seg(p) for p in range(4, 9)]
    report = check_continuity(_pgbr(FakeRunner(_info([], seg(1), seg(8)), _listing(names))))
    assert (report.ok, report.start, report.end, report.segments_checked) == (
        True,
        seg(4),
        seg(8),
        5,
    )


def test_check_continuity_with_nothing_archived_is_not_ok() -> None:
    """Nothing archived: no range, a reason, not ok, and no repo-ls call."""
    runner = FakeRunner(_info([], None, None), {})
    report = check_continuity(_pgbr(runner))
    assert (report.ok, report.start, report.end, report.archive_id) == (False, None, None, None)
    assert report.reason is not None
    assert "no WAL archived" in report.describe()
    assert len(runner.calls) == 1


def test_check_continuity_wrong_segment_size_is_config_error() -> None:
    """Names impossible for the given segment size raise ConfigError with a hint."""
    names = [seg(p) for p in range(60, 70)]
    runner = FakeRunner(_info([_backup("b1", seg(60), seg(60))], seg(60), seg(69)), _listing(names))
    with pytest.raises(ConfigError, match="wal_segment_size"):
        check_continuity(_pgbr(runner), segment_size=64 * MiB)


def test_check_continuity_propagates_pgbackrest_errors() -> None:
    """A pgBackRest failure surfaces as BackupError with its code."""

    def failing(argv: Sequence[str], **_: Any) -> CommandResult:
        raise CommandError(
            "failed", returncode=55, stderr_tail="ERROR: [055]: unable to load info file"
        )

    with pytest.raises(BackupError) as caught:
        check_continuity(_pgbr(failing))
    assert caught.value.returncode == 55
