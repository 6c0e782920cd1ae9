"""The harness proofs: real PostgreSQL + real pgBackRest, to S3 over TLS and to a posix repo.

Full backup (encrypted, aes-256-cbc), rows inserted after it, WAL switched and archived,
restore into a scratch data dir on another port: the restored copy holds exactly the
expected rows. If any piece of the harness (TLS proxy, moto, config ownership, archive
command) were wrong, this would fail.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from drd.testing import BackrestStanza, PgCluster, S3Endpoint, Scratch

pytestmark = pytest.mark.integration


def _prove_backup_and_restore(
    cluster: PgCluster, stanza: BackrestStanza, make_cluster: Callable[..., PgCluster]
) -> None:
    cluster.initdb(archive_command=stanza.archive_command())
    cluster.start()
    cluster.execute("CREATE TABLE orders (id int PRIMARY KEY, item text NOT NULL)")
    cluster.execute("INSERT INTO orders SELECT g, 'before-' || g FROM generate_series(1, 500) g")
    stanza.stanza_create()
    stanza.backup("full")
    # Right after a backup the newest archived file is the backup history file
    # ("<segment>.<offset>.backup"); waiting for a switch must still see it as archived.
    cluster.switch_wal_and_wait_archived(timeout=30)

    # Written after the backup: only WAL replay can bring these back.
    cluster.execute("INSERT INTO orders SELECT g, 'after-' || g FROM generate_series(501, 750) g")
    cluster.execute("DELETE FROM orders WHERE id <= 10")
    cluster.switch_wal_and_wait_archived()
    expected = cluster.query("SELECT id, item FROM orders ORDER BY id")

    info = stanza.info()
    assert info[0]["name"] == stanza.stanza
    assert info[0]["status"]["code"] == 0
    assert [b["type"] for b in info[0]["backup"]] == ["full"]
    assert info[0]["cipher"] == "aes-256-cbc"

    restored = make_cluster("restored")
    stanza.restore(restored)
    restored.configure({})  # own port and socket dir: the copy inherits the primary's
    restored.start()
    restored.wait_out_of_recovery()
    assert restored.port != cluster.port
    assert restored.query("SELECT id, item FROM orders ORDER BY id") == expected
    assert len(expected) == 740
    assert restored.scalar("SELECT current_setting('archive_mode')") == "off"


def test_backup_to_s3_over_tls_and_restore(
    scratch: Scratch, s3: S3Endpoint, bucket: str, make_cluster: Callable[..., PgCluster]
) -> None:
    """pgBackRest 2.45 backs up to S3 (moto behind nginx TLS), encrypted, and restores exactly."""
    cluster = make_cluster("s3src")
    stanza = BackrestStanza.for_cluster(scratch, cluster, stanza="s3proof", s3=s3, bucket=bucket)
    _prove_backup_and_restore(cluster, stanza, make_cluster)

    objects = s3.client().list_objects_v2(Bucket=bucket, Prefix="s3proof/")["Contents"]
    keys = [o["Key"] for o in objects]
    assert "s3proof/backup/s3proof/backup.info" in keys
    assert any(k.startswith("s3proof/archive/s3proof/15-1/") for k in keys)
    # Client-side encryption: what the store holds is OpenSSL-salted ciphertext.
    wal_key = next(k for k in keys if "/archive/" in k and k.endswith(".zst"))
    body = s3.client().get_object(Bucket=bucket, Key=wal_key)["Body"].read()
    assert body.startswith(b"Salted__")


def test_backup_to_posix_repository_and_restore(
    scratch: Scratch, make_cluster: Callable[..., PgCluster]
) -> None:
    """The same proof with a filesystem (posix) repository."""
    cluster = make_cluster("posixsrc")
    stanza = BackrestStanza.for_cluster(scratch, cluster, stanza="posixproof")
    _prove_backup_and_restore(cluster, stanza, make_cluster)
    repo = stanza.run("--output=json", "info").stdout
    assert '"repo1"' in repo or '"key":1' in repo.replace(" ", "")
