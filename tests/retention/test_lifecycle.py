"""Storage-class lifecycle from the tiers: wanted rules, refusals, diff, apply on moto, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError

from drd.catalog import open_configured
from drd.cli import app as cli_app
from drd.config import Estate, load
from drd.errors import ConfigError, StorageError
from drd.retention.immutability import open_repository_root
from drd.retention.lifecycle import (
    apply_lifecycle,
    desired_lifecycle,
    lifecycle_diff,
    plan_lifecycle,
    read_lifecycle,
)
from drd.storage import LifecycleTransition as T
from drd.storage import MemoryStore
from drd.testing import S3Endpoint
from drd.testing.estate import tiers_with, write_config_only
from drd.testing.s3 import ACCESS_KEY, REGION, SECRET_KEY

ROOT = Path(__file__).resolve().parents[2]
FOREIGN_RULE = {
    "ID": "expire-scratch",
    "Status": "Enabled",
    "Filter": {"Prefix": "scratch/"},
    "Expiration": {"Days": 7},
}


def make_estate(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    repositories: list[dict[str, Any]],
    workloads: list[tuple[str, str, str, bool]],
    extra_tiers: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """A config with (name, tier, repository, has filestore) workloads; extra tier files."""
    monkeypatch.setenv("LC_PASSPHRASE", "lifecycle-test-passphrase")
    monkeypatch.setenv("LC_S3_KEY", ACCESS_KEY)
    monkeypatch.setenv("LC_S3_SECRET", SECRET_KEY)
    base = yaml.safe_load((ROOT / "tiers" / "tier-2.yaml").read_text())
    tiers = tiers_with(
        tmp_path / "tiers",
        **{
            name: yaml.safe_dump({**base, **changes})
            for name, changes in (extra_tiers or {}).items()
        },
    )
    return write_config_only(tmp_path, repositories, workloads, tiers_dir=tiers)


def s3_repo(name: str, bucket: str, prefix: str, s3: S3Endpoint | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "type": "s3",
        "bucket": bucket,
        "prefix": prefix,
        "endpoint": s3.url if s3 else "https://s3.example.com",
        "region": REGION,
        "uri_style": "path",
        "ca_file": str(s3.tls.ca_cert) if s3 else None,
        "credentials": {
            "access_key_id": {"env": "LC_S3_KEY"},
            "secret_access_key": {"env": "LC_S3_SECRET"},
        },
        "encryption": {"passphrase": {"env": "LC_PASSPHRASE"}},
    }


def fs_repo(tmp_path: Path) -> dict[str, Any]:
    return {
        "name": "local",
        "type": "filesystem",
        "path": str(tmp_path / "local"),
        "encryption": {"passphrase": {"env": "LC_PASSPHRASE"}},
    }


def transitions(*steps: tuple[str, str]) -> dict[str, Any]:
    return {"lifecycle": {"transitions": [{"after": a, "storage_class": c} for a, c in steps]}}


def shared_estate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> Estate:
    """Repository 'main': tier-0 and tier-1 workloads with filestores, a tier-3 one without."""
    return load(
        make_estate(
            tmp_path,
            monkeypatch,
            [s3_repo("main", "drd-lifecycle", "tenant-a", kw.get("s3")), fs_repo(tmp_path)],
            [
                ("erp", "tier-0", "main", True),
                ("wms", "tier-1", "main", True),
                ("lab", "tier-3", "main", False),
                ("wiki", "tier-2", "local", True),
            ],
        )
    )


EXPECTED = [
    T("filestore/data/", 30, "STANDARD_IA"),  # tier-0 decides for the shared packs
    T("filestore/data/", 180, "GLACIER_IR"),
    T("pgbackrest/archive/erp/", 30, "STANDARD_IA"),
    T("pgbackrest/archive/erp/", 180, "GLACIER_IR"),
    T("pgbackrest/archive/wms/", 30, "STANDARD_IA"),
    T("pgbackrest/archive/wms/", 90, "GLACIER_IR"),
    T("pgbackrest/backup/erp/", 30, "STANDARD_IA"),
    T("pgbackrest/backup/erp/", 180, "GLACIER_IR"),
    T("pgbackrest/backup/wms/", 30, "STANDARD_IA"),
    T("pgbackrest/backup/wms/", 90, "GLACIER_IR"),
]


def test_desired_rules_per_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Packs follow the most demanding tier; each stanza its own; small objects never move."""
    estate = shared_estate(tmp_path, monkeypatch)
    assert desired_lifecycle(estate, "main") == EXPECTED
    with pytest.raises(ConfigError, match="filesystem repository"):
        desired_lifecycle(estate, "local")


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ((("60d", "GLACIER"),), "GLACIER is not instant retrieval"),
        ((("30d", "STANDARD_IA"), ("90d", "DEEP_ARCHIVE")), "DEEP_ARCHIVE is not instant"),
        ((("7d", "STANDARD_IA"),), "after 30 days at the earliest"),
        ((("30d", "ONEZONE_IA"), ("45d", "GLACIER_IR")), "at least 30 days before the next"),
    ],
)
def test_transitions_restores_or_s3_cannot_take_are_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    steps: tuple[tuple[str, str], ...],
    message: str,
) -> None:
    """GLACIER/DEEP_ARCHIVE (not instant) and S3's IA minimums are config errors."""
    path = make_estate(
        tmp_path,
        monkeypatch,
        [s3_repo("main", "drd-lifecycle", "")],
        [("erp", "tier-x", "main", True)],
        extra_tiers={"tier-x": transitions(*steps)},
    )
    with pytest.raises(ConfigError, match=message) as refused:
        desired_lifecycle(load(path), "main")
    assert "tier tier-x: lifecycle.transitions[" in str(refused.value)


def test_diff_is_a_set_difference() -> None:
    """Added, removed and unchanged rules, each sorted; in sync when nothing moves."""
    want = [T("a/", 30, "STANDARD_IA"), T("a/", 90, "GLACIER_IR")]
    have = [T("a/", 90, "GLACIER_IR"), T("a/", 60, "GLACIER_IR")]
    diff = lifecycle_diff(want, have)
    assert diff.added == [T("a/", 30, "STANDARD_IA")]
    assert diff.removed == [T("a/", 60, "GLACIER_IR")]
    assert diff.unchanged == [T("a/", 90, "GLACIER_IR")]
    assert not diff.in_sync
    assert lifecycle_diff(want, list(reversed(want))).in_sync


def test_memory_store_has_no_lifecycle() -> None:
    """Reading gives nothing; applying to a store without lifecycle support fails clearly."""
    store = MemoryStore("memory://x")
    assert read_lifecycle(store) == []
    with pytest.raises(StorageError, match="storage-class lifecycle is not supported"):
        apply_lifecycle(store, [T("filestore/data/", 30, "STANDARD_IA")])


@pytest.mark.integration
def test_rules_written_from_tiers_read_back_equal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3: S3Endpoint, bucket: str
) -> None:
    """Applied rules read back equal to the tiers'; diff empty after; other rules survive."""
    client = s3.client()
    other_drd = {
        "ID": "drd tenant-a/other/filestore/data/ 30d STANDARD_IA",
        "Status": "Enabled",
        "Filter": {"Prefix": "tenant-a/other/filestore/data/"},
        "Transitions": [{"Days": 30, "StorageClass": "STANDARD_IA"}],
    }
    stale = {
        "ID": "drd tenant-a/pgbackrest/backup/gone/ 30d STANDARD_IA",
        "Status": "Enabled",
        "Filter": {"Prefix": "tenant-a/pgbackrest/backup/gone/"},
        "Transitions": [{"Days": 30, "StorageClass": "STANDARD_IA"}],
    }
    client.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [FOREIGN_RULE, other_drd, stale]}
    )
    estate = load(
        make_estate(
            tmp_path,
            monkeypatch,
            [s3_repo("main", bucket, "tenant-a", s3)],
            [("erp", "tier-0", "main", True), ("wms", "tier-1", "main", True)],
        )
    )
    desired = desired_lifecycle(estate, "main")
    root = open_repository_root(estate.config.repository("main"))
    try:
        before = plan_lifecycle(root, desired)
        assert before.added == desired
        assert before.removed == [T("pgbackrest/backup/gone/", 30, "STANDARD_IA")]
        applied = apply_lifecycle(root, desired)
        assert applied.added == desired
        assert read_lifecycle(root) == desired
        assert plan_lifecycle(root, desired).in_sync
        assert apply_lifecycle(root, desired).in_sync  # idempotent
    finally:
        root.close()
    rules = client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert FOREIGN_RULE in rules
    assert other_drd in rules  # another repository's rules under the same prefix stay
    assert stale not in rules
    by_prefix = {r["Filter"]["Prefix"] for r in rules}
    assert "tenant-a/filestore/data/" in by_prefix
    assert "tenant-a/pgbackrest/archive/erp/" in by_prefix
    assert not any(
        p.startswith("tenant-a/filestore/") and p != "tenant-a/filestore/data/" for p in by_prefix
    )


@pytest.mark.integration
def test_lifecycle_cli_diff_apply_and_audit(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    s3: S3Endpoint,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`repo lifecycle` shows the diff; --apply writes it after an audit entry; then in sync."""
    path = make_estate(
        tmp_path,
        monkeypatch,
        [s3_repo("main", bucket, "", s3), fs_repo(tmp_path)],
        [("erp", "tier-1", "main", True), ("wiki", "tier-2", "local", True)],
    )

    def drd(*args: str) -> int:
        return cli_app.main(["--config", str(path), *args])

    assert drd("repo", "lifecycle") == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["REPOSITORY", "CHANGE", "PREFIX", "DAYS", "STORAGE", "CLASS"]
    assert lines[1].split() == ["main", "add", "filestore/data/", "30", "STANDARD_IA"]
    assert len(lines) == 8  # header, 6 rules to add, the verdict
    assert lines[-1] == (
        f"repository main (s3://{bucket}): 6 change(s) pending: run with --apply to write them"
    )
    with pytest.raises(ClientError, match="NoSuchLifecycleConfiguration"):
        s3.client().get_bucket_lifecycle_configuration(Bucket=bucket)  # nothing written

    assert drd("--output", "json", "repo", "lifecycle", "main", "--apply") == 0
    data = json.loads(capsys.readouterr().out)
    (repo,) = data["repositories"]
    assert repo["applied"] is True
    assert len(repo["added"]) == 6
    assert {"prefix": "pgbackrest/backup/erp/", "days": 90, "storage_class": "GLACIER_IR"} in (
        repo["added"]
    )

    with open_configured(load(path).config) as catalog:
        entries = [e for e in catalog.audit_entries() if e.action == "repo.lifecycle.apply"]
    assert len(entries) == 1
    assert entries[0].subject == "main"
    assert len(entries[0].details["added"]) == 6

    assert drd("repo", "lifecycle", "--apply") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == f"repository main (s3://{bucket}): in sync"
    assert "keep" in out
    with open_configured(load(path).config) as catalog:
        assert len([e for e in catalog.audit_entries() if e.action == "repo.lifecycle.apply"]) == 1

    assert drd("repo", "lifecycle", "local") == 2
    assert "filesystem repository" in capsys.readouterr().err
