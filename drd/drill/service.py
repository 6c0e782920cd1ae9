"""Run a drill in its sandbox and record it: catalog row, result object in the
workload's repository (evidence must survive the loss of drd's host), metrics.

The sandbox is the tier's (``drills.sandbox``) unless the caller names one. Both run the
same agent (``drd.drill.agent``): locally in this process, or in a Kubernetes Job that
prints its result, which is read back here and recorded exactly like a local one. A
drill that could not even produce a result (pod failed, timeout, API refused) is
recorded too, as a failed drill saying why: evidence of a failure is still evidence.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from drd import metrics
from drd.catalog import Catalog, DrillRecord
from drd.config import Estate
from drd.drill import bundle, kubernetes
from drd.drill.agent import DrillResult, run_local_drill
from drd.drill.kubernetes import DrillCluster, DrillSpec
from drd.errors import DrdError
from drd.log import get_logger
from drd.retention.immutability import ensure_object_lock, lock_store
from drd.storage.factory import open_store

log = get_logger("drd.drill")


Sandbox = Literal["local", "kubernetes"]


def run_in_kubernetes(
    estate: Estate,
    workload_name: str,
    *,
    t0: datetime | None = None,
    cluster: DrillCluster | None = None,
) -> DrillResult:
    """Run the agent in a drill namespace; its printed result, or a failed one saying why."""
    config = estate.config
    pod = bundle.build(estate, workload_name)  # checks the kubernetes section and the repo
    settings = config.kubernetes
    assert settings is not None  # noqa: S101 - bundle.build raised otherwise
    workload = config.workload(workload_name)
    tier = estate.tiers[workload.tier]
    repository = config.repository(workload.repository)
    host, port = kubernetes.object_store_egress(
        getattr(repository, "endpoint", None), getattr(repository, "region", "us-east-1")
    )
    drill_id = kubernetes.new_drill_id()
    requested = datetime.now(UTC)
    args = ["drill", "agent", workload_name, "--drill-id", drill_id]
    args += ["--requested-at", requested.isoformat()]
    if t0 is not None:
        args += ["--at", t0.isoformat()]
    timeout = tier.drills.timeout
    spec = DrillSpec(
        drill_id=drill_id,
        workload=workload_name,
        image=settings.image,
        agent_args=args,
        object_store_host=host,
        object_store_port=port,
        ttl=max(settings.namespace_ttl, timeout + timedelta(hours=1)),
        timeout=timeout,
        cpu_request=settings.cpu_request,
        cpu_limit=settings.cpu_limit,
        memory_request=settings.memory_request,
        memory_limit=settings.memory_limit,
        scratch_size=settings.scratch_size,
        secret_env=pod.secret_env,
        env={bundle.BUNDLE_ENV: pod.bundle},
        image_pull_policy=settings.image_pull_policy,
        dns_peer=settings.dns_peer,
    )
    try:
        if cluster is None:
            cluster = kubernetes.KubernetesCluster.from_environment(context=settings.context)
        data = kubernetes.run_drill(cluster, spec, poll=settings.poll_interval.total_seconds())
        result = DrillResult.from_dict(data)
        if result.drill_id != drill_id or result.workload != workload_name:
            result.reasons.append(
                f"the agent answered for drill {result.drill_id} of {result.workload}, "
                f"not {drill_id} of {workload_name}"
            )
    except DrdError as exc:  # DrillError included: a failed drill, recorded
        result = DrillResult(
            drill_id=drill_id,
            workload=workload_name,
            tier=tier.name,
            t0=t0 or requested,
            started_at=requested,
            finished_at=datetime.now(UTC),
            rpo_objective_seconds=tier.objectives.rpo.total_seconds(),
            rto_objective_seconds=tier.objectives.rto.total_seconds(),
            reasons=[f"error: {exc}"],
        )
    result.sandbox = f"kubernetes:{spec.namespace}"
    return result


def drill_record(
    result: DrillResult, details: dict[str, Any], *, run_id: int | None = None
) -> DrillRecord:
    """The catalog row of a drill result (also rebuilt from the stored result object)."""
    passed = result.verdict == "pass"
    return DrillRecord(
        workload=result.workload,
        t0=result.t0,
        started_at=result.started_at,
        finished_at=result.finished_at,
        status="succeeded" if passed else "failed",
        measured_rpo_seconds=result.rpo_seconds,
        measured_rto_seconds=result.rto_seconds,
        phases=dict(result.phases),
        verdict=result.verdict,
        details=details,
        run_id=run_id,
    )


def result_key(result: DrillResult) -> str:
    stamp = result.started_at.strftime("%Y%m%dT%H%M%SZ")
    return f"drills/{result.workload}/{stamp}-{result.drill_id}.json"


def store_evidence(estate: Estate, result: DrillResult) -> str:
    """Write the result object into the workload's repository; its key.

    On an immutable S3 repository it is locked like every other object drd writes there
    (``lock_store``), after ``ensure_object_lock``, so a bucket that cannot lock says so.
    Known gap: the lock runs for the repository's immutability ``days`` (tier-1: 14), not
    the tier's ``evidence.retain`` (tier-1: 1825 days); keeping evidence locked for its
    whole retention is left to retention's lock extension.
    """
    repository = estate.config.workload(result.workload).repository
    ensure_object_lock(estate, repository)
    store = lock_store(estate, repository, open_store(estate.config.repository(repository)))
    try:
        key = result_key(result)
        store.put(key, json.dumps(result.as_dict(), indent=2, default=str).encode())
    finally:
        store.close()
    return key


def run_drill(
    estate: Estate,
    workload_name: str,
    catalog: Catalog,
    *,
    t0: datetime | None = None,
    keep: bool = False,
    sandbox: Sandbox | None = None,
    cluster: DrillCluster | None = None,
) -> DrillResult:
    """Run, record and publish one drill; ``cluster`` overrides the Kubernetes client."""
    workload = estate.config.workload(workload_name)
    sandbox = sandbox or estate.tiers[workload.tier].drills.sandbox
    if sandbox == "kubernetes" and keep:
        raise DrdError("--keep is for local drills: a drill namespace is always deleted")
    run_id = catalog.start_run(
        "drill", workload_name, {"t0": t0.isoformat() if t0 else "now", "sandbox": sandbox}
    )
    if sandbox == "kubernetes":
        result = run_in_kubernetes(estate, workload_name, t0=t0, cluster=cluster)
    else:
        result = run_local_drill(estate, workload_name, t0=t0, keep=keep)
    data = result.as_dict()
    try:
        store_evidence(estate, result)
    except DrdError as exc:
        result.reasons.append(f"could not store the drill result in the repository: {exc}")
        data = result.as_dict()
    passed = result.verdict == "pass"
    catalog.record_drill(drill_record(result, data, run_id=run_id))
    catalog.finish_run(
        run_id,
        "succeeded" if passed else "failed",
        error=None if passed else "; ".join(result.reasons)[:2000],
        details={"drill_id": result.drill_id, "verdict": result.verdict},
    )
    if result.finished_at is not None:
        metrics.record_drill(
            workload_name,
            passed=passed,
            rpo=result.rpo_seconds,
            rto=result.rto_seconds,
            finished_at=result.finished_at,
        )
    return result
