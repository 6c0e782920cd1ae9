"""helm/drd: rendered and linted offline (helm-python-sdk), every object validated.

The chart is rendered with the Helm library bundled by ``helm-python-sdk`` (no helm
binary, no cluster). Built-in objects are validated strictly against the Kubernetes 1.30
OpenAPI schemas (``kubernetes-validate``); the Prometheus Operator objects, which that
validator does not know, are checked structurally. Alert rules and the Grafana dashboard
may only use metrics drd really exports (``drd.metrics.REGISTRY``), the drill ClusterRole
must be exactly ``drd.drill.kubernetes.RBAC_RULES``, and the generated drd.yaml must load
with drd's own config loader.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from drd.config.loader import load
from drd.drill.kubernetes import (
    LABEL_MANAGED_BY,
    MANAGED_BY,
    NAMESPACE_PREFIX,
    RBAC_RULES,
    RUN_AS_USER,
)
from drd.metrics import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "drd"
K8S_VERSION = "1.30.0"
RELEASE = "drd"
NAMESPACE = "backup"
MONITORING_API = "monitoring.coreos.com/v1"

#: The smallest values the chart renders with: a catalog and the Secret holding its password.
MINIMAL = {
    "catalog": {"url": "postgresql://drd@catalog-db:5432/drd"},
    "secrets": {"existingSecret": "drd-secrets"},
}


def ci_values() -> dict[str, Any]:
    """helm/drd/ci/test-values.yaml: a full estate, every optional object enabled."""
    data: dict[str, Any] = yaml.safe_load((CHART / "ci" / "test-values.yaml").read_text())
    return data


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` merged in, recursively (like a second -f file)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def render(values: dict[str, Any], namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """Render the chart as `helm template` would and parse every manifest."""
    with helm_python.Chart.load(CHART) as chart:
        manifests = chart.render(values=values, name=RELEASE, namespace=namespace)
    objs: list[dict[str, Any]] = []
    for path, text in sorted(manifests.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        objs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objs


def one(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def kinds(objs: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objs)


@pytest.fixture(scope="module")
def full() -> list[dict[str, Any]]:
    return render(ci_values())


def pod_spec(objs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(objs, "Deployment")["spec"]["template"]["spec"]
    return spec


def container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = pod_spec(objs)["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


# ------------------------------------------------------------------ exported metrics


def exported_metric_names() -> set[str]:
    """Series names drd's /metrics can expose (counters get ``_total``, histograms parts)."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
        else:
            names.add(family.name)
    return names


#: Labels an expression may match or group on: drd's own plus the ones Prometheus adds
#: to every target (the Prometheus Operator adds namespace, pod, service ...).
ALLOWED_LABELS = {
    "workload",
    "type",
    "kind",
    "le",
    "namespace",
    "job",
    "instance",
    "pod",
    "service",
}

# ------------------------------------------------------------------ a small PromQL reader

AGGREGATORS = {
    "sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk",
    "quantile", "count_values",
}  # fmt: skip
FUNCTIONS = AGGREGATORS | {
    "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp",
    "clamp_max", "clamp_min", "count_over_time", "delta", "deriv", "floor",
    "histogram_quantile", "idelta", "increase", "irate", "label_join", "label_replace",
    "last_over_time", "max_over_time", "min_over_time", "predict_linear",
    "present_over_time", "rate", "resets", "round", "scalar", "sort", "sort_desc",
    "sum_over_time", "time", "timestamp", "vector",
}  # fmt: skip
KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2"}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[smhdwy]*)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|==|!=|>=|<=|[-+*/%^<>=(){},])
    """,
    re.VERBOSE,
)


class PromQLError(ValueError):
    pass


def tokens(expr: str) -> Iterator[tuple[str, str]]:
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if not match:
            raise PromQLError(f"cannot read {expr[pos : pos + 20]!r} in {expr!r}")
        pos = match.end()
        kind = match.lastgroup or ""
        if kind != "space":
            yield kind, match.group()


MATCH_OPS = ("=", "!=", "=~", "!~")


def read_promql(expr: str) -> tuple[set[str], set[str]]:
    """The metric names and label names a PromQL expression uses.

    Grafana's ``label_values(SELECTOR, LABEL)`` is read as its selector and label.
    Raises ``PromQLError`` on unbalanced brackets, unknown functions and stray input.
    """
    grafana = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_]\w*)\s*\)\s*", expr, re.S)
    if grafana:
        metrics, labels = read_promql(grafana.group(1))
        return metrics, labels | {grafana.group(2)}
    toks = list(tokens(expr))
    metrics: set[str] = set()
    labels: set[str] = set()
    depth = 0
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        depth += {"(": 1, ")": -1}.get(text, 0)
        if depth < 0 or text == "}":
            raise PromQLError(f"unbalanced {text!r} in {expr!r}")
        if text == "{":
            end = _closing(toks, i, "}", expr)
            inner = toks[i + 1 : end]
            pairs = itertools.pairwise(inner)
            labels.update(t for (k, t), (_, op) in pairs if k == "ident" and op in MATCH_OPS)
            i = end
        elif kind == "ident":
            i = _identifier(toks, i, expr, metrics, labels)
        i += 1
    if depth != 0:
        raise PromQLError(f"unbalanced '(' in {expr!r}")
    return metrics, labels


def _closing(toks: list[tuple[str, str]], start: int, char: str, expr: str) -> int:
    end = next((j for j in range(start, len(toks)) if toks[j][1] == char), None)
    if end is None:
        raise PromQLError(f"unclosed bracket before {char!r} in {expr!r}")
    return end


def _identifier(
    toks: list[tuple[str, str]], i: int, expr: str, metrics: set[str], labels: set[str]
) -> int:
    """Classify the identifier at ``i`` (label list, keyword, function or metric)."""
    text = toks[i][1]
    nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
    if text in LABEL_LIST_KEYWORDS:
        if nxt == "(":
            end = _closing(toks, i + 1, ")", expr)
            labels.update(t for k, t in toks[i + 2 : end] if k == "ident")
            return end
    elif text in KEYWORDS:
        pass
    elif nxt == "(" or (text in AGGREGATORS and nxt in ("by", "without")):
        if text not in FUNCTIONS:
            raise PromQLError(f"unknown function {text}() in {expr!r}")
    else:
        metrics.add(text)
    return i


def check_promql(expr: str, also: frozenset[str] = frozenset()) -> None:
    """The expression reads, uses only drd's exported metrics (and ``also``) and known labels."""
    metrics, labels = read_promql(expr)
    assert metrics, f"no metric in {expr!r}"
    unknown = metrics - exported_metric_names() - also
    assert not unknown, f"{expr!r} uses metrics drd does not export: {sorted(unknown)}"
    stray = labels - ALLOWED_LABELS
    assert not stray, f"{expr!r} uses labels drd's metrics do not have: {sorted(stray)}"


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("rate(drd_no_such_metric_total[5m]) > 0", "does not export"),
        ("max by (workload) (drd_rpo_exposure_seconds", "unbalanced"),
        ("maxx(drd_rpo_exposure_seconds)", "unknown function"),
        ('drd_rpo_exposure_seconds{tenant="acme"}', "labels"),
        ("drd_wal_archive_failed > 0", "does not export"),
    ],
)
def test_promql_checker_catches_mistakes(expr: str, problem: str) -> None:
    """The checker used below rejects unknown metrics, labels, functions and bad syntax."""
    with pytest.raises((AssertionError, PromQLError), match=problem):
        check_promql(expr)


def test_promql_reader_finds_metrics_and_labels() -> None:
    """Metric names and label names are told apart from functions and keywords."""
    metrics, labels = read_promql(
        "time() - max by (namespace, workload)"
        ' (drd_backup_last_success_timestamp_seconds{type="full"})'
        " > on (namespace, workload) group_left drd_backup_max_age_seconds offset 5m"
    )
    assert metrics == {"drd_backup_last_success_timestamp_seconds", "drd_backup_max_age_seconds"}
    assert labels == {"namespace", "workload", "type"}


# ------------------------------------------------------------------ rendering and lint


def test_chart_lints_clean() -> None:
    """`helm lint --strict` finds no warning or error (icon: info only) for Kubernetes 1.30."""
    report = helm_python.lint(
        CHART, ci_values(), strict=True, namespace=NAMESPACE, kube_version=f"v{K8S_VERSION}"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [], problems
    assert report["errors"] == []
    assert report["total_charts_linted"] == 1


VALUE_SETS = {
    "ci": ci_values(),
    "minimal": MINIMAL,
    "single-no-drills": merged(
        MINIMAL,
        {
            "replicaCount": 1,
            "catalog": {"passwordKey": ""},
            "secrets": {"existingSecret": ""},
            "drills": {"kubernetes": {"enabled": False}},
            "networkPolicy": {"enabled": False},
            "serviceAccount": {"create": False, "name": "existing"},
        },
    ),
}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_object_validates_strictly(name: str) -> None:
    """Each built-in object passes kubernetes-validate strict for 1.30; CRDs are checked apart."""
    objs = render(VALUE_SETS[name])
    assert objs
    for obj in objs:
        if obj["apiVersion"] == MONITORING_API:
            continue
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    assert "Secret" not in kinds(objs), "the chart never holds secret values"


def test_objects_rendered_per_value_set() -> None:
    """Optional objects follow their switches; the defaults need no Prometheus Operator."""
    assert kinds(render(VALUE_SETS["ci"])) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    assert kinds(render(MINIMAL)) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    assert kinds(render(VALUE_SETS["single-no-drills"])) == ["ConfigMap", "Deployment", "Service"]


def test_strict_validation_catches_unknown_fields(full: list[dict[str, Any]]) -> None:
    """The validator really rejects a misspelt field in a rendered object (guards the guard)."""
    deployment = copy.deepcopy(one(full, "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


# ------------------------------------------------------------------ the pod


def test_pod_runs_the_daemon_locked_down(full: list[dict[str, Any]]) -> None:
    """Non-root 10001, read-only root, no capabilities, RuntimeDefault seccomp, emptyDirs."""
    spec = pod_spec(full)
    ctr = container(full)
    assert ctr["args"] == ["daemon"]
    assert {"name": "DRD_CONFIG", "value": "/etc/drd/drd.yaml"} in ctr["env"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == RUN_AS_USER == 10001
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert ctr["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in ctr["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/var/lib/drd"]]
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert volumes[mounts["/run/secrets/drd"]]["secret"]["secretName"] == "drd-secrets"
    writable = {m["mountPath"] for m in ctr["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/var/lib/drd", "/tmp"}
    assert {"secretRef": {"name": "drd-s3-keys"}} in ctr["envFrom"]
    assert spec["automountServiceAccountToken"] is True  # drills talk to the API


def test_probes_use_the_daemon_endpoints(full: list[dict[str, Any]]) -> None:
    """Liveness and startup on /healthz, readiness on /readyz, all on the HTTP port."""
    ctr = container(full)
    assert ctr["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert ctr["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert ctr["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert ctr["ports"] == [{"name": "http", "containerPort": 9187, "protocol": "TCP"}]
    service = one(full, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"] == one(full, "Deployment")["spec"]["selector"]["matchLabels"]


def test_replicas_and_disruption_budget() -> None:
    """Two replicas with a PDB of minAvailable 1; one replica gets none (it would block drains)."""
    objs = render(MINIMAL)
    assert one(objs, "Deployment")["spec"]["replicas"] == 2
    pdb = one(objs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    labels = one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert "PodDisruptionBudget" not in kinds(render(merged(MINIMAL, {"replicaCount": 1})))


def test_config_change_rolls_the_pods() -> None:
    """The pod template carries a hash of the ConfigMap, so a config change restarts drd."""

    def checksum(values: dict[str, Any]) -> str:
        meta = one(render(values), "Deployment")["spec"]["template"]["metadata"]
        value: str = meta["annotations"]["checksum/config"]
        return value

    other = merged(MINIMAL, {"config": {"log": {"level": "debug"}}})
    assert checksum(MINIMAL) == checksum(copy.deepcopy(MINIMAL))
    assert checksum(MINIMAL) != checksum(other)


# ------------------------------------------------------------------ config and tiers


def write_config_volume(objs: list[dict[str, Any]], root: Path) -> Path:
    """Lay out the ConfigMap as the pod sees it (the Deployment's items), return drd.yaml."""
    configmap = next(o for o in objs if o["kind"] == "ConfigMap" and "drd.yaml" in o["data"])
    volume = next(v for v in pod_spec(objs)["volumes"] if v["name"] == "config")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    items = volume["configMap"]["items"]
    assert sorted(i["key"] for i in items) == sorted(configmap["data"])
    for item in items:
        target = root / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(configmap["data"][item["key"]])
    return root / "drd.yaml"


def test_rendered_config_loads_with_drd(full: list[dict[str, Any]], tmp_path: Path) -> None:
    """drd's own loader accepts the generated drd.yaml and tiers; chart-owned settings agree."""
    mount = next(m for m in container(full)["volumeMounts"] if m["name"] == "config")
    assert mount["mountPath"] == "/etc/drd"
    config_path = write_config_volume(full, tmp_path)
    raw = yaml.safe_load(config_path.read_text())
    assert raw["tiers_dir"] == "/etc/drd/tiers"
    raw["tiers_dir"] = str(tmp_path / "tiers")  # where the mount is in this test
    config_path.write_text(yaml.safe_dump(raw))

    estate = load(config_path, check_secrets=False)
    config = estate.config
    assert config.daemon.listen_host == "0.0.0.0"  # noqa: S104 - all interfaces: it is a pod
    assert config.daemon.listen_port == container(full)["ports"][0]["containerPort"]
    assert config.daemon.max_concurrent_jobs == 4  # the user's daemon settings are kept
    assert config.catalog == "postgresql://drd@catalog-db.drd.svc:5432/drd"
    assert config.catalog_password is not None
    assert str(config.catalog_password.file) == "/run/secrets/drd/catalog-password"
    assert str(config.state_dir) == "/var/lib/drd"
    assert config.log.format == "json"
    assert config.kubernetes is not None
    assert config.kubernetes.image == container(full)["image"] == "drd:0.1.0"
    assert {w.name for w in config.workloads} == {"acme-prod", "acme-test"}
    assert set(estate.tiers) == {"tier-0", "tier-1", "tier-2", "tier-3", "gold"}


def test_shipped_tiers_are_the_repositorys(full: list[dict[str, Any]]) -> None:
    """The chart's default tiers are tiers/*.yaml, byte for byte (files/tiers is a symlink)."""
    data = one([o for o in full if "drd.yaml" in o.get("data", {})], "ConfigMap")["data"]
    for path in sorted((ROOT / "tiers").glob("*.yaml")):
        assert data[f"tiers.{path.stem}.yaml"] == path.read_text()


def test_packaged_chart_carries_the_tiers(tmp_path: Path) -> None:
    """`helm package` stores the linked tiers as files; the archive renders the same."""
    archive = Path(helm_python.package(CHART, destination=tmp_path))
    with helm_python.Chart.load_archive(archive.read_bytes()) as chart:
        names = {f["name"] for f in chart.files}
        manifests = chart.render(values=ci_values(), name=RELEASE, namespace=NAMESPACE)
    assert {f"files/tiers/{p.name}" for p in (ROOT / "tiers").glob("*.yaml")} <= names
    from_archive = [
        doc
        for path, text in manifests.items()
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    assert sorted(map(json.dumps, from_archive)) == sorted(map(json.dumps, render(ci_values())))


def test_values_tiers_replace_or_stand_alone(tmp_path: Path) -> None:
    """A values tier replaces the shipped one of its name; includeDefaultTiers=false: no others."""
    custom = (ROOT / "tiers" / "tier-3.yaml").read_text().replace("Best effort", "Our own")
    values = merged(MINIMAL, {"tiers": {"tier-3": custom}})
    data = one(render(values), "ConfigMap")["data"]
    assert data["tiers.tier-3.yaml"] == custom
    assert data["tiers.tier-0.yaml"] == (ROOT / "tiers" / "tier-0.yaml").read_text()

    alone = render(merged(values, {"includeDefaultTiers": False}))
    assert sorted(one(alone, "ConfigMap")["data"]) == ["drd.yaml", "tiers.tier-3.yaml"]
    config_path = write_config_volume(alone, tmp_path)
    raw = yaml.safe_load(config_path.read_text())
    raw["tiers_dir"] = str(tmp_path / "tiers")
    config_path.write_text(yaml.safe_dump(raw))
    assert set(load(config_path, check_secrets=False).tiers) == {"tier-3"}


def test_drills_disabled_means_no_cluster_rights() -> None:
    """Without Kubernetes drills: no ClusterRole, no admission policy, no API token, no section."""
    objs = render(VALUE_SETS["single-no-drills"])
    assert pod_spec(objs)["automountServiceAccountToken"] is False
    assert pod_spec(objs)["serviceAccountName"] == "existing"
    config = yaml.safe_load(one(objs, "ConfigMap")["data"]["drd.yaml"])
    assert "kubernetes" not in config
    assert "catalog_password" not in config
    assert not any(v["name"] == "secrets" for v in pod_spec(objs)["volumes"])


# ------------------------------------------------------------------ RBAC


def test_drill_cluster_role_is_exactly_rbac_rules(full: list[dict[str, Any]]) -> None:
    """The ClusterRole grants exactly what drd's drill code needs, bound to drd's account."""
    role = one(full, "ClusterRole")
    assert role["rules"] == RBAC_RULES
    binding = one(full, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    account = one(full, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    assert pod_spec(full)["serviceAccountName"] == account["metadata"]["name"]
    assert NAMESPACE in role["metadata"]["name"]  # two releases named alike do not collide
    assert "Role" not in kinds(full)  # leader election lives in PostgreSQL: no namespaced rights


def test_admission_policy_confines_drill_rights(full: list[dict[str, Any]]) -> None:
    """Every create/delete the ClusterRole grants is matched, for drd's account, to drd-drill-*."""
    policy = one(full, "ValidatingAdmissionPolicy")
    binding = one(full, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    account = one(full, "ServiceAccount")["metadata"]["name"]
    assert spec["matchConditions"][0]["expression"] == (
        f'request.userInfo.username == "system:serviceaccount:{NAMESPACE}:{account}"'
    )
    matched = {
        (group, resource, operation)
        for rule in spec["matchConstraints"]["resourceRules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for operation in rule["operations"]
    }
    for rule in RBAC_RULES:
        for verb in set(rule["verbs"]) & {"create", "delete"}:
            for resource in rule["resources"]:
                assert (rule["apiGroups"][0], resource, verb.upper()) in matched
    text = " ".join(v["expression"] for v in spec["validations"])
    assert f"'{NAMESPACE_PREFIX}'" in text
    assert f"'{LABEL_MANAGED_BY}'" in text
    assert f"== '{MANAGED_BY}'" in text


# ------------------------------------------------------------------ network policy


def test_network_policy_allows_only_what_drd_uses(full: list[dict[str, Any]]) -> None:
    """Ingress on the HTTP port only; egress to DNS, catalog, S3, databases and the API."""
    policy = one(full, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert (
        policy["podSelector"]["matchLabels"]
        == one(full, "Deployment")["spec"]["selector"]["matchLabels"]
    )
    assert len(policy["ingress"]) == 1
    assert policy["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert policy["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    ports = [sorted((p["port"], p["protocol"]) for p in rule["ports"]) for rule in policy["egress"]]
    assert ports == [
        [(53, "TCP"), (53, "UDP")],  # DNS, to kube-dns only
        [(5432, "TCP")],  # catalog
        [(9000, "TCP")],  # object store
        [(5432, "TCP"), (8432, "TCP")],  # databases and pgBackRest TLS servers
        [(443, "TCP"), (6443, "TCP")],  # Kubernetes API
    ]
    assert policy["egress"][2]["to"] == [{"ipBlock": {"cidr": "10.0.20.5/32"}}]
    assert all(rule.get("ports") for rule in policy["egress"]), "no rule opens every port"


# ------------------------------------------------------------------ monitoring


def test_service_monitor_scrapes_the_metrics_endpoint(full: list[dict[str, Any]]) -> None:
    """ServiceMonitor (monitoring.coreos.com/v1) selects drd's Service and scrapes /metrics."""
    monitor = one(full, "ServiceMonitor")
    assert monitor["apiVersion"] == MONITORING_API
    assert monitor["metadata"]["name"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    service = one(full, "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    assert re.fullmatch(r"\d+(ms|s|m|h)", endpoint["interval"])


REQUIRED_ALERTS = {
    "DrdDown",
    "DrdBackupTooOld",
    "DrdWalArchivingFailing",
    "DrdRpoExposureAboveObjective",
    "DrdDrillFailed",
    "DrdDrillOverdue",
    "DrdWalContinuityGap",
}


def alert_rules(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rule = one(objs, "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_prometheus_rule_is_well_formed(full: list[dict[str, Any]]) -> None:
    """PrometheusRule (monitoring.coreos.com/v1): groups of rules with the required fields."""
    rule = one(full, "PrometheusRule")
    assert rule["apiVersion"] == MONITORING_API
    assert rule["metadata"]["name"]
    assert set(rule["spec"]) == {"groups"}
    for group in rule["spec"]["groups"]:
        assert group["name"]
        assert group["rules"]
    alerts = alert_rules(full)
    names = [a["alert"] for a in alerts]
    assert len(names) == len(set(names))
    assert set(names) >= REQUIRED_ALERTS
    for alert in alerts:
        assert set(alert) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
        assert isinstance(alert["expr"], str)
        if "for" in alert:
            assert re.fullmatch(r"\d+[smh]", alert["for"])
        assert alert["labels"]["severity"] in {"critical", "warning"}
        assert alert["labels"]["team"] == "platform"  # prometheusRule.additionalAlertLabels
        assert {"summary", "description", "runbook_url"} <= set(alert["annotations"])
        if alert["alert"] != "DrdDown":
            assert "{{ $labels.workload }}" in alert["annotations"]["summary"]
        assert "__" not in json.dumps(alert), "a placeholder was left unfilled"


def test_alerts_link_existing_runbooks(full: list[dict[str, Any]]) -> None:
    """Each alert's runbook_url is runbookBaseUrl + a runbook that exists in runbooks/."""
    base = ci_values()["prometheusRule"]["runbookBaseUrl"]
    for alert in alert_rules(full):
        url = alert["annotations"]["runbook_url"]
        assert url.startswith(f"{base}/"), url
        assert (ROOT / "runbooks" / url.removeprefix(f"{base}/")).is_file(), url


def test_alert_expressions_use_only_exported_metrics(full: list[dict[str, Any]]) -> None:
    """Every PromQL expression reads and names only metrics drd exports (drd/metrics.py)."""
    used: set[str] = set()
    for alert in alert_rules(full):
        check_promql(alert["expr"], also=frozenset({"up"}))  # `up`: DrdDown, from Prometheus
        used |= read_promql(alert["expr"])[0]
    assert {
        "drd_backup_last_success_timestamp_seconds",
        "drd_backup_max_age_seconds",
        "drd_wal_archive_failed_total",
        "drd_rpo_exposure_seconds",
        "drd_rpo_objective_seconds",
        "drd_drill_verdict",
        "drd_drill_last_success_timestamp_seconds",
        "drd_drill_max_age_seconds",
        "drd_wal_continuity_gaps",
    } <= used


def test_alert_expressions_aggregate_replicas(full: list[dict[str, Any]]) -> None:
    """Each expression aggregates by workload, so two scraped replicas cannot break matching."""
    for alert in alert_rules(full):
        if alert["alert"] == "DrdDown":
            continue
        assert "by (namespace, workload)" in alert["expr"], alert["alert"]
        for match in re.finditer(r"\bon \(([^)]*)\)", alert["expr"]):
            assert match.group(1) == "namespace, workload", alert["alert"]


def test_down_alert_watches_this_release(full: list[dict[str, Any]]) -> None:
    """DrdDown fires when no replica of this release's Service is scraped successfully."""
    (down,) = [a for a in alert_rules(full) if a["alert"] == "DrdDown"]
    service = one(full, "Service")["metadata"]["name"]
    assert down["expr"].strip() == (
        f'absent(up{{namespace="{NAMESPACE}", service="{service}"}} == 1)'
    )
    assert (
        one(full, "ServiceMonitor")["spec"]["selector"]["matchLabels"].items()
        <= one(full, "Service")["metadata"]["labels"].items()
    )


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[str]:
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            yield query["query"] if isinstance(query, dict) else query


def test_dashboard_is_valid_and_uses_only_exported_metrics(full: list[dict[str, Any]]) -> None:
    """files/dashboard.json parses, ships in a labelled ConfigMap, queries real metrics only."""
    text = (CHART / "files" / "dashboard.json").read_text()
    dashboard = json.loads(text)
    configmap = next(o for o in full if o["kind"] == "ConfigMap" and "drd.json" in o["data"])
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["drd.json"]) == dashboard
    assert dashboard["uid"]
    assert dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
    queries = list(dashboard_queries(dashboard))
    assert len(queries) > 10
    for query in queries:
        check_promql(query)
    titles = " | ".join(p["title"] for p in dashboard["panels"]).lower()
    for wanted in ("rpo exposure vs objective", "backup age", "measured rpo", "measured rto"):
        assert wanted in titles
    assert "archive failures" in titles


def test_monitoring_is_off_by_default() -> None:
    """ServiceMonitor, PrometheusRule and the dashboard need switching on (CRDs, Grafana)."""
    assert not {"ServiceMonitor", "PrometheusRule"} & set(kinds(render(MINIMAL)))
    configmaps = [o for o in render(MINIMAL) if o["kind"] == "ConfigMap"]
    assert len(configmaps) == 1


# ------------------------------------------------------------------ bad values


SCHEMA_ERRORS = [
    ({"replicaCount": "two"}, "at '/replicaCount': got string, want integer"),
    ({"replicaCount": 0}, "at '/replicaCount': minimum"),
    ({"catalog": {"url": "postgresql://drd:secret@db/drd"}}, "at '/catalog/url'"),
    ({"config": {"state_dir": "/data"}}, "additional properties 'state_dir' not allowed"),
    ({"service": {"port": 70000}}, "at '/service/port'"),
    ({"tiers": {"Gold!": {}}}, "invalid propertyName 'Gold!'"),
    ({"replicas": 3}, "additional properties 'replicas' not allowed"),
    ({"config": {"workloads": [{"name": "x", "tier": "tier-0"}]}}, "missing properties"),
]


@pytest.mark.parametrize(("override", "message"), SCHEMA_ERRORS)
def test_bad_values_fail_render_and_lint(override: dict[str, Any], message: str) -> None:
    """values.schema.json rejects a bad value, naming its path, in template and in lint."""
    values = merged(ci_values(), override)
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(message)):
        render(values)
    report = helm_python.lint(CHART, values, namespace=NAMESPACE)
    assert any(message in error for error in report["errors"]), report["errors"]


TEMPLATE_ERRORS = [
    ({"catalog": {"url": ""}}, "catalog.url is required"),
    (
        {"secrets": {"existingSecret": ""}},
        'catalog.passwordKey is "catalog-password" but secrets.existingSecret is empty',
    ),
    (
        {"config": {"daemon": {"listen_port": 8080}}},
        "config.daemon.listen_port is set by the chart",
    ),
    ({"prometheusRule": {"runbookBaseUrl": ""}}, "prometheusRule.runbookBaseUrl is required"),
]


@pytest.mark.parametrize(("override", "message"), TEMPLATE_ERRORS)
def test_inconsistent_values_fail_with_a_clear_message(
    override: dict[str, Any], message: str
) -> None:
    """Checks the schema cannot express fail rendering with a message saying what to do."""
    with pytest.raises(helm_python.HelmRenderError, match=re.escape(message)):
        render(merged(ci_values(), override))
