"""Odoo drill helpers on a real PostgreSQL 15 server: neutralize and verify_attachments."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from drd.drill import odoo
from drd.drill.odoo import is_odoo_database, neutralize, verify_attachments
from drd.errors import PostgresError
from drd.testing import PgCluster
from drd.testing.odoo import FixtureAttachment, create_odoo_schema, populate

pytestmark = pytest.mark.integration

DB = "odoo"


@pytest.fixture
def cluster(make_cluster: Callable[..., PgCluster]) -> PgCluster:
    """A running server with an empty database named ``odoo``."""
    pg = make_cluster("odoo")
    pg.initdb()
    pg.start()
    pg.execute(f"CREATE DATABASE {DB}")
    return pg


@pytest.fixture
def filestore(tmp_path: Path) -> Path:
    """The Odoo filestore directory of the database (data_dir/filestore/<db>)."""
    return tmp_path / "data" / "filestore" / DB


@pytest.fixture
def made(cluster: PgCluster, filestore: Path) -> list[FixtureAttachment]:
    """The populated Odoo-like database and filestore."""
    return populate(cluster, DB, filestore, attachments=20, seed=11)


def _connect(cluster: PgCluster) -> psycopg.Connection[Any]:
    return psycopg.connect(cluster.conninfo(DB), autocommit=True)


def _param(cluster: PgCluster, key: str) -> Any:
    return cluster.scalar("SELECT value FROM ir_config_parameter WHERE key = %s", (key,), dbname=DB)


def _single_owner(made: list[FixtureAttachment]) -> FixtureAttachment:
    counts = Counter(a.store_fname for a in made if a.store_fname)
    return next(a for a in made if a.store_fname and counts[a.store_fname] == 1)


# -- neutralize ----------------------------------------------------------------------


def test_neutralize_disables_crons_and_mail_and_flags_the_database(
    cluster: PgCluster, made: list[FixtureAttachment]
) -> None:
    """Crons, mail and fetchmail servers go inactive; is_neutralized set; new uuid."""
    old_uuid = _param(cluster, "database.uuid")
    assert cluster.scalar("SELECT count(*) FROM ir_cron WHERE active", dbname=DB) == 3
    with _connect(cluster) as conn:
        report = neutralize(conn)
    assert report.disabled == {"ir_cron": 3, "ir_mail_server": 2, "fetchmail_server": 1}
    assert report.missing_tables == ()
    assert report.flagged
    for table in ("ir_cron", "ir_mail_server", "fetchmail_server"):
        assert cluster.scalar(f"SELECT count(*) FROM {table} WHERE active", dbname=DB) == 0
    assert _param(cluster, "database.is_neutralized") == "true"
    new_uuid = _param(cluster, "database.uuid")
    assert new_uuid != old_uuid
    assert (report.old_uuid, report.new_uuid) == (old_uuid, new_uuid)
    assert _param(cluster, "database.secret") is not None  # other parameters untouched


def test_neutralize_is_idempotent(cluster: PgCluster, made: list[FixtureAttachment]) -> None:
    """A second run changes no rows, keeps the flag, and leaves one row per key."""
    with _connect(cluster) as conn:
        neutralize(conn)
        again = neutralize(conn)
    assert again.disabled == {"ir_cron": 0, "ir_mail_server": 0, "fetchmail_server": 0}
    assert _param(cluster, "database.is_neutralized") == "true"
    keys = cluster.query(
        "SELECT key, count(*) FROM ir_config_parameter GROUP BY key HAVING count(*) > 1",
        dbname=DB,
    )
    assert keys == []


def test_neutralize_reports_missing_tables(cluster: PgCluster) -> None:
    """Tables that are not there are skipped and named, the rest is still neutralized."""
    create_odoo_schema(cluster, DB, without=("ir_mail_server", "fetchmail_server"))
    cluster.execute("INSERT INTO ir_cron (name) VALUES ('x'), ('y')", dbname=DB)
    with _connect(cluster) as conn:
        report = neutralize(conn)
    assert report.missing_tables == ("ir_mail_server", "fetchmail_server")
    assert report.disabled == {"ir_cron": 2}
    assert _param(cluster, "database.is_neutralized") == "true"


def test_neutralize_without_config_table_is_reported_not_flagged(cluster: PgCluster) -> None:
    """No ir_config_parameter: reported as missing, and the report says not flagged."""
    create_odoo_schema(cluster, DB, without=("ir_config_parameter",))
    with _connect(cluster) as conn:
        report = neutralize(conn)
        assert not is_odoo_database(conn)
    assert "ir_config_parameter" in report.missing_tables
    assert not report.flagged


def test_neutralize_is_atomic(cluster: PgCluster, made: list[FixtureAttachment]) -> None:
    """A failure on the config parameters leaves the crons active (one transaction)."""
    cluster.execute(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN RAISE EXCEPTION 'refused'; END$$;"
        " CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON ir_config_parameter"
        " FOR EACH ROW EXECUTE FUNCTION refuse()",
        dbname=DB,
    )
    with _connect(cluster) as conn, pytest.raises(PostgresError, match="refused"):
        neutralize(conn)
    assert cluster.scalar("SELECT count(*) FROM ir_cron WHERE active", dbname=DB) == 3


def test_is_odoo_database(cluster: PgCluster) -> None:
    """False on an empty database, True once the Odoo tables exist."""
    with _connect(cluster) as conn:
        assert not is_odoo_database(conn)
        create_odoo_schema(conn)
        assert is_odoo_database(conn)


# -- verify_attachments ----------------------------------------------------------------


def test_verify_all_good_counts(
    cluster: PgCluster, filestore: Path, made: list[FixtureAttachment]
) -> None:
    """A complete filestore verifies ok, with rows, distinct files and bytes counted."""
    on_disk = [p for p in filestore.rglob("*") if p.is_file()]
    with _connect(cluster) as conn:
        report = verify_attachments(conn, filestore, workers=3)
    assert report.ok, report.summary()
    assert report.rows == sum(1 for a in made if a.store_fname) == 20
    assert report.files == len(on_disk) < 20  # some rows share a file
    assert report.bytes == sum(p.stat().st_size for p in on_disk)
    assert report.db_stored == 2
    assert "all ok" in report.summary()


def test_verify_reports_a_missing_file(
    cluster: PgCluster, filestore: Path, made: list[FixtureAttachment]
) -> None:
    """A deleted file fails the row that uses it, named by id, model and store_fname."""
    victim = _single_owner(made)
    assert victim.store_fname is not None
    (filestore / victim.store_fname).unlink()
    with _connect(cluster) as conn:
        report = verify_attachments(conn, filestore)
    assert not report.ok
    assert [(p.attachment_id, p.res_model, p.store_fname) for p in report.missing] == [
        (victim.id, victim.res_model, victim.store_fname)
    ]
    assert report.corrupt == ()
    assert report.by_model() == {victim.res_model: list(report.missing)}
    assert "1 missing" in report.summary()
    assert f"#{victim.id} {victim.res_model} {victim.store_fname}: missing" in report.describe()


def test_verify_reports_a_corrupt_file_of_the_same_size(
    cluster: PgCluster, filestore: Path, made: list[FixtureAttachment]
) -> None:
    """Bytes changed in place (same size) fail the row as corrupt, by sha1."""
    victim = _single_owner(made)
    assert victim.store_fname is not None
    path = filestore / victim.store_fname
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with _connect(cluster) as conn:
        report = verify_attachments(conn, filestore)
    assert [(p.attachment_id, p.res_model, p.store_fname) for p in report.corrupt] == [
        (victim.id, victim.res_model, victim.store_fname)
    ]
    assert "sha1" in report.corrupt[0].reason
    assert report.missing == ()


def test_verify_reports_a_truncated_file_by_size(
    cluster: PgCluster, filestore: Path, made: list[FixtureAttachment]
) -> None:
    """A truncated file is corrupt, and the reason gives both sizes."""
    victim = _single_owner(made)
    assert victim.store_fname is not None
    path = filestore / victim.store_fname
    path.write_bytes(path.read_bytes()[:-1])
    with _connect(cluster) as conn:
        report = verify_attachments(conn, filestore)
    assert [p.attachment_id for p in report.corrupt] == [victim.id]
    assert "expected" in report.corrupt[0].reason
    assert "size" in report.corrupt[0].reason


def test_verify_refuses_paths_outside_the_filestore(
    cluster: PgCluster,
    filestore: Path,
    made: list[FixtureAttachment],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """'..', absolute and symlinked-out store_fname rows fail as unsafe, never opened."""
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"not an attachment")
    (filestore / "zz").mkdir()
    os.symlink(outside, filestore / "zz" / "link")
    bad = {"../../etc/passwd": 0, "/etc/passwd": 0, "zz/link": 0, "ab/../../x": 0}
    for fname in bad:
        bad[fname] = cluster.scalar(
            "INSERT INTO ir_attachment (name, res_model, store_fname, checksum, file_size)"
            " VALUES ('evil', 'res.partner', %s, %s, 10) RETURNING id",
            (fname, "0" * 40),
            dbname=DB,
        )
    opened: list[Path] = []
    real_hash = odoo._hash_file

    def spy(path: Path) -> Any:
        opened.append(path)
        return real_hash(path)

    monkeypatch.setattr(odoo, "_hash_file", spy)
    with _connect(cluster) as conn:
        report = verify_attachments(conn, filestore)
    root = filestore.resolve()
    assert all(p.is_relative_to(root) for p in opened)
    assert {p.store_fname: p.attachment_id for p in report.unsafe} == bad
    assert all("unsafe store_fname" in p.reason for p in report.unsafe)
    assert all("not read" in p.reason for p in report.unsafe)
    assert len(report.problems) == len(bad)  # the good rows still pass


def test_verify_hashes_shared_files_once_and_reports_every_row(
    cluster: PgCluster,
    filestore: Path,
    made: list[FixtureAttachment],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file shared by several rows is hashed once; if it is gone, every row fails."""
    counts = Counter(a.store_fname for a in made if a.store_fname)
    shared = next(name for name, n in counts.items() if n > 1)
    calls: Counter[Path] = Counter()
    real_hash = odoo._hash_file

    def counting(path: Path) -> Any:
        calls[path] += 1
        return real_hash(path)

    monkeypatch.setattr(odoo, "_hash_file", counting)
    with _connect(cluster) as conn:
        report = verify_attachments(conn, filestore)
    assert report.ok
    assert set(calls.values()) == {1}
    assert len(calls) == len(counts) == report.files

    (filestore / shared).unlink()
    with _connect(cluster) as conn:
        report = verify_attachments(conn, filestore)
    sharing = sorted(a.id for a in made if a.store_fname == shared)
    assert [p.attachment_id for p in report.missing] == sharing


def test_verify_reports_a_row_whose_checksum_disagrees_with_a_shared_file(
    cluster: PgCluster, filestore: Path, made: list[FixtureAttachment]
) -> None:
    """Only the row with the wrong checksum fails; the others sharing the file pass."""
    counts = Counter(a.store_fname for a in made if a.store_fname)
    shared = next(name for name, n in counts.items() if n > 1)
    wrong = min(a.id for a in made if a.store_fname == shared)
    cluster.execute(
        "UPDATE ir_attachment SET checksum = %s WHERE id = %s", ("f" * 40, wrong), dbname=DB
    )
    with _connect(cluster) as conn:
        report = verify_attachments(conn, filestore)
    assert [p.attachment_id for p in report.corrupt] == [wrong]
