"""Kubernetes drills: rendered objects, NetworkPolicy, run_drill/sweep on the fake, e2e."""

from __future__ import annotations

import json
import os
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from drd.drill.k8s_fake import FakeDrillCluster, JobOutcome
from drd.drill.kubernetes import (
    ANNOTATION_EXPIRES_AT,
    LABEL_MANAGED_BY,
    DrillClusterError,
    DrillError,
    DrillJobFailedError,
    DrillResultError,
    DrillSpec,
    DrillTimeoutError,
    JobStatus,
    object_store_egress,
    parse_result,
    render,
    run_drill,
    sweep,
)
from drd.errors import CommandError
from drd.testing.kube_api import StubApiServer

K8S_VERSION = "1.30.0"
PASSPHRASE = "correct-horse-battery-staple-42"
ACCESS_KEY = "AKIAFAKEACCESSKEY123"
SECRET_KEY = "wJalrXUtnFEMIK7MDENGbPxRfiCYFAKESECRETKEY"
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def make_spec(**overrides: Any) -> DrillSpec:
    values: dict[str, Any] = {
        "drill_id": "ab12cd34",
        "workload": "odoo-prod",
        "image": "ghcr.io/example/drd:0.1.0",
        "agent_args": ["drill", "agent", "--workload", "odoo-prod", "--t0", NOW.isoformat()],
        "object_store_host": "10.0.0.5",
        "object_store_port": 9000,
        "secret_env": {
            "DRD_REPO_PASSPHRASE": PASSPHRASE,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        },
        "timeout": timedelta(minutes=30),
        "ttl": timedelta(hours=2),
    }
    values.update(overrides)
    return DrillSpec(**values)


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def by_kind(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in objs}


# ---------------------------------------------------------------------------- render


@pytest.mark.parametrize("host", ["10.0.0.5", "s3.example.com", "fd00::5"])
def test_every_rendered_object_validates_strictly(host: str) -> None:
    """Each rendered object passes kubernetes_validate strict for Kubernetes 1.30."""
    objs = render(make_spec(object_store_host=host), now=NOW)
    assert [o["kind"] for o in objs] == [
        "Namespace",
        "ResourceQuota",
        "NetworkPolicy",
        "Secret",
        "Job",
    ]
    for obj in objs:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_strict_validation_catches_unknown_fields() -> None:
    """The validator used above really rejects a misspelt field (guards the guard)."""
    job = by_kind(render(make_spec(), now=NOW))["Job"]
    job["spec"]["backofLimit"] = 0
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)


def test_secret_values_appear_only_in_the_secret() -> None:
    """No secret value appears in any object but the Secret's stringData."""
    objs = render(make_spec(), now=NOW)
    for obj in objs:
        if obj["kind"] == "Secret":
            assert obj["stringData"]["DRD_REPO_PASSPHRASE"] == PASSPHRASE
            rest = {k: v for k, v in obj.items() if k != "stringData"}
            text = json.dumps(rest)
        else:
            text = json.dumps(obj)
        for value in (PASSPHRASE, ACCESS_KEY, SECRET_KEY):
            assert value not in text, f"{value} leaked into {obj['kind']}"


def test_namespace_labels_and_expiry() -> None:
    """The namespace carries drd's labels and an expiry of now + ttl."""
    ns = by_kind(render(make_spec(), now=NOW))["Namespace"]
    assert ns["metadata"]["name"] == "drd-drill-ab12cd34"
    assert ns["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "drd",
        "drd.io/drill-id": "ab12cd34",
        "drd.io/workload": "odoo-prod",
    }
    expires = datetime.fromisoformat(ns["metadata"]["annotations"][ANNOTATION_EXPIRES_AT])
    assert expires == NOW + timedelta(hours=2)


def test_job_is_locked_down() -> None:
    """The Job runs once, bounded in time, non-root, read-only, no caps, no token."""
    spec = make_spec()
    job = by_kind(render(spec, now=NOW))["Job"]
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 1800
    assert job["spec"]["ttlSecondsAfterFinished"] == 7200
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["args"] == spec.agent_args
    assert container["envFrom"] == [{"secretRef": {"name": "drd-drill-env"}}]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts
    assert all("emptyDir" in v for v in pod["volumes"])


def test_quota_matches_the_pod_resources() -> None:
    """The ResourceQuota allows one pod with exactly the Job's requests and limits."""
    quota = by_kind(render(make_spec(cpu_limit="3", memory_limit="6Gi"), now=NOW))
    hard = quota["ResourceQuota"]["spec"]["hard"]
    assert hard["pods"] == "1"
    assert hard["limits.cpu"] == "3"
    assert hard["limits.memory"] == "6Gi"


def test_network_policy_denies_ingress_and_limits_egress() -> None:
    """Ingress is denied; egress is DNS (53 UDP/TCP) and the object store's IP and port."""
    policy = by_kind(render(make_spec(), now=NOW))["NetworkPolicy"]["spec"]
    assert policy["podSelector"] == {}
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    assert policy["ingress"] == []
    ports = {(p["protocol"], p["port"]) for rule in policy["egress"] for p in rule["ports"]}
    assert ports == {("UDP", 53), ("TCP", 53), ("TCP", 9000)}
    dns, store = policy["egress"]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert store["to"] == [{"ipBlock": {"cidr": "10.0.0.5/32"}}]


def test_network_policy_for_host_names_is_port_only() -> None:
    """A host-name endpoint gets a port-only egress rule (NetworkPolicy cannot match names)."""
    spec = make_spec(object_store_host="s3.example.com", object_store_port=443, dns_peer="any")
    policy = by_kind(render(spec, now=NOW))["NetworkPolicy"]["spec"]
    dns, store = policy["egress"]
    assert "to" not in dns
    assert "to" not in store
    assert store["ports"] == [{"protocol": "TCP", "port": 443}]


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("https://minio.local:9000", ("minio.local", 9000)),
        ("http://10.1.2.3", ("10.1.2.3", 80)),
        ("https://s3.example.com", ("s3.example.com", 443)),
        (None, ("s3.eu-west-1.amazonaws.com", 443)),
    ],
)
def test_object_store_egress(endpoint: str | None, expected: tuple[str, int]) -> None:
    """Endpoint URLs map to the host and port the NetworkPolicy must open."""
    assert object_store_egress(endpoint, "eu-west-1") == expected


@pytest.mark.parametrize(
    "overrides",
    [
        {"drill_id": "NOT-HEX"},
        {"workload": "ends-with-dash-"},
        {"object_store_port": 0},
        {"ttl": timedelta(minutes=10)},
        {"secret_env": {"BAD NAME": "x"}},
        {"env": {"AWS_ACCESS_KEY_ID": "plain"}},
    ],
)
def test_spec_rejects_bad_values(overrides: dict[str, Any]) -> None:
    """DrillSpec refuses ids, names, ports and TTLs that would render a broken drill."""
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        make_spec(**overrides)


def test_spec_repr_hides_secrets() -> None:
    """repr(spec) (as printed in tracebacks) does not show the secret environment."""
    assert PASSPHRASE not in repr(make_spec())


def test_parse_result_takes_last_verdict_line() -> None:
    """The result is the last JSON line with a 'verdict'; other lines are ignored."""
    logs = '{"verdict": "old"}\nnoise\n{"event": "x"}\n{"verdict": "pass", "rpo": 12}\n{bad\n'
    assert parse_result(logs) == {"verdict": "pass", "rpo": 12}
    assert parse_result('{"event": "only logs"}\n') is None


# ---------------------------------------------------------------------------- run_drill


def test_run_drill_success_returns_result_and_deletes_namespace() -> None:
    """A succeeding Job yields the agent's parsed result; the namespace is deleted."""
    spec = make_spec()
    fake = FakeDrillCluster()
    fake.script(spec.namespace, JobOutcome.succeeded('log line\n{"verdict": "pass"}\n', polls=3))
    clock = FakeClock()
    result = run_drill(fake, spec, poll=5, sleep=clock.sleep, clock=clock)
    assert result == {"verdict": "pass"}
    assert fake.created[0]["kind"] == "Namespace"
    assert len(fake.created) == 5
    assert fake.deleted == [spec.namespace]
    assert clock.sleeps == [5, 5]


def test_run_drill_pod_failure_raises_with_redacted_tail_and_deletes() -> None:
    """A failed pod raises DrillJobFailedError with its log tail, secrets masked."""
    spec = make_spec()
    fake = FakeDrillCluster()
    logs = "\n".join(f"line {i}" for i in range(100)) + f"\nrestore failed: key {SECRET_KEY}\n"
    fake.script(spec.namespace, JobOutcome.failed(logs))
    clock = FakeClock()
    with pytest.raises(DrillJobFailedError) as info:
        run_drill(fake, spec, sleep=clock.sleep, clock=clock)
    message = str(info.value)
    assert "restore failed" in message
    assert "line 99" in message
    assert "line 10\n" not in message
    assert SECRET_KEY not in message
    assert SECRET_KEY not in info.value.stderr_tail
    assert "BackoffLimitExceeded" in message
    assert isinstance(info.value, CommandError)
    assert fake.deleted == [spec.namespace]


def test_run_drill_deadline_exceeded_is_a_timeout() -> None:
    """A Job failed by Kubernetes for DeadlineExceeded raises DrillTimeoutError."""
    spec = make_spec()
    fake = FakeDrillCluster()
    fake.script(spec.namespace, JobOutcome.failed("", reason="DeadlineExceeded"))
    with pytest.raises(DrillTimeoutError):
        run_drill(fake, spec, sleep=FakeClock().sleep, clock=FakeClock())
    assert fake.deleted == [spec.namespace]


def test_run_drill_timeout_raises_and_deletes() -> None:
    """A Job that never finishes times out (instantly, on a fake clock) and is deleted."""
    spec = make_spec(timeout=timedelta(minutes=1), ttl=timedelta(minutes=10))
    fake = FakeDrillCluster()  # default outcome: never finishes
    clock = FakeClock()
    with pytest.raises(DrillTimeoutError, match="did not finish within 0:01:00"):
        run_drill(fake, spec, poll=2.0, sleep=clock.sleep, clock=clock)
    assert 60 <= clock.now <= 95
    assert fake.deleted == [spec.namespace]


def test_run_drill_exception_while_creating_still_deletes() -> None:
    """If creating the Job fails, the error propagates and the namespace is deleted."""
    spec = make_spec()
    fake = FakeDrillCluster(fail_on_create="Job")
    with pytest.raises(DrillClusterError, match="create Job"):
        run_drill(fake, spec, sleep=FakeClock().sleep, clock=FakeClock())
    assert fake.deleted == [spec.namespace]
    assert spec.namespace not in fake.namespaces


def test_run_drill_missing_result_raises() -> None:
    """An agent that exits 0 without a verdict line raises DrillResultError."""
    spec = make_spec()
    fake = FakeDrillCluster()
    fake.script(spec.namespace, JobOutcome.succeeded(f"done, passphrase {PASSPHRASE}\n"))
    with pytest.raises(DrillResultError) as info:
        run_drill(fake, spec, sleep=FakeClock().sleep, clock=FakeClock())
    assert PASSPHRASE not in str(info.value)
    assert fake.deleted == [spec.namespace]


def test_run_drill_cleanup_failure_does_not_mask_the_result() -> None:
    """A failing namespace delete is logged; the drill's own outcome is returned."""
    spec = make_spec()

    class FlakyDelete(FakeDrillCluster):
        def delete_namespace(self, name: str) -> None:
            raise DrillClusterError("API server down")

    fake = FlakyDelete()
    fake.script(spec.namespace, JobOutcome.succeeded('{"verdict": "pass"}'))
    assert run_drill(fake, spec, sleep=FakeClock().sleep, clock=FakeClock()) == {"verdict": "pass"}


def test_fake_job_status_shape() -> None:
    """The fake reports JobStatus tuples like the real adapter."""
    spec = make_spec()
    fake = FakeDrillCluster()
    for obj in render(spec):
        fake.create(obj)
    assert fake.job_status(spec.namespace, "drd-drill") == JobStatus("running", "")


# ---------------------------------------------------------------------------- sweep


def test_sweep_deletes_only_expired_drd_namespaces() -> None:
    """sweep deletes drd drill namespaces past expiry and nothing else."""
    fake = FakeDrillCluster()
    drd = {LABEL_MANAGED_BY: "drd"}
    past = {ANNOTATION_EXPIRES_AT: (NOW - timedelta(minutes=1)).isoformat()}
    future = {ANNOTATION_EXPIRES_AT: (NOW + timedelta(minutes=1)).isoformat()}
    fake.add_namespace("drd-drill-0001", labels=drd, annotations=past)
    fake.add_namespace("drd-drill-0002", labels=drd, annotations=future)
    fake.add_namespace("drd-drill-0003", labels={}, annotations=past)  # not ours
    fake.add_namespace("drd-drill-0004", labels={LABEL_MANAGED_BY: "helm"}, annotations=past)
    fake.add_namespace("production", labels=drd, annotations=past)  # wrong name: kept
    # no annotation: falls back to creation time + 1 day
    fake.add_namespace("drd-drill-0005", labels=drd, created=NOW - timedelta(days=2))
    fake.add_namespace("drd-drill-0006", labels=drd, created=NOW - timedelta(hours=1))
    assert sweep(fake, now=NOW) == ["drd-drill-0001", "drd-drill-0005"]
    assert fake.deleted == ["drd-drill-0001", "drd-drill-0005"]


def test_sweep_after_a_real_render() -> None:
    """A rendered namespace is kept before its TTL and swept after it."""
    spec = make_spec()
    fake = FakeDrillCluster()
    fake.create(render(spec, now=NOW)[0])
    assert sweep(fake, now=NOW + timedelta(hours=1)) == []
    assert sweep(fake, now=NOW + timedelta(hours=3)) == [spec.namespace]


def test_drill_errors_are_drd_errors() -> None:
    """Every drill error maps to the command-failure exit code."""
    assert issubclass(DrillError, CommandError)
    assert DrillTimeoutError("x").exit_code == 6


# ---------------------------------------------------------------------------- e2e


@pytest.mark.integration
@pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="needs KUBECONFIG for a cluster")
@pytest.mark.timeout(600)
def test_e2e_real_cluster_runs_and_cleans_up() -> None:
    """On a real cluster a trivial agent's verdict comes back and its namespace goes away."""
    from kubernetes import client

    from drd.drill.kubernetes import KubernetesCluster, new_drill_id

    cluster = KubernetesCluster.from_environment()
    spec = make_spec(
        drill_id=new_drill_id(),
        image="busybox:1.36",
        command=["sh", "-c"],
        agent_args=['echo starting; echo \'{"verdict": "pass", "rto_seconds": 1}\''],
        timeout=timedelta(minutes=5),
        ttl=timedelta(minutes=30),
        cpu_request="50m",
        cpu_limit="200m",
        memory_request="32Mi",
        memory_limit="64Mi",
        scratch_size="64Mi",
    )
    result = run_drill(cluster, spec, poll=1.0)
    assert result == {"verdict": "pass", "rto_seconds": 1}
    core: Any = client.CoreV1Api()
    names = [item.metadata.name for item in core.list_namespace().items]
    if spec.namespace in names:  # deletion is asynchronous: it must at least be under way
        assert core.read_namespace(spec.namespace).metadata.deletion_timestamp is not None


# ---------------------------------------------------------------------------- real adapter


def test_real_adapter_runs_a_drill_against_a_stub_api_server() -> None:
    """KubernetesCluster sends the rendered bodies, reads status and logs, deletes idempotently."""
    stub = StubApiServer()
    try:
        spec = make_spec()
        result = run_drill(stub.cluster(), spec, poll=0, sleep=lambda _: None)
    finally:
        stub.close()
    assert result == {"verdict": "pass"}
    posts = [(path, body["kind"]) for method, path, body in stub.requests if method == "POST"]
    ns = spec.namespace
    assert posts == [
        ("/api/v1/namespaces", "Namespace"),
        (f"/api/v1/namespaces/{ns}/resourcequotas", "ResourceQuota"),
        (f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies", "NetworkPolicy"),
        (f"/api/v1/namespaces/{ns}/secrets", "Secret"),
        (f"/apis/batch/v1/namespaces/{ns}/jobs", "Job"),
    ]
    deletes = [path for method, path, _ in stub.requests if method == "DELETE"]
    assert deletes == [f"/api/v1/namespaces/{ns}?propagationPolicy=Background"]


def test_real_adapter_failed_job_and_forbidden_create() -> None:
    """A Failed condition is a failed drill; a 403 on create is a DrillClusterError."""
    stub = StubApiServer(job_condition="Failed")
    try:
        with pytest.raises(DrillJobFailedError, match="Because"):
            run_drill(stub.cluster(), make_spec(), poll=0, sleep=lambda _: None)
    finally:
        stub.close()
    stub = StubApiServer(fail_create="/jobs")
    try:
        with pytest.raises(DrillClusterError, match="403"):
            run_drill(stub.cluster(), make_spec(), poll=0, sleep=lambda _: None)
    finally:
        stub.close()
    assert stub.requests[-1][0] == "DELETE"


def test_real_adapter_sweep_lists_by_label() -> None:
    """sweep through the real adapter lists by the managed-by label and deletes the expired."""
    stub = StubApiServer()
    try:
        assert sweep(stub.cluster(), now=NOW) == ["drd-drill-0001"]
    finally:
        stub.close()
    list_path = next(p for m, p, _ in stub.requests if m == "GET")
    assert list_path == "/api/v1/namespaces?labelSelector=app.kubernetes.io/managed-by%3Ddrd"


def test_real_adapter_unreachable_api_server_is_a_cluster_error() -> None:
    """A refused connection surfaces as DrillClusterError, not a raw urllib3 error."""
    import socket

    from kubernetes import client

    from drd.drill.kubernetes import KubernetesCluster

    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = client.Configuration()
    cfg.host = f"http://127.0.0.1:{port}"
    cfg.retries = 0
    api_client: Any = client.ApiClient(cfg)
    try:
        with pytest.raises(DrillClusterError, match="create Namespace"):
            run_drill(KubernetesCluster(api_client), make_spec(), poll=0, sleep=lambda _: None)
    finally:
        api_client.close()


def _rbac_need(method: str, path: str) -> tuple[str, str, str]:
    """(apiGroup, resource, verb) a request to the API server needs."""
    path = path.split("?", maxsplit=1)[0]
    parts = path.strip("/").split("/")
    group = "" if parts[0] == "api" else parts[1]
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if rest[0] == "namespaces" and len(rest) > 2:
        rest = rest[2:]  # namespaced: drop "namespaces/<ns>"
    resource = rest[0] + ("/" + rest[2] if len(rest) > 2 else "")
    named = len(rest) > 1
    verb = {"POST": "create", "DELETE": "delete"}.get(method) or ("get" if named else "list")
    return group, resource, verb


def test_cluster_role_covers_every_call_and_nothing_more() -> None:
    """Every request the real adapter makes is allowed by RBAC_RULES, and every rule is used."""
    from drd.drill.kubernetes import RBAC_RULES, cluster_role
    from drd.testing.kube_api import StubApiServer

    kubernetes_validate.validate(cluster_role(), K8S_VERSION, strict=True)
    needed: set[tuple[str, str, str]] = set()
    for condition in ("Complete", "Failed"):
        stub = StubApiServer(job_condition=condition)
        try:
            with pytest.raises(DrillJobFailedError) if condition == "Failed" else nullcontext():
                run_drill(stub.cluster(), make_spec(), poll=0, sleep=lambda _: None)
            sweep(stub.cluster(), now=NOW)
        finally:
            stub.close()
        needed |= {_rbac_need(method, path) for method, path, _ in stub.requests}
    granted = {
        (group, resource, verb)
        for rule in RBAC_RULES
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert needed == granted
