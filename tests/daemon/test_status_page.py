"""The estate status page: RAG rules, the view from the catalog, HTML, a real broken estate,
and a screenshot in headless Chromium (kept under test-artifacts/)."""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest
import yaml

from drd.catalog import BackupRecord, Catalog, DrillRecord, SnapshotRecord, open_catalog
from drd.config import Estate, load
from drd.daemon.http import HttpServer
from drd.daemon.state import Readiness
from drd.daemon.status_page import (
    Cell,
    EstateView,
    backup_cell,
    build_view,
    checks_cell,
    drill_cell,
    human,
    judge,
    overall_cell,
    render_page,
    rpo_cell,
    snapshot_cell,
    worst,
)
from drd.status import WorkloadStatus

ROOT = Path(__file__).resolve().parents[2]
TIERS = ROOT / "tiers"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)  # a Sunday, 03:00
M, H, D = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)


# -- a fake estate (config + tiers, nothing running) ------------------------------------


def _workload(name: str, tier: str, *, filestore: bool = True) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": name,
        "tier": tier,
        "repository": "fs",
        "postgres": {"primary": {"port": 5999}, "pgdata": f"/srv/{name}/pgdata"},
    }
    if filestore:
        doc["filestore"] = {"path": f"/srv/{name}/filestore"}
    return doc


@pytest.fixture
def fake_estate(tmp_path: Path) -> Estate:
    config = {
        "version": 1,
        "state_dir": str(tmp_path / "state"),
        "tiers_dir": str(TIERS),
        "repositories": [
            {
                "name": "fs",
                "type": "filesystem",
                "path": str(tmp_path / "repo"),
                "encryption": {"passphrase": {"env": "DRD_TEST_UNUSED_PASSPHRASE"}},
            }
        ],
        "workloads": [
            _workload("erp-prod", "tier-0"),
            _workload("finance", "tier-1"),
            _workload("warehouse", "tier-1"),
            _workload("wiki", "tier-3", filestore=False),
            _workload("crm", "tier-2"),
        ],
    }
    path = tmp_path / "drd.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return load(path, check_secrets=False)


def _status(name: str, tier: str = "tier-1", **changes: Any) -> WorkloadStatus:
    base = WorkloadStatus(
        workload=name,
        tier=tier,
        rpo=15 * M,
        rto=2 * H,
        repository="fs",
        primary="127.0.0.1:5999/postgres",
        primary_state="primary",
        primary_error=None,
        last_full_age=D,
        last_diff_age=None,
        last_incr_age=None,
        last_backup="20261128-020000F (full)",
        last_archived_wal="000000010000000000000042",
        archive_age=timedelta(seconds=40),
        archive_failures=0,
        rpo_exposure=timedelta(seconds=50),
        rpo_verdict="ok",
        checks="10/10 ok",
        verdict="ok",
    )
    return replace(base, **changes)


def _backup(name: str, kind: str, stopped: datetime, label: str = "") -> BackupRecord:
    return BackupRecord(
        workload=name,
        stanza=name,
        repository="fs",
        label=label or f"{stopped:%Y%m%d-%H%M%S}{kind[0].upper()}",
        type=kind,  # type: ignore[arg-type]
        started_at=stopped - 5 * M,
        stopped_at=stopped,
    )


def _drill(
    name: str, finished: datetime, *, verdict: str = "pass", rpo: float = 30, rto: float = 600
) -> DrillRecord:
    return DrillRecord(
        workload=name,
        t0=finished - timedelta(seconds=rto),
        started_at=finished - timedelta(seconds=rto),
        finished_at=finished,
        status="succeeded" if verdict == "pass" else "failed",
        measured_rpo_seconds=rpo,
        measured_rto_seconds=rto,
        verdict=verdict,
        details={"reasons": [] if verdict == "pass" else ["check attachments failed: 3 missing"]},
    )


def _snapshot(name: str, created: datetime) -> SnapshotRecord:
    return SnapshotRecord(
        id=f"{abs(hash((name, created))):016x}" * 4,
        workload=name,
        repository="fs",
        created_at=created,
        files=1234,
        bytes=10**9,
        added_bytes=10**6,
    )


def _fill(catalog: Catalog, now: datetime) -> dict[str, WorkloadStatus]:
    """One healthy, one amber, one red workload, one without a filestore, one unmeasured."""
    for name, kind, age in (
        ("erp-prod", "full", 2 * D),
        ("erp-prod", "diff", 21 * H),
        ("erp-prod", "incr", 40 * M),
        ("finance", "full", 5 * D),
        ("finance", "diff", 2.5 * D),  # tier-1 diffs: limit 3d, warn from 2.4d
        ("warehouse", "full", 3 * D),
        ("wiki", "full", 4 * D),
        ("wiki", "incr", 20 * H),
        ("crm", "full", 1 * D),
    ):
        catalog.record_backup(_backup(name, kind, now - age))
    for name, age in (("erp-prod", 2 * M), ("finance", 8 * M), ("warehouse", 6 * H)):
        catalog.record_snapshot(_snapshot(name, now - age))
    catalog.record_drill(_drill("erp-prod", now - 10 * H, rpo=12, rto=540))
    catalog.record_drill(_drill("finance", now - 2 * D, rpo=40, rto=6000))  # RTO near 2h
    catalog.record_drill(_drill("warehouse", now - 3 * D, verdict="fail", rpo=35, rto=900))
    catalog.record_drill(_drill("wiki", now - 20 * D, rpo=300, rto=1200))
    return {
        "erp-prod": _status("erp-prod", "tier-0", rpo=5 * M, rto=30 * M),
        "finance": _status(
            "finance", rpo_exposure=13 * M, rpo_verdict="warning", verdict="warning"
        ),
        "warehouse": _status(
            "warehouse",
            rpo_exposure=None,
            rpo_verdict="unknown",
            archive_failures=17,
            checks="7/10 ok; failing: archive_command, archive_failures",
            verdict="critical",
        ),
        "wiki": _status("wiki", "tier-3", rpo=24 * H, rto=72 * H, rpo_exposure=2 * H),
    }


@pytest.fixture
def catalog() -> Iterator[Catalog]:
    with open_catalog("sqlite:///:memory:") as cat:
        yield cat


# -- the rule -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "limit", "failed", "expected"),
    [
        (timedelta(0), 10 * M, False, "green"),
        (7 * M + timedelta(seconds=59), 10 * M, False, "green"),
        (8 * M, 10 * M, False, "amber"),  # at the warning ratio (0.8)
        (10 * M, 10 * M, False, "amber"),  # exactly the objective still meets it
        (10 * M + timedelta(seconds=1), 10 * M, False, "red"),
        (None, 10 * M, False, "red"),  # missing is red, never green
        (timedelta(0), 10 * M, True, "red"),  # failed is red whatever the number
        (None, None, False, "none"),  # no limit: not applicable
        (5 * M, None, True, "none"),
    ],
)
def test_judge(
    value: timedelta | None, limit: timedelta | None, failed: bool, expected: str
) -> None:
    """Green within, amber from the warning ratio, red above/failed/missing, N/A without limit."""
    assert judge(value, limit, 0.8, failed=failed) == expected


def test_worst_and_human() -> None:
    """worst() orders none < green < amber < red; durations read as two units."""
    assert worst([]) == "none"
    assert worst(["green", "none"]) == "green"
    assert worst(["green", "red", "amber"]) == "red"
    assert human(timedelta(seconds=35)) == "35s"
    assert human(4 * M + timedelta(seconds=12)) == "4m 12s"
    assert human(3 * H) == "3h"
    assert human(2 * D + 4 * H + 5 * M) == "2d 4h"
    assert human(-M) == "0s"


@pytest.mark.parametrize(
    ("status", "elapsed", "rag", "text"),
    [
        (None, timedelta(0), "red", "not measured yet"),
        (_status("w", rpo_exposure=None), timedelta(0), "red", "unknown"),
        (_status("w", rpo_exposure=M), timedelta(0), "green", "1m"),
        (_status("w", rpo_exposure=13 * M), timedelta(0), "amber", "13m"),
        (_status("w", rpo_exposure=16 * M), timedelta(0), "red", "16m"),
        # measured 10m ago: the exposure may have grown by as much since
        (_status("w", rpo_exposure=10 * M), 6 * M, "red", "10m"),
    ],
)
def test_rpo_cell(
    fake_estate: Estate, status: WorkloadStatus | None, elapsed: timedelta, rag: str, text: str
) -> None:
    """RPO exposure against the tier-1 objective (15m), judged on exposure + measurement age."""
    cell = rpo_cell(status, fake_estate.tiers["tier-1"], elapsed)
    assert (cell.rag, cell.text) == (rag, text)
    assert "objective 15m" in cell.detail


@pytest.mark.parametrize(
    ("ages", "rag"),
    [
        ({}, "red"),
        ({"full": D, "diff": None, "incr": H}, "green"),
        ({"full": 9 * D}, "amber"),  # full limit 10d12h (weekly x 1.5), warn from 8d10h
        ({"full": 11 * D}, "red"),
        ({"full": 6 * D}, "amber"),  # diffs (daily Mon-Sat, limit 3d) are late: amber only
        ({"full": 6 * D, "diff": 20 * H, "incr": 7 * H}, "green"),
    ],
)
def test_backup_cell(fake_estate: Estate, ages: dict[str, timedelta | None], rag: str) -> None:
    """Each type against allowed_backup_age; a full satisfies diff and incr; late diff is amber."""
    newest = {
        kind: _backup("w", kind, NOW - age) if age is not None else None
        for kind, age in ages.items()
    }
    cell = backup_cell(newest, fake_estate.tiers["tier-1"], NOW)
    assert cell.rag == rag, cell
    assert [p.name for p in cell.parts] == ["full", "diff", "incr"]


@pytest.mark.parametrize(
    ("workload", "age", "rag"),
    [
        ("wiki", None, "none"),  # no filestore: not applicable
        ("finance", None, "red"),
        ("finance", 5 * M, "green"),  # */15: limit 22m30s, warn from 18m
        ("finance", 20 * M, "amber"),
        ("finance", 30 * M, "red"),
    ],
)
def test_snapshot_cell(fake_estate: Estate, workload: str, age: timedelta | None, rag: str) -> None:
    """Snapshot age against the filestore cron's longest gap x 1.5; N/A without a filestore."""
    config = fake_estate.config.workload(workload)
    snap = _snapshot(workload, NOW - age) if age is not None else None
    assert snapshot_cell(snap, fake_estate.tiers["tier-1"], config, NOW).rag == rag


@pytest.mark.parametrize(
    ("drill", "rag"),
    [
        (None, "red"),
        (_drill("w", NOW - D), "green"),
        (_drill("w", NOW - 7 * D), "amber"),  # max_age 8d, warn from 6d9h36m
        (_drill("w", NOW - 9 * D), "red"),
        (_drill("w", NOW - D, rto=6000), "amber"),  # 1h40m of a 2h RTO
        (_drill("w", NOW - D, rpo=16 * 60), "red"),
        (_drill("w", NOW - D, verdict="fail"), "red"),
    ],
)
def test_drill_cell(fake_estate: Estate, drill: DrillRecord | None, rag: str) -> None:
    """Verdict, age vs drills.max_age, measured RPO and RTO vs the objectives."""
    cell = drill_cell(drill, False, fake_estate.tiers["tier-1"], NOW)
    assert cell.rag == rag, cell
    if drill is not None and drill.verdict == "fail":
        assert cell.text.startswith("failed ")
        assert "attachments failed" in cell.detail


def test_checks_and_overall_cells() -> None:
    """The monitoring verdict colours the checks cell; the overall cell is the worst one."""
    assert checks_cell(None).rag == "red"
    assert checks_cell(_status("w")).rag == "green"
    assert checks_cell(_status("w", verdict="warning")).rag == "amber"
    down = checks_cell(
        _status(
            "w",
            verdict="critical",
            checks="1/3 ok; failing: connection",
            primary_state="down",
            primary_error="connection refused",
        )
    )
    assert (down.rag, down.text, down.detail) == ("red", "1/3 ok", "failing: connection")
    assert down.parts[0].text == "down: connection refused"
    cells = {"rpo": Cell("green", ""), "snapshot": Cell("none", ""), "checks": Cell("amber", "")}
    assert overall_cell(cells).rag == "amber"
    assert overall_cell(cells).detail == "WARN: checks"
    cells["rpo"] = Cell("red", "")
    assert overall_cell(cells).detail == "FAIL: RPO; WARN: checks"
    assert overall_cell({"snapshot": Cell("none", ""), "rpo": Cell("green", "")}).label == "OK"


# -- the view and the page --------------------------------------------------------------


def test_build_view_from_catalog_and_statuses(fake_estate: Estate, catalog: Catalog) -> None:
    """One row per workload, worst first; unmeasured and failing workloads are red."""
    statuses = _fill(catalog, NOW)
    view = build_view(fake_estate, catalog, statuses=statuses, role="leader", now=NOW, title="acme")
    rows = {row.workload: row for row in view.rows}
    assert set(rows) == {"erp-prod", "finance", "warehouse", "wiki", "crm"}
    assert rows["erp-prod"].overall.rag == "green"
    assert rows["finance"].overall.rag == "amber"
    assert rows["finance"].overall.detail == "WARN: RPO, backup, drill, checks"
    assert rows["warehouse"].cells["checks"].label == "FAIL"
    assert rows["warehouse"].cells["drill"].rag == "red"
    assert rows["wiki"].cells["snapshot"].label == "N/A"
    assert rows["wiki"].cells["drill"].rag == "green"  # 20d old, tier-3 allows 100d
    assert rows["crm"].cells["rpo"].text == "not measured yet"
    assert [r.overall.rag for r in view.rows] == ["red", "red", "amber", "green", "green"]
    assert view.overall() == "red"
    assert view.counts() == {"green": 2, "amber": 1, "red": 2, "none": 0}
    data = view.as_dict()
    assert data["role"] == "leader"
    assert data["workloads"][0]["checks"]["label"] in ("FAIL", "OK")
    finance = next(w for w in data["workloads"] if w["workload"] == "finance")
    assert finance["values"]["rpo_exposure_seconds"] == 780.0
    assert finance["values"]["drill_verdict"] == "pass"


def test_catalog_failure_turns_cells_red_not_the_page(fake_estate: Estate) -> None:
    """A catalog that stops answering gives red 'catalog unreachable' cells, not an exception."""
    broken = open_catalog("sqlite:///:memory:")
    broken.close()
    view = build_view(fake_estate, broken, statuses={}, now=NOW)
    for row in view.rows:
        assert row.cells["backup"].text == "catalog unreachable"
        assert row.cells["drill"].rag == "red"
        assert row.overall.rag == "red"
    wiki = next(row for row in view.rows if row.workload == "wiki")
    assert wiki.cells["snapshot"].label == "N/A"  # still not applicable


def test_page_is_escaped_self_contained_and_flags_staleness(
    fake_estate: Estate, catalog: Catalog
) -> None:
    """Autoescaped, refreshing, no external asset; words with colours; stale data says so."""
    statuses = _fill(catalog, NOW)
    statuses["warehouse"] = replace(
        statuses["warehouse"], primary_state="down", primary_error="<script>alert(1)</script>"
    )
    view = build_view(fake_estate, catalog, statuses=statuses, role="follower", now=NOW)
    html = render_page(view, now=NOW + timedelta(seconds=5))
    assert '<meta http-equiv="refresh" content="30">' in html
    assert "&lt;script&gt;alert(1)" in html
    assert "<script" not in html
    assert "http://" not in html
    assert "https://" not in html
    assert "src=" not in html
    for word in ("OK", "WARN", "FAIL", "N/A", "FOLLOWER", "Legend".lower()):
        assert word in html
    assert "STALE" not in html
    assert "<title>FAIL · drd" in html
    old = render_page(view, now=NOW + timedelta(minutes=10))
    assert "STALE: this data is 10m 0s old" in old or "STALE: this data is 10m old" in old


def _get(server: HttpServer, path: str) -> bytes:
    conn = HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200, (path, response.status)
        return response.read()
    finally:
        conn.close()


# -- headless Chromium ------------------------------------------------------------------


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _screenshot(url: str, out: Path, profile: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # tests run as root, where the sandbox refuses to start
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--screenshot={out}",
            "--window-size=1400,900",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="chromium not installed")
def test_status_page_in_headless_chromium(
    fake_estate: Estate, catalog: Catalog, tmp_path: Path
) -> None:
    """The served page renders in a real browser: a 1400x900 PNG with content, kept as artifact."""
    now = datetime.now(UTC)
    statuses = _fill(catalog, now)
    ready = Readiness(True, True, "leader")

    def view() -> EstateView:
        return build_view(fake_estate, catalog, statuses=statuses, role="leader", title="acme-prod")

    out = ARTIFACTS / "status-page.png"
    with HttpServer("127.0.0.1", 0, readiness=lambda: ready, status=view) as server:
        _screenshot(server.url + "/", out, tmp_path / "chromium")
    assert _png_size(out) == (1400, 900)
    assert out.stat().st_size > 40_000  # a blank or error page compresses to a few kB
    print(f"status page screenshot: {out}")


# -- a real estate: a failed check shows on the page and in /metrics ----------------------


@pytest.mark.integration
def test_broken_archiving_turns_the_row_red_and_shows_in_metrics(
    estate_builder: Any, make_cluster: Callable[..., Any], tmp_path: Path
) -> None:
    """Archiving to a wrong stanza: checks FAIL on the page, failures in /metrics."""
    from drd.backup.db import backup_db
    from drd.catalog import open_configured
    from drd.check import failed_critical, run_checks
    from drd.postgres.heartbeat import write_heartbeat
    from drd.status import workload_status
    from drd.testing import wait_until
    from drd.testing.estate import start_protected

    cluster = make_cluster("page")
    estate_builder.workload("erp", cluster, estate_builder.filesystem_repo())
    estate = estate_builder.load()
    start_protected(estate, "erp", cluster)
    primary = estate.config.workload("erp").postgres.primary
    write_heartbeat(primary)
    with open_configured(estate.config) as cat:
        backup_db(estate, "erp", "full", cat)
    write_heartbeat(primary)
    cluster.switch_wal_and_wait_archived()

    with open_configured(estate.config) as cat:
        healthy = build_view(estate, cat, statuses={"erp": workload_status(estate, "erp")})
    row = healthy.rows[0]
    assert row.cells["checks"].label == "OK", row.cells["checks"]
    assert row.cells["rpo"].label == "OK", row.cells["rpo"]
    assert row.cells["backup"].label == "OK", row.cells["backup"]

    cfg_path = estate.config.state_dir / "pgbackrest" / "erp" / "pgbackrest.conf"
    wrong = f"pgbackrest --config={cfg_path} --stanza=wrong archive-push %p"
    cluster.execute(f"ALTER SYSTEM SET archive_command = '{wrong}'")
    cluster.execute("SELECT pg_reload_conf()")
    cluster.execute("CREATE TABLE after_break AS SELECT 1")
    cluster.execute("SELECT pg_switch_wal()")
    wait_until(
        lambda: cluster.scalar(
            "SELECT last_failed_time > coalesce(last_archived_time, '-infinity')"
            " FROM pg_stat_archiver"
        ),
        timeout=30,
        what="the archiver to fail with the wrong stanza",
    )
    failed = failed_critical(run_checks(estate, "erp", quick=True))
    assert "archive_command" in {r.name for r in failed}
    status = workload_status(estate, "erp")  # what the daemon's monitoring job does

    with open_configured(estate.config) as cat:

        def view() -> EstateView:
            return build_view(estate, cat, statuses={"erp": status}, role="leader")

        ready = Readiness(True, True, "leader")
        with HttpServer("127.0.0.1", 0, readiness=lambda: ready, status=view) as server:
            page = _get(server, "/").decode()
            exposition = _get(server, "/metrics")
            if shutil.which(CHROMIUM):
                shot = ARTIFACTS / "status-page-broken-archiving.png"
                _screenshot(server.url + "/", shot, tmp_path / "chromium")
                print(f"status page screenshot: {shot}")
        row = view().rows[0]
    checks = row.cells["checks"]
    assert (checks.rag, checks.label) == ("red", "FAIL")
    assert "archive_command" in checks.detail
    assert row.overall.label == "FAIL"
    assert 'id="wl-erp"' in page
    assert "archive_command" in page
    samples = [
        line
        for line in exposition.decode().splitlines()
        if line.startswith('drd_wal_archive_failed_total{workload="erp"}')
    ]
    assert samples, exposition
    assert float(samples[0].split()[-1]) > 0


def test_template_ships_in_the_wheel() -> None:
    """pyproject's package-data covers the page template (else the installed daemon 500s)."""
    import fnmatch
    import tomllib

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["drd"]
    templates = sorted((ROOT / "drd" / "daemon" / "templates").glob("*.html"))
    assert templates
    for template in templates:
        relative = template.relative_to(ROOT / "drd").as_posix()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), (relative, patterns)
