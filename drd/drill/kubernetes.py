"""Run a restore drill inside a throw-away Kubernetes namespace.

A drill runs the same drill agent as a local drill, in a Job, in a namespace of its own
(``drd-drill-<id>``) that is fenced by a ResourceQuota and a NetworkPolicy and deleted
when the drill ends, whatever happens. ``render`` builds the objects as plain dicts
(validated offline against the Kubernetes OpenAPI schemas in tests), ``run_drill``
drives them through the narrow ``DrillCluster`` interface, and ``sweep`` deletes drill
namespaces a crashed drd left behind once their ``drd.io/expires-at`` has passed.

Secrets (repository passphrase, S3 keys) go into one Secret, read by the pod through
``envFrom``; they never appear in the Job, labels, annotations or arguments.

Errors, all ``DrillError`` (a ``CommandError``, exit code 6, "an external program
failed or timed out": the drill agent is that program):

    DrillError
    ├── DrillJobFailedError   the agent pod failed; ``stderr_tail`` holds its redacted log tail
    ├── DrillTimeoutError     the Job outlived ``spec.timeout``
    ├── DrillResultError      the agent exited 0 but printed no JSON result with a "verdict"
    └── DrillClusterError     a Kubernetes API call failed

Limitation: NetworkPolicy selects peers by IP, not by host name. When the object store
endpoint is an IP address, egress is allowed to that address and port only; when it is
a host name, egress is allowed to that port on any address (plus DNS). Clusters whose
CNI does not enforce NetworkPolicy ignore the policy altogether.
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple, Protocol
from urllib.parse import urlsplit

from drd.errors import CommandError
from drd.log import get_logger
from drd.redact import MASK, redact
from drd.retry import RetryPolicy

log = get_logger("drd.drill")

NAMESPACE_PREFIX = "drd-drill-"
JOB_NAME = "drd-drill"
SECRET_NAME = "drd-drill-env"  # noqa: S105 - the Secret's name, not a secret
CONTAINER_NAME = "agent"
SCRATCH_PATH = "/var/lib/drd/drill"
TMP_PATH = "/tmp"  # noqa: S108 - a private emptyDir in the pod, not the host's /tmp

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_DRILL_ID = "drd.io/drill-id"
LABEL_WORKLOAD = "drd.io/workload"
ANNOTATION_EXPIRES_AT = "drd.io/expires-at"
MANAGED_BY = "drd"

RUN_AS_USER = 10001
#: The Job gets a little longer than its own activeDeadlineSeconds before drd gives up,
#: so that Kubernetes usually reports the timeout itself (reason DeadlineExceeded).
DEADLINE_GRACE = timedelta(seconds=30)
#: A drd-managed namespace whose expiry annotation is missing or unreadable is swept
#: once it is this old.
FALLBACK_TTL = timedelta(days=1)
LOG_TAIL_LINES = 20
LOG_TAIL_CHARS = 4000

_DRILL_ID = re.compile(r"^[0-9a-f]{4,16}$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class DrillError(CommandError):
    """A Kubernetes drill did not produce a result."""


class DrillJobFailedError(DrillError):
    pass


class DrillTimeoutError(DrillError):
    pass


class DrillResultError(DrillError):
    pass


class DrillClusterError(DrillError):
    pass


def new_drill_id() -> str:
    """A short random lowercase hex id (8 characters)."""
    return secrets.token_hex(4)


def namespace_name(drill_id: str) -> str:
    return f"{NAMESPACE_PREFIX}{drill_id}"


def object_store_egress(endpoint: str | None, region: str = "us-east-1") -> tuple[str, int]:
    """(host, port) an agent must reach for an S3 endpoint URL (None: AWS in ``region``)."""
    if endpoint is None:
        return f"s3.{region}.amazonaws.com", 443
    parts = urlsplit(endpoint)
    if not parts.hostname:
        raise ValueError(f"object store endpoint {endpoint!r} has no host")
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


@dataclass(frozen=True)
class DrillSpec:
    """Everything needed to render one drill. ``secret_env`` values are secrets."""

    drill_id: str
    workload: str
    image: str
    agent_args: list[str]
    object_store_host: str
    object_store_port: int
    command: list[str] | None = None  # None: the image's entrypoint
    ttl: timedelta = timedelta(hours=6)
    timeout: timedelta = timedelta(hours=2)
    cpu_request: str = "500m"
    cpu_limit: str = "2"
    memory_request: str = "1Gi"
    memory_limit: str = "4Gi"
    scratch_size: str = "20Gi"
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)
    env: dict[str, str] = field(default_factory=dict)  # non-secret environment
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    # "kube-dns": DNS only to pods labelled k8s-app=kube-dns in any namespace; "any": port
    # 53 to anywhere (needed with NodeLocal DNSCache, whose address is not a pod).
    dns_peer: Literal["kube-dns", "any"] = "kube-dns"

    def __post_init__(self) -> None:
        if not _DRILL_ID.match(self.drill_id):
            raise ValueError(f"drill_id {self.drill_id!r} must be 4-16 lowercase hex digits")
        if not _LABEL_VALUE.match(self.workload):
            raise ValueError(f"workload {self.workload!r} is not a valid Kubernetes label value")
        if not 1 <= self.object_store_port <= 65535:
            raise ValueError(f"object_store_port {self.object_store_port} is out of range")
        if self.timeout <= timedelta(0):
            raise ValueError("timeout must be positive")
        if self.ttl <= self.timeout + DEADLINE_GRACE:
            raise ValueError("ttl must exceed timeout (plus 30s): the sweeper would race the drill")
        for name in [*self.secret_env, *self.env]:
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
        if overlap := set(self.secret_env) & set(self.env):
            raise ValueError(f"variables both secret and plain: {sorted(overlap)}")

    @property
    def namespace(self) -> str:
        return namespace_name(self.drill_id)


# ---------------------------------------------------------------------------- render


def _labels(spec: DrillSpec) -> dict[str, str]:
    return {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_DRILL_ID: spec.drill_id,
        LABEL_WORKLOAD: spec.workload,
    }


def _meta(spec: DrillSpec, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": spec.namespace, "labels": _labels(spec)}


def _egress_peer(host: str) -> list[dict[str, Any]]:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return []  # a host name: port-only rule (see the module docstring)
    prefix = 32 if address.version == 4 else 128
    return [{"ipBlock": {"cidr": f"{address}/{prefix}"}}]


def _network_policy(spec: DrillSpec) -> dict[str, Any]:
    dns_ports = [{"protocol": proto, "port": 53} for proto in ("UDP", "TCP")]
    dns_rule: dict[str, Any] = {"ports": dns_ports}
    if spec.dns_peer == "kube-dns":
        dns_rule["to"] = [
            {"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
        ]
    store_rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": spec.object_store_port}]}
    if peers := _egress_peer(spec.object_store_host):
        store_rule["to"] = peers
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(spec, "drd-drill-isolation"),
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [dns_rule, store_rule],
        },
    }


def _job(spec: DrillSpec) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "args": list(spec.agent_args),
        "env": [
            {"name": name, "value": value}
            for name, value in {
                "HOME": TMP_PATH,
                "TMPDIR": TMP_PATH,
                "DRD_DRILL_ID": spec.drill_id,
                "DRD_DRILL_SCRATCH": SCRATCH_PATH,
                **spec.env,
            }.items()
        ],
        "envFrom": [{"secretRef": {"name": SECRET_NAME}}],
        "resources": {
            "requests": {"cpu": spec.cpu_request, "memory": spec.memory_request},
            "limits": {"cpu": spec.cpu_limit, "memory": spec.memory_limit},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "scratch", "mountPath": SCRATCH_PATH},
            {"name": "tmp", "mountPath": TMP_PATH},
        ],
    }
    if spec.command is not None:
        container["command"] = list(spec.command)
    pod_labels = {**_labels(spec), "app.kubernetes.io/name": "drd-drill"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(spec, JOB_NAME),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": int(spec.timeout.total_seconds()),
            "ttlSecondsAfterFinished": int(spec.ttl.total_seconds()),
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS_USER,
                        "runAsGroup": RUN_AS_USER,
                        "fsGroup": RUN_AS_USER,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [
                        {"name": "scratch", "emptyDir": {"sizeLimit": spec.scratch_size}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                    ],
                },
            },
        },
    }


def render(spec: DrillSpec, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """The drill's objects in creation order: Namespace, ResourceQuota, NetworkPolicy,
    Secret, Job."""
    now = now or datetime.now(UTC)
    expires_at = (now + spec.ttl).astimezone(UTC).isoformat(timespec="seconds")
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": spec.namespace,
            "labels": _labels(spec),
            "annotations": {ANNOTATION_EXPIRES_AT: expires_at},
        },
    }
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": _meta(spec, "drd-drill-quota"),
        "spec": {
            "hard": {
                "pods": "1",
                "requests.cpu": spec.cpu_request,
                "limits.cpu": spec.cpu_limit,
                "requests.memory": spec.memory_request,
                "limits.memory": spec.memory_limit,
            }
        },
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(spec, SECRET_NAME),
        "type": "Opaque",
        "stringData": dict(spec.secret_env),
    }
    return [namespace, quota, _network_policy(spec), secret, _job(spec)]


#: Least privilege for the identity drd runs drills with: exactly the calls
#: ``KubernetesCluster`` makes (a test maps every request it sends onto these rules).
#: Namespaces are cluster-scoped, so this is a ClusterRole; Kubernetes RBAC cannot limit
#: "create" by name, which is why the sweeper also checks the managed-by label.
RBAC_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["create", "list", "delete"]},
    {"apiGroups": [""], "resources": ["resourcequotas", "secrets"], "verbs": ["create"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["create"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]},
    {"apiGroups": ["batch"], "resources": ["jobs/status"], "verbs": ["get"]},
]


def cluster_role(name: str = "drd-drill") -> dict[str, Any]:
    """The ClusterRole a drd service account needs to run and sweep drills."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {LABEL_MANAGED_BY: MANAGED_BY}},
        "rules": RBAC_RULES,
    }


# ---------------------------------------------------------------------------- interface


class JobStatus(NamedTuple):
    state: Literal["running", "succeeded", "failed"]
    reason: str = ""


class DrillNamespace(NamedTuple):
    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    created: datetime


class DrillCluster(Protocol):
    """The few Kubernetes calls a drill needs.

    Create (not idempotent: fails if the object exists):
        ``create``
    Read (safe to retry):
        ``job_status``, ``pod_logs``, ``list_drill_namespaces``
    Delete (idempotent: deleting a missing or terminating namespace succeeds):
        ``delete_namespace``
    Every failure is raised as ``DrillClusterError``.
    """

    def create(self, obj: dict[str, Any]) -> None: ...

    def job_status(self, namespace: str, name: str) -> JobStatus: ...

    def pod_logs(self, namespace: str, job_name: str) -> str: ...

    def delete_namespace(self, name: str) -> None: ...

    def list_drill_namespaces(self) -> list[DrillNamespace]: ...


# ---------------------------------------------------------------------------- run and sweep


def _redacted_tail(text: str, spec: DrillSpec) -> str:
    for value in sorted(spec.secret_env.values(), key=len, reverse=True):
        if value:
            text = text.replace(value, MASK)
    tail = "\n".join(redact(text).splitlines()[-LOG_TAIL_LINES:])
    return tail[-LOG_TAIL_CHARS:]


def parse_result(logs: str) -> dict[str, Any] | None:
    """The last log line that is a JSON object with a "verdict" key, if any."""
    for raw in reversed(logs.splitlines()):
        line = raw.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and "verdict" in value:
            return value
    return None


def _logs_or_note(cluster: DrillCluster, spec: DrillSpec) -> str:
    try:
        return _redacted_tail(cluster.pod_logs(spec.namespace, JOB_NAME), spec)
    except Exception as exc:  # the failure being reported matters more than its logs
        return f"(logs unavailable: {exc})"


def run_drill(
    cluster: DrillCluster,
    spec: DrillSpec,
    *,
    poll: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Create the drill's namespace and Job, wait for it, return the agent's result.

    The namespace is always deleted before this returns or raises; if that delete
    fails, it is logged and ``sweep`` removes the namespace after its TTL.
    """
    ns = spec.namespace
    log.info("drill_k8s_start", drill_id=spec.drill_id, workload=spec.workload, namespace=ns)
    try:
        for obj in render(spec, now=now):
            cluster.create(obj)
        deadline = clock() + (spec.timeout + DEADLINE_GRACE).total_seconds()
        while True:
            status = cluster.job_status(ns, JOB_NAME)
            if status.state == "succeeded":
                break
            if status.state == "failed":
                tail = _logs_or_note(cluster, spec)
                cls = (
                    DrillTimeoutError
                    if status.reason == "DeadlineExceeded"
                    else DrillJobFailedError
                )
                raise cls(
                    f"drill {spec.drill_id} for {spec.workload}: Job {ns}/{JOB_NAME} failed "
                    f"({status.reason or 'no reason given'}); last log lines:\n{tail}",
                    stderr_tail=tail,
                    hint="read the agent's log above; the namespace has been deleted",
                )
            if clock() >= deadline:
                tail = _logs_or_note(cluster, spec)
                raise DrillTimeoutError(
                    f"drill {spec.drill_id} for {spec.workload}: Job {ns}/{JOB_NAME} did not "
                    f"finish within {spec.timeout}; last log lines:\n{tail}",
                    stderr_tail=tail,
                    hint="raise the drill timeout or check that the pod could be scheduled",
                )
            sleep(poll)
        logs = cluster.pod_logs(ns, JOB_NAME)
        result = parse_result(logs)
        if result is None:
            tail = _redacted_tail(logs, spec)
            raise DrillResultError(
                f"drill {spec.drill_id} for {spec.workload}: the agent succeeded but printed "
                f"no JSON result with a 'verdict'; last log lines:\n{tail}",
                stderr_tail=tail,
                hint="the agent must print its result as one JSON line on stdout",
            )
        log.info("drill_k8s_done", drill_id=spec.drill_id, verdict=result.get("verdict"))
        return result
    finally:
        try:
            cluster.delete_namespace(ns)
        except Exception as exc:
            log.warning("drill_k8s_cleanup_failed", namespace=ns, error=str(exc))


def _expires_at(item: DrillNamespace) -> datetime:
    raw = item.annotations.get(ANNOTATION_EXPIRES_AT)
    if raw:
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            pass
        else:
            return value if value.tzinfo else value.replace(tzinfo=UTC)
    created = item.created if item.created.tzinfo else item.created.replace(tzinfo=UTC)
    return created + FALLBACK_TTL


def sweep(cluster: DrillCluster, now: datetime | None = None) -> list[str]:
    """Delete expired drd drill namespaces; return their names.

    Only namespaces named ``drd-drill-*`` *and* labelled managed-by=drd are touched.
    """
    now = now or datetime.now(UTC)
    deleted = []
    for item in cluster.list_drill_namespaces():
        if item.labels.get(LABEL_MANAGED_BY) != MANAGED_BY:
            continue
        if not item.name.startswith(NAMESPACE_PREFIX):
            continue
        if _expires_at(item) > now:
            continue
        cluster.delete_namespace(item.name)
        log.info("drill_k8s_swept", namespace=item.name)
        deleted.append(item.name)
    return deleted


# ---------------------------------------------------------------------------- real adapter


def _transient(exc: BaseException) -> bool:
    status = getattr(exc, "status", None)
    return isinstance(status, int) and (status == 429 or status >= 500)


class KubernetesCluster:
    """``DrillCluster`` on the official client; the only module that imports it."""

    def __init__(self, api_client: Any, *, retry: RetryPolicy | None = None) -> None:
        from kubernetes import client  # noqa: PLC0415 - slow import, only this adapter needs it

        # Any: the client's models are typed but its API accepts plain dicts as bodies.
        self._core: Any = client.CoreV1Api(api_client)
        self._batch: Any = client.BatchV1Api(api_client)
        self._net: Any = client.NetworkingV1Api(api_client)
        self._retry = retry or RetryPolicy(attempts=4, deadline=30.0, retryable=_transient)

    @classmethod
    def from_environment(cls, *, context: str | None = None) -> KubernetesCluster:
        """In-cluster service account if running in a pod, else the kubeconfig."""
        from kubernetes import client  # noqa: PLC0415 - see __init__
        from kubernetes import config as kube_config  # noqa: PLC0415

        config: Any = kube_config  # its loaders are untyped
        try:
            config.load_incluster_config()
        except config.ConfigException:
            try:
                config.load_kube_config(context=context)
            except (config.ConfigException, OSError) as exc:
                raise DrillClusterError(
                    f"no Kubernetes configuration: {exc}",
                    hint="run in a pod with a service account, or set KUBECONFIG",
                ) from exc
        return cls(client.ApiClient())

    def _call(self, what: str, fn: Callable[[], Any], *, retry: bool = True) -> Any:
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415 - see __init__
        from urllib3.exceptions import HTTPError  # noqa: PLC0415

        try:
            return self._retry.call(fn) if retry else fn()
        except ApiException as exc:
            raise DrillClusterError(
                f"Kubernetes API: {what} failed: {exc.status} {exc.reason}: "
                f"{redact(str(exc.body or ''))[:500]}",
                hint="check the drd service account's RBAC and the API server's health",
            ) from exc
        except (HTTPError, OSError) as exc:  # connection refused, TLS, timeouts
            raise DrillClusterError(f"Kubernetes API: {what} failed: {exc}") from exc

    def create(self, obj: dict[str, Any]) -> None:
        kind = obj["kind"]
        name = obj["metadata"]["name"]
        ns = obj["metadata"].get("namespace", "")
        creators: dict[str, Callable[[], Any]] = {
            "Namespace": lambda: self._core.create_namespace(body=obj),
            "ResourceQuota": lambda: self._core.create_namespaced_resource_quota(ns, obj),
            "Secret": lambda: self._core.create_namespaced_secret(ns, obj),
            "NetworkPolicy": lambda: self._net.create_namespaced_network_policy(ns, obj),
            "Job": lambda: self._batch.create_namespaced_job(ns, obj),
        }
        if kind not in creators:
            raise DrillClusterError(f"cannot create a {kind}: not a drill object")
        self._call(f"create {kind} {ns}/{name}", creators[kind], retry=False)

    def job_status(self, namespace: str, name: str) -> JobStatus:
        job = self._call(
            f"read Job {namespace}/{name}",
            lambda: self._batch.read_namespaced_job_status(name, namespace),
        )
        status = job.status
        for cond in status.conditions or []:
            if cond.status != "True":
                continue
            if cond.type == "Failed":
                return JobStatus("failed", cond.reason or "")
            if cond.type in ("Complete", "SuccessCriteriaMet"):
                return JobStatus("succeeded", cond.reason or "")
        if status.succeeded:
            return JobStatus("succeeded")
        return JobStatus("running")

    def pod_logs(self, namespace: str, job_name: str) -> str:
        pods = self._call(
            f"list pods of Job {namespace}/{job_name}",
            lambda: self._core.list_namespaced_pod(
                namespace, label_selector=f"job-name={job_name}"
            ),
        )
        if not pods.items:
            return ""
        pod = max(pods.items, key=lambda p: p.metadata.creation_timestamp)
        # _preload_content=False: the client would otherwise turn a JSON log into a repr.
        response = self._call(
            f"read log of pod {namespace}/{pod.metadata.name}",
            lambda: self._core.read_namespaced_pod_log(
                pod.metadata.name, namespace, container=CONTAINER_NAME, _preload_content=False
            ),
        )
        return bytes(response.data).decode("utf-8", errors="replace")

    def delete_namespace(self, name: str) -> None:
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415 - see __init__

        def delete() -> None:
            try:
                self._core.delete_namespace(name, propagation_policy="Background")
            except ApiException as exc:
                if exc.status not in (404, 409):  # gone, or already terminating
                    raise

        self._call(f"delete namespace {name}", delete)

    def list_drill_namespaces(self) -> list[DrillNamespace]:
        result = self._call(
            "list drill namespaces",
            lambda: self._core.list_namespace(label_selector=f"{LABEL_MANAGED_BY}={MANAGED_BY}"),
        )
        return [
            DrillNamespace(
                name=item.metadata.name,
                labels=dict(item.metadata.labels or {}),
                annotations=dict(item.metadata.annotations or {}),
                created=item.metadata.creation_timestamp,
            )
            for item in result.items
        ]
