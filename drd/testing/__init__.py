"""Test harness: starts REAL components on 127.0.0.1 (free ports) and always cleans up.

Used by the test suite (``tests/conftest.py``) and by ``make demo``:

* ``PgCluster``: a PostgreSQL 15 cluster made with initdb as the ``postgres`` OS user,
  archiving through pgBackRest; streaming standbys with ``pg_basebackup -R``;
* ``S3Endpoint``: ``moto_server`` on plain HTTP behind an nginx TLS proxy with a
  throwaway CA and a ``localhost`` certificate, usable by boto3 and pgBackRest 2.45;
* ``BackrestStanza``: pgBackRest config, stanza-create, backup, restore.

Every process started here is recorded in ``processes.REGISTRY`` and stopped by PID on
fixture teardown and, as a last resort, at interpreter exit.
"""

from drd.testing.backrest import BackrestStanza
from drd.testing.postgres import PgCluster
from drd.testing.processes import REGISTRY, Scratch, free_port, wait_until
from drd.testing.s3 import S3Endpoint

__all__ = [
    "REGISTRY",
    "BackrestStanza",
    "PgCluster",
    "S3Endpoint",
    "Scratch",
    "free_port",
    "wait_until",
]
