"""In-memory ``DrillCluster`` for tests: scripted Job outcomes, recorded calls.

Script a namespace's Job with ``script(namespace, outcome)`` before the drill runs:

    fake = FakeDrillCluster()
    fake.script("drd-drill-ab12", JobOutcome.succeeded('{"verdict": "pass"}'))
    run_drill(fake, spec)
    assert fake.deleted == ["drd-drill-ab12"]

A namespace without a script uses ``default`` (a Job that never finishes). Like the
API server, ``create`` fails if the namespace of a namespaced object does not exist or
the object already exists; ``fail_on_create`` makes it fail for one kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from drd.drill.kubernetes import DrillClusterError, DrillNamespace, JobStatus


@dataclass(frozen=True)
class JobOutcome:
    """How a scripted Job ends: after ``polls`` status reads it reports ``state``."""

    state: Literal["running", "succeeded", "failed"]
    logs: str = ""
    reason: str = ""
    polls: int = 1

    @classmethod
    def succeeded(cls, logs: str, *, polls: int = 1) -> JobOutcome:
        return cls("succeeded", logs, polls=polls)

    @classmethod
    def failed(cls, logs: str = "", *, reason: str = "BackoffLimitExceeded") -> JobOutcome:
        return cls("failed", logs, reason=reason)

    @classmethod
    def never_finishes(cls, logs: str = "") -> JobOutcome:
        return cls("running", logs)


@dataclass
class FakeDrillCluster:
    default: JobOutcome = field(default_factory=JobOutcome.never_finishes)
    fail_on_create: str | None = None  # a kind ("Job" ...) whose create raises
    created: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    status_reads: int = 0
    namespaces: dict[str, DrillNamespace] = field(default_factory=dict)
    _outcomes: dict[str, JobOutcome] = field(default_factory=dict)
    _polls: dict[str, int] = field(default_factory=dict)

    def script(self, namespace: str, outcome: JobOutcome) -> None:
        self._outcomes[namespace] = outcome

    def add_namespace(
        self,
        name: str,
        *,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        created: datetime | None = None,
    ) -> None:
        """Pretend a namespace already exists (for ``sweep``)."""
        self.namespaces[name] = DrillNamespace(
            name, labels or {}, annotations or {}, created or datetime.now(UTC)
        )

    def objects(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.created if obj["kind"] == kind]

    # DrillCluster -----------------------------------------------------------------

    def create(self, obj: dict[str, Any]) -> None:
        kind = obj["kind"]
        meta = obj["metadata"]
        if kind == self.fail_on_create:
            raise DrillClusterError(f"Kubernetes API: create {kind} {meta['name']} failed: 500")
        if kind == "Namespace":
            if meta["name"] in self.namespaces:
                raise DrillClusterError(f"namespace {meta['name']} already exists: 409")
            self.namespaces[meta["name"]] = DrillNamespace(
                meta["name"],
                dict(meta.get("labels", {})),
                dict(meta.get("annotations", {})),
                datetime.now(UTC),
            )
        elif meta.get("namespace") not in self.namespaces:
            raise DrillClusterError(f"namespace {meta.get('namespace')} not found: 404")
        self.created.append(obj)

    def _job_exists(self, namespace: str, name: str) -> bool:
        return any(
            o["kind"] == "Job"
            and o["metadata"]["namespace"] == namespace
            and o["metadata"]["name"] == name
            for o in self.created
        ) and (namespace in self.namespaces)

    def job_status(self, namespace: str, name: str) -> JobStatus:
        self.status_reads += 1
        if not self._job_exists(namespace, name):
            raise DrillClusterError(f"job {namespace}/{name} not found: 404")
        outcome = self._outcomes.get(namespace, self.default)
        polls = self._polls[namespace] = self._polls.get(namespace, 0) + 1
        if polls < outcome.polls:
            return JobStatus("running")
        return JobStatus(outcome.state, outcome.reason)

    def pod_logs(self, namespace: str, job_name: str) -> str:
        if not self._job_exists(namespace, job_name):
            raise DrillClusterError(f"job {namespace}/{job_name} not found: 404")
        return self._outcomes.get(namespace, self.default).logs

    def delete_namespace(self, name: str) -> None:
        self.deleted.append(name)
        self.namespaces.pop(name, None)

    def list_drill_namespaces(self) -> list[DrillNamespace]:
        return list(self.namespaces.values())
