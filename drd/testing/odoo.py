"""An Odoo-like database and filestore for tests and demos.

``create_odoo_schema`` makes the few tables drd's Odoo checks read, with Odoo's column
names and types (a minimal subset of each): ``ir_attachment``, ``ir_cron``,
``ir_mail_server``, ``fetchmail_server`` and ``ir_config_parameter`` (with
``database.uuid``, ``database.secret`` and ``web.base.url``). ``populate`` writes files
the way Odoo does (``<filestore>/<sha1[:2]>/<sha1>``) and the matching attachment rows:
several rows sharing one file, a couple stored in the database (``db_datas``), plus
active crons, mail servers and a fetchmail server, so neutralization has work to do.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import psycopg

from drd.testing.postgres import PgCluster

Connection = psycopg.Connection[Any]

TABLES = ("ir_attachment", "ir_cron", "ir_mail_server", "fetchmail_server", "ir_config_parameter")

_DDL: dict[str, str] = {
    "ir_attachment": (
        "CREATE TABLE IF NOT EXISTS ir_attachment ("
        " id serial PRIMARY KEY, name varchar NOT NULL, res_model varchar, res_id integer,"
        " store_fname varchar, checksum varchar(40), file_size integer, mimetype varchar,"
        " db_datas bytea, type varchar NOT NULL DEFAULT 'binary')"
    ),
    "ir_cron": (
        "CREATE TABLE IF NOT EXISTS ir_cron ("
        " id serial PRIMARY KEY, name varchar NOT NULL, active boolean DEFAULT true,"
        " interval_number integer, interval_type varchar, nextcall timestamp)"
    ),
    "ir_mail_server": (
        "CREATE TABLE IF NOT EXISTS ir_mail_server ("
        " id serial PRIMARY KEY, name varchar NOT NULL, smtp_host varchar,"
        " active boolean DEFAULT true)"
    ),
    "fetchmail_server": (
        "CREATE TABLE IF NOT EXISTS fetchmail_server ("
        " id serial PRIMARY KEY, name varchar NOT NULL, server varchar,"
        " active boolean DEFAULT true, state varchar DEFAULT 'done')"
    ),
    "ir_config_parameter": (
        "CREATE TABLE IF NOT EXISTS ir_config_parameter ("
        " id serial PRIMARY KEY, key varchar NOT NULL UNIQUE, value text NOT NULL)"
    ),
}

_MODELS = ("res.partner", "sale.order", "account.move", "mail.message", "product.template")


class FixtureAttachment(NamedTuple):
    """One ``ir_attachment`` row ``populate`` inserted; ``store_fname`` None = in the db."""

    id: int
    res_model: str
    store_fname: str | None


def create_odoo_schema(
    target: Connection | PgCluster,
    dbname: str = "postgres",
    *,
    without: Iterable[str] = (),
) -> None:
    """Create the Odoo-like tables (idempotent); ``without`` names tables to leave out.

    ``target`` is an open connection, or a cluster plus ``dbname``.
    """
    if isinstance(target, PgCluster):
        with target.connect(dbname) as conn:
            create_odoo_schema(conn, without=without)
        return
    skip = set(without)
    unknown = skip - set(TABLES)
    if unknown:
        raise ValueError(f"unknown Odoo fixture tables: {sorted(unknown)}")
    with target.transaction():
        for table in TABLES:
            if table not in skip:
                target.execute(_DDL[table].encode())
        if "ir_config_parameter" not in skip:
            for key, value in (
                ("database.uuid", str(uuid.uuid4())),
                ("database.secret", str(uuid.uuid4())),
                ("web.base.url", "https://erp.example.com"),
            ):
                target.execute(
                    b"INSERT INTO ir_config_parameter (key, value) VALUES (%s, %s)"
                    b" ON CONFLICT (key) DO NOTHING",
                    (key, value),
                )


def store_file(filestore_dir: Path, data: bytes) -> tuple[str, str]:
    """Write ``data`` the way Odoo does; return (store_fname, sha1 hex)."""
    sha1 = hashlib.sha1(data, usedforsecurity=False).hexdigest()
    store_fname = f"{sha1[:2]}/{sha1}"
    path = filestore_dir / store_fname
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(data)
    return store_fname, sha1


def populate(
    cluster: PgCluster,
    dbname: str,
    filestore_dir: Path,
    *,
    attachments: int = 20,
    seed: int = 7,
) -> list[FixtureAttachment]:
    """Fill an Odoo-like database and filestore; return the attachment rows made.

    ``attachments`` rows point at files (every fourth shares the file of an earlier
    row, as Odoo does for identical content); two more rows keep their content in
    ``db_datas``. Also three active crons, two mail servers and a fetchmail server.
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible fixture data, nothing secret
    filestore_dir.mkdir(parents=True, exist_ok=True)
    made: list[FixtureAttachment] = []
    with cluster.connect(dbname) as conn:
        create_odoo_schema(conn)
        with conn.transaction():
            stored: list[tuple[str, str, int, str]] = []  # store_fname, sha1, size, mimetype
            for i in range(attachments):
                if i % 4 == 3 and stored:
                    fname, sha1, size, mimetype = rng.choice(stored)
                else:
                    if i % 2:
                        data = rng.randbytes(rng.randint(1, 300_000))
                        mimetype = "application/octet-stream"
                    else:
                        words = " ".join(f"word{rng.randint(0, 999)}" for _ in range(50))
                        data = (f"attachment {i}: {words}\n" * rng.randint(1, 40)).encode()
                        mimetype = "text/plain"
                    fname, sha1 = store_file(filestore_dir, data)
                    size = len(data)
                    stored.append((fname, sha1, size, mimetype))
                model = _MODELS[i % len(_MODELS)]
                row = conn.execute(
                    b"INSERT INTO ir_attachment"
                    b" (name, res_model, res_id, store_fname, checksum, file_size, mimetype)"
                    b" VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                    (f"file-{i}", model, rng.randint(1, 500), fname, sha1, size, mimetype),
                ).fetchone()
                assert row is not None  # noqa: S101 - INSERT ... RETURNING returns a row
                made.append(FixtureAttachment(int(row[0]), model, fname))
            for i in range(2):
                data = f"stored in the database {i}\n".encode()
                row = conn.execute(
                    b"INSERT INTO ir_attachment"
                    b" (name, res_model, res_id, checksum, file_size, mimetype, db_datas)"
                    b" VALUES (%s, 'ir.ui.view', %s, %s, %s, 'text/plain', %s) RETURNING id",
                    (
                        f"db-{i}",
                        i + 1,
                        hashlib.sha1(data, usedforsecurity=False).hexdigest(),
                        len(data),
                        data,
                    ),
                ).fetchone()
                assert row is not None  # noqa: S101
                made.append(FixtureAttachment(int(row[0]), "ir.ui.view", None))
            for name, number, unit in (
                ("Mail: Email Queue Manager", 1, "minutes"),
                ("Base: Auto-vacuum internal data", 1, "days"),
                ("Invoicing: send reminders", 1, "hours"),
            ):
                conn.execute(
                    b"INSERT INTO ir_cron (name, interval_number, interval_type, nextcall)"
                    b" VALUES (%s, %s, %s, now() AT TIME ZONE 'UTC')",
                    (name, number, unit),
                )
            for name, host in (("Outgoing", "smtp.example.com"), ("Backup", "smtp2.example.com")):
                conn.execute(
                    b"INSERT INTO ir_mail_server (name, smtp_host) VALUES (%s, %s)", (name, host)
                )
            conn.execute(
                b"INSERT INTO fetchmail_server (name, server)"
                b" VALUES ('Incoming', 'imap.example.com')"
            )
    return made
