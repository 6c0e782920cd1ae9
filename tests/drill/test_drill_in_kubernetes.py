"""Kubernetes drills end to end: drd renders the namespace, the agent runs "in the pod".

``LocalKubelet`` executes the rendered Job's container here with only the environment a
pod would get (Job env + Secret), so these tests prove that the bundle and the Secret
carry everything the agent needs, and that its result is read back and recorded.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drd.catalog import open_configured
from drd.drill import bundle
from drd.drill.k8s_fake import FakeDrillCluster, JobOutcome
from drd.drill.service import result_key, run_drill
from drd.errors import ConfigError
from drd.postgres.heartbeat import write_heartbeat
from drd.snapshot.keys import PassphraseWrapper, init_repository
from drd.snapshot.service import snapshot_workload
from drd.storage.factory import open_store
from drd.testing import PgCluster
from drd.testing.estate import EstateBuilder, start_protected
from drd.testing.kubelet import LocalKubelet
from drd.testing.odoo import create_odoo_schema, populate
from drd.testing.processes import Scratch
from drd.testing.s3 import S3Endpoint

pytestmark = pytest.mark.integration


def _kubernetes_section(cluster: PgCluster) -> dict[str, Any]:
    return {
        "kubernetes": {
            "image": "registry.example.com/drd:test",
            "os_user": cluster.os_user,  # the image's user; here the harness's
            "pg_bin_dir": str(cluster.bin_dir),
            "poll_interval": "1s",
        }
    }


def test_odoo_drill_in_a_kubernetes_job_passes_and_is_recorded(
    estate_builder: EstateBuilder,
    make_cluster: Callable[..., PgCluster],
    s3: S3Endpoint,
    scratch: Scratch,
) -> None:
    """The agent restores from S3 with only what the pod gets, neutralizes, verifies, passes."""
    cluster = make_cluster("k8sdrill")
    filestore = estate_builder.root / "filestore" / "acme"
    filestore.mkdir(parents=True)
    # tier-1 is immutable: the drill runs against a locked repository, evidence locked too
    bucket = s3.create_bucket(f"drd-k8s-{uuid.uuid4().hex[:12]}", object_lock=True)
    repo = estate_builder.s3_repo(s3, bucket)
    estate_builder.workload("acme", cluster, repo, dbname="acme", filestore=filestore)
    estate_builder.workloads[-1]["odoo"] = {"database": "acme"}
    estate_builder.extra.update(_kubernetes_section(cluster))
    estate = estate_builder.load()
    _, pgbr = start_protected(estate, "acme", cluster)
    cluster.execute("CREATE DATABASE acme")
    create_odoo_schema(cluster, "acme")
    populate(cluster, "acme", filestore, attachments=12)
    init_repository(
        open_store(estate.config.repository(repo)),
        PassphraseWrapper(estate_builder.passphrase, n=2**10),
    )
    primary = estate.config.workload("acme").postgres.primary
    write_heartbeat(primary)
    pgbr.backup("full")
    snapshot_workload(estate, "acme")
    write_heartbeat(primary)
    cluster.switch_wal_and_wait_archived()

    kubelet = LocalKubelet(root=scratch.dir("kubelet", mode=0o755))
    with open_configured(estate.config) as catalog:
        result = run_drill(estate, "acme", catalog, sandbox="kubernetes", cluster=kubelet)
        recorded = catalog.latest_drill("acme")

    assert result.verdict == "pass", result.reasons
    namespace = f"drd-drill-{result.drill_id}"
    assert result.sandbox == f"kubernetes:{namespace}"
    checks = {c["name"]: c["ok"] for c in result.checks}
    assert checks["neutralized"] is True
    assert checks["attachments"] is True
    assert result.snapshot_id is not None
    assert result.rpo_seconds is not None
    assert result.rpo_seconds <= result.rpo_objective_seconds
    assert "scheduling" in result.phases
    assert result.rto_seconds is not None
    serial = {k: v for k, v in result.phases.items() if k != "filestore_restore"}  # overlaps
    assert sum(serial.values()) <= result.rto_seconds + 0.05
    assert result.rto_seconds - sum(serial.values()) < 1.0
    assert kubelet.deleted == [namespace]  # the namespace is gone afterwards
    assert recorded is not None
    assert recorded.verdict == "pass"
    assert recorded.details["sandbox"] == f"kubernetes:{namespace}"
    evidence = s3.client().head_object(Bucket=bucket, Key=f"filestore/{result_key(result)}")
    assert evidence["ObjectLockMode"] == "GOVERNANCE"

    # Secrets reached the pod through the Secret only, and nowhere else.
    secrets = [estate_builder.passphrase, *bundle.build(estate, "acme").secret_env.values()]
    (job,) = kubelet.objects("Job")
    (secret,) = kubelet.objects("Secret")
    job_text = json.dumps(job)
    for value in secrets:
        assert value not in job_text
        assert value not in json.dumps(result.as_dict())
    assert set(secret["stringData"]) == {
        "DRD_SECRET_REPO_PASSPHRASE",
        "DRD_SECRET_S3_ACCESS_KEY_ID",
        "DRD_SECRET_S3_SECRET_ACCESS_KEY",
    }
    pod_env = kubelet.job_env[namespace]
    assert "DRD_TEST_REPO_PASSPHRASE" not in pod_env  # nothing leaked from the test process
    assert pod_env["DRD_SECRET_REPO_PASSPHRASE"] == estate_builder.passphrase


def _s3_estate(builder: EstateBuilder, cluster: PgCluster, s3: S3Endpoint) -> EstateBuilder:
    builder.workload("erp", cluster, builder.s3_repo(s3, "no-such-bucket-needed"))
    builder.extra.update(_kubernetes_section(cluster))
    return builder


def test_a_failed_pod_is_recorded_as_a_failed_drill_and_cleaned_up(
    estate_builder: EstateBuilder, scratch: Scratch, s3: S3Endpoint
) -> None:
    """No result from the pod: a failed drill with the (redacted) log tail; namespace deleted."""
    cluster = PgCluster.allocate(scratch, "k8sfail")
    estate = _s3_estate(estate_builder, cluster, s3).load()
    fake = FakeDrillCluster(
        default=JobOutcome.failed(f"restore failed; passphrase {estate_builder.passphrase}")
    )
    with open_configured(estate.config) as catalog:
        result = run_drill(estate, "erp", catalog, sandbox="kubernetes", cluster=fake)
        recorded = catalog.latest_drill("erp")
    assert result.verdict == "fail"
    assert any("BackoffLimitExceeded" in reason for reason in result.reasons)
    assert estate_builder.passphrase not in json.dumps(result.as_dict())
    assert fake.deleted == [f"drd-drill-{result.drill_id}"]
    assert recorded is not None
    assert recorded.verdict == "fail"


def test_kubernetes_drills_need_a_kubernetes_section_and_an_s3_repository(
    estate_builder: EstateBuilder, scratch: Scratch
) -> None:
    """Both are configuration errors naming the field, raised before anything is created."""
    cluster = PgCluster.allocate(scratch, "k8scfg")
    estate_builder.workload("erp", cluster, estate_builder.filesystem_repo())
    estate = estate_builder.load()
    fake = FakeDrillCluster()
    with open_configured(estate.config) as catalog:
        with pytest.raises(ConfigError, match="kubernetes: missing"):
            run_drill(estate, "erp", catalog, sandbox="kubernetes", cluster=fake)
        estate_builder.extra.update(_kubernetes_section(cluster))
        estate = estate_builder.load()
        with pytest.raises(ConfigError, match=r"repositories\.fs: a kubernetes drill needs an S3"):
            run_drill(estate, "erp", catalog, sandbox="kubernetes", cluster=fake)
    assert fake.created == []


def test_bundle_round_trips_without_secrets(
    estate_builder: EstateBuilder, scratch: Scratch, s3: S3Endpoint, tmp_path: Path
) -> None:
    """The pod's config equals the workload's, with secrets turned into Secret variables."""
    cluster = PgCluster.allocate(scratch, "k8sbundle")
    estate = _s3_estate(estate_builder, cluster, s3).load()
    pod = bundle.build(estate, "erp")
    assert estate_builder.passphrase not in pod.bundle
    path = bundle.materialize(pod.bundle, tmp_path / "cfg", tmp_path / "scratch")
    import os

    from drd.config import load

    saved = dict(os.environ)
    try:
        os.environ.update(pod.secret_env)
        loaded = load(path)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    repo = loaded.config.repositories[0]
    original = estate.config.repository("s3")
    assert repo.model_dump(exclude={"encryption", "credentials", "ca_file"}) == original.model_dump(
        exclude={"encryption", "credentials", "ca_file"}
    )
    assert repo.ca_file is not None
    assert original.ca_file is not None
    assert repo.ca_file.read_text() == original.ca_file.read_text()
    assert loaded.config.state_dir == tmp_path / "scratch"
    assert loaded.tiers.keys() == {"tier-1"}
    assert loaded.tiers["tier-1"] == estate.tiers["tier-1"]


def test_cli_drill_in_kubernetes_through_a_kubeconfig(
    estate_builder: EstateBuilder,
    scratch: Scratch,
    s3: S3Endpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`drd drill run --sandbox kubernetes` finds the cluster through KUBECONFIG; a failed
    Job exits 10 with the reason, is recorded, and its namespace deleted; `sweep` works."""
    from drd.cli.app import main
    from drd.errors import SafetyError
    from drd.testing.kube_api import StubApiServer

    cluster = PgCluster.allocate(scratch, "k8scli")
    estate = _s3_estate(estate_builder, cluster, s3).load()
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    stub = StubApiServer(job_condition="Failed")
    try:
        monkeypatch.setenv("KUBECONFIG", str(stub.write_kubeconfig(tmp_path / "kubeconfig")))
        config = ["--config", str(estate.path)]
        code = main([*config, "drill", "run", "erp", "--sandbox", "kubernetes"])
        out = capsys.readouterr().out
        assert code == SafetyError.exit_code
        assert "FAIL" in out
        assert "Because" in out  # the Job's failure reason
        posts = [body["kind"] for method, _, body in stub.requests if method == "POST"]
        assert posts == ["Namespace", "ResourceQuota", "NetworkPolicy", "Secret", "Job"]
        assert [m for m, _, _ in stub.requests][-1] == "DELETE"
        assert main([*config, "--output", "json", "drill", "list", "erp"]) == 0
        (row,) = json.loads(capsys.readouterr().out)
        assert row["verdict"] == "fail"
        assert main([*config, "--output", "json", "drill", "sweep"]) == 0
        assert json.loads(capsys.readouterr().out) == {"deleted": ["drd-drill-0001"]}
    finally:
        stub.close()
