"""Run a drill and record it: catalog row, result object in the workload's repository
(evidence must survive the loss of drd's host), metrics."""

from __future__ import annotations

import json
from datetime import datetime

from drd import metrics
from drd.catalog import Catalog, DrillRecord
from drd.config import Estate
from drd.drill.agent import DrillResult, run_local_drill
from drd.errors import DrdError
from drd.log import get_logger
from drd.storage.factory import open_store

log = get_logger("drd.drill")


def result_key(result: DrillResult) -> str:
    stamp = result.started_at.strftime("%Y%m%dT%H%M%SZ")
    return f"drills/{result.workload}/{stamp}-{result.drill_id}.json"


def run_drill(
    estate: Estate,
    workload_name: str,
    catalog: Catalog,
    *,
    t0: datetime | None = None,
    keep: bool = False,
) -> DrillResult:
    workload = estate.config.workload(workload_name)
    run_id = catalog.start_run("drill", workload_name, {"t0": t0.isoformat() if t0 else "now"})
    result = run_local_drill(estate, workload_name, t0=t0, keep=keep)
    data = result.as_dict()
    try:
        store = open_store(estate.config.repository(workload.repository))
        store.put(result_key(result), json.dumps(data, indent=2, default=str).encode())
    except DrdError as exc:
        result.reasons.append(f"could not store the drill result in the repository: {exc}")
        data = result.as_dict()
    passed = result.verdict == "pass"
    catalog.record_drill(
        DrillRecord(
            workload=workload_name,
            t0=result.t0,
            started_at=result.started_at,
            finished_at=result.finished_at,
            status="succeeded" if passed else "failed",
            measured_rpo_seconds=result.rpo_seconds,
            measured_rto_seconds=result.rto_seconds,
            phases=dict(result.phases),
            verdict=result.verdict,
            details=data,
            run_id=run_id,
        )
    )
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
