"""The snapshot commands end to end through S3 (moto behind TLS) and a filesystem repo."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from drd.catalog import open_configured
from drd.cli.app import main
from drd.config import load
from drd.testing import PgCluster, S3Endpoint
from drd.testing.estate import EstateBuilder
from drd.testing.filestore import make_tree

pytestmark = pytest.mark.integration


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("repo_kind", ["s3", "filesystem"])
def test_init_create_incremental_restore_verify(
    repo_kind: str,
    estate_builder: EstateBuilder,
    make_cluster: Callable[..., PgCluster],
    s3: S3Endpoint,
    bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """repo init, two snapshots (the second reuses content), byte-identical restore, verify."""
    cluster = make_cluster("snap")
    cluster.initdb()
    cluster.start()
    source = make_tree(estate_builder.root / "filestore")
    repo = (
        estate_builder.s3_repo(s3, bucket)
        if repo_kind == "s3"
        else estate_builder.filesystem_repo()
    )
    # tier-1 is immutable: on S3 it needs an Object Lock bucket (test_immutability_wiring)
    tier = "tier-2" if repo_kind == "s3" else "tier-1"
    estate_builder.workload("erp", cluster, repo, tier=tier, filestore=source)
    config = str(estate_builder.write())

    assert main(["--config", config, "repo", "init", repo]) == 0
    capsys.readouterr()
    assert (
        main(["--config", config, "-o", "json", "snapshot", "create", "erp", "--tag", "first"]) == 0
    )
    first = json.loads(capsys.readouterr().out)
    assert first["tags"] == ["first"]
    assert first["files_read"] == first["files"] > 40
    (source / "new.txt").write_bytes(b"added later\n" * 100)
    assert main(["--config", config, "-o", "json", "snapshot", "create", "erp"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["parent"] == first["snapshot_id"]
    assert second["files_read"] == 1  # only the new file is read
    assert second["bytes_new"] < 10_000

    assert main(["--config", config, "-o", "json", "snapshot", "list", "erp"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 2

    target = tmp_path / "restored"
    sid = second["snapshot_id"]
    assert main(["--config", config, "snapshot", "restore", sid[:10], "--target", str(target)]) == 0
    assert _files(target) == _files(source)

    assert main(["--config", config, "snapshot", "verify", "--read-data"]) == 0
    with open_configured(load(config).config) as catalog:
        recorded = {r.id: r for r in catalog.list_snapshots("erp")}
    assert set(recorded) == {first["snapshot_id"], sid}
    point = recorded[sid].db_restore_point
    assert point is not None
    assert point["wal_lsn"]
    assert point["timeline"] == 1
