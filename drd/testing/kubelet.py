"""A pretend kubelet: the in-memory cluster, but each Job's container really runs here.

``LocalKubelet`` is ``FakeDrillCluster`` whose Jobs are executed when created: the
container's ``args`` are run with the image's entrypoint (``drd``, i.e. this Python's
``-m drd``), with exactly the environment the pod would get - the Job's ``env`` plus the
Secret's ``stringData`` through ``envFrom`` - and nothing inherited from the test
process except ``PATH``. Pod paths (``/tmp``, the scratch volume) are mapped into a
scratch directory. The Job's stdout and stderr become its log and its exit code its
state. So a Kubernetes drill test exercises everything drd puts in the objects: if a
secret or a config file were missing from the Secret or the bundle, the agent would
fail here as it would in a pod.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drd.drill.k8s_fake import FakeDrillCluster, JobOutcome
from drd.drill.kubernetes import SCRATCH_PATH, SECRET_NAME, TMP_PATH
from drd.fsutil import make_dir


@dataclass
class LocalKubelet(FakeDrillCluster):
    root: Path = field(default_factory=lambda: Path("/nonexistent"))
    timeout: float = 600.0
    #: The environment each Job ran with (for assertions about what reached the pod).
    job_env: dict[str, dict[str, str]] = field(default_factory=dict)

    def create(self, obj: dict[str, Any]) -> None:
        super().create(obj)
        if obj["kind"] == "Job":
            self._run_job(obj)

    def _secret(self, namespace: str) -> dict[str, str]:
        for obj in self.objects("Secret"):
            meta = obj["metadata"]
            if meta["namespace"] == namespace and meta["name"] == SECRET_NAME:
                return dict(obj.get("stringData", {}))
        return {}

    def _run_job(self, job: dict[str, Any]) -> None:
        namespace = job["metadata"]["namespace"]
        (container,) = job["spec"]["template"]["spec"]["containers"]
        pod_root = make_dir(self.root / namespace, mode=0o755)
        mapping = {
            SCRATCH_PATH: str(make_dir(pod_root / "scratch", mode=0o755)),
            TMP_PATH: str(make_dir(pod_root / "tmp", mode=0o755)),
        }
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for item in container.get("env", []):
            env[item["name"]] = mapping.get(item["value"], item["value"])
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                env.update(self._secret(namespace))
        self.job_env[namespace] = env
        argv = [sys.executable, "-m", "drd", *container.get("args", [])]
        if "command" in container:
            argv = [*container["command"], *container.get("args", [])]
        proc = subprocess.run(
            argv,
            env=env,
            capture_output=True,
            text=True,
            timeout=self.timeout,
            check=False,
            cwd=mapping[TMP_PATH],
        )
        logs = proc.stderr + proc.stdout  # the result line comes last, as in a pod log
        if proc.returncode == 0:
            self.script(namespace, JobOutcome.succeeded(logs))
        else:
            self.script(namespace, JobOutcome.failed(logs, reason="BackoffLimitExceeded"))
