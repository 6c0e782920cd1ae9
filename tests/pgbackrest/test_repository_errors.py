"""Repository failures give a clear error naming the repository, and never a secret."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from drd.errors import BackupError
from drd.pgbackrest.runner import Pgbackrest
from drd.pgbackrest.stanza import write_config
from drd.testing import PgCluster, S3Endpoint
from drd.testing.estate import PASSPHRASE_ENV, EstateBuilder, start_protected

pytestmark = pytest.mark.integration


def test_wrong_s3_secret_is_a_clear_error(
    authed_s3: tuple[S3Endpoint, str, str],
    estate_builder: EstateBuilder,
    make_cluster: Callable[..., PgCluster],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the right key `info` works; with a wrong secret it fails naming the repository."""
    endpoint, key_id, secret = authed_s3
    endpoint.client_with(key_id, secret).create_bucket(Bucket="auth-bucket")
    monkeypatch.setenv("DRD_AUTH_KEY", key_id)
    monkeypatch.setenv("DRD_AUTH_SECRET", secret)
    cluster = make_cluster("auth")
    repo = estate_builder.s3_repo(
        endpoint, "auth-bucket", name="vault", key_env="DRD_AUTH_KEY", secret_env="DRD_AUTH_SECRET"
    )
    estate_builder.workload("erp", cluster, repo)
    estate = estate_builder.load()
    assert not Pgbackrest(write_config(estate, "erp")).info().exists  # reachable, no stanza yet

    wrong = "wrong-secret-value-0123456789"
    monkeypatch.setenv("DRD_AUTH_SECRET", wrong)
    estate = estate_builder.load()
    with pytest.raises(BackupError) as info:
        Pgbackrest(write_config(estate, "erp")).info()
    message = str(info.value)
    assert "repository vault" in message
    assert "stanza erp" in message
    assert info.value.hint
    for secret_text in (wrong, secret):
        assert secret_text not in message
        assert secret_text not in info.value.stderr_tail


def test_wrong_cipher_passphrase_is_a_clear_error(
    estate_builder: EstateBuilder,
    make_cluster: Callable[..., PgCluster],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A repository opened with the wrong passphrase fails naming it, without the passphrase."""
    cluster = make_cluster("cipher")
    estate_builder.workload("erp", cluster, estate_builder.filesystem_repo(name="vault"))
    estate = estate_builder.load()
    _, pgbr = start_protected(estate, "erp", cluster)
    pgbr.backup("full")
    right = estate_builder.passphrase
    wrong = "not-the-right-passphrase-42"
    monkeypatch.setenv(PASSPHRASE_ENV, wrong)
    with pytest.raises(BackupError) as info:
        Pgbackrest(write_config(estate_builder.load(), "erp")).info()
    message = str(info.value)
    assert "repository vault" in message
    assert "status 99" in message  # `info` exits 0 here: drd reads the status itself
    assert "passphrase" in (info.value.hint or "")
    for secret_text in (wrong, right):
        assert secret_text not in message
        assert secret_text not in info.value.stderr_tail
