"""What a Kubernetes drill pod needs to run the drill agent, and how the pod unpacks it.

drd builds a *bundle* from the estate: a config with just the drilled workload and its
repository, that workload's tier, and the repository's CA bundle (if any). The pod gets
it as one environment variable (``DRD_DRILL_BUNDLE``, JSON) and ``drd drill agent``
writes it out as an ordinary config directory, so the agent runs exactly the code path
of a local drill: same loader, same validation, same restore.

Secrets never enter the bundle. Every secret reference is rewritten to an environment
variable (``DRD_SECRET_*``) whose value travels in the drill namespace's Secret, which
the pod reads through ``envFrom``. The primary's password is dropped: the agent restores
from the repository and never connects to the primary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drd.config import Estate, SecretRef
from drd.errors import ConfigError
from drd.fsutil import atomic_write, make_dir

BUNDLE_ENV = "DRD_DRILL_BUNDLE"
SCRATCH_ENV = "DRD_DRILL_SCRATCH"
CA_FILE = "ca.pem"
_SECRET_VARS = {
    "passphrase": "DRD_SECRET_REPO_PASSPHRASE",
    "access_key_id": "DRD_SECRET_S3_ACCESS_KEY_ID",
    "secret_access_key": "DRD_SECRET_S3_SECRET_ACCESS_KEY",
    "session_token": "DRD_SECRET_S3_SESSION_TOKEN",
}


@dataclass(frozen=True)
class PodBundle:
    """``bundle``: JSON without secrets (a plain env var); ``secret_env``: the Secret."""

    bundle: str
    secret_env: dict[str, str] = field(repr=False)


def build(estate: Estate, workload_name: str) -> PodBundle:
    """The bundle for one workload; ConfigError when it cannot be drilled in a cluster."""
    config = estate.config
    workload = config.workload(workload_name)
    repository = config.repository(workload.repository)
    if config.kubernetes is None:
        raise ConfigError(
            f"{estate.path}: kubernetes: missing: workload {workload_name} is drilled in a "
            "kubernetes sandbox, which needs a 'kubernetes' section with at least 'image'",
            hint="add kubernetes.image, or run the drill with --sandbox local",
        )
    if repository.type != "s3":
        raise ConfigError(
            f"{estate.path}: repositories.{repository.name}: a kubernetes drill needs an S3 "
            f"repository (the pod cannot read the filesystem repository {repository.path})",
            hint="run the drill with --sandbox local",
        )
    secret_env: dict[str, str] = {}

    def swap(ref: SecretRef, key: str) -> dict[str, str]:
        secret_env[_SECRET_VARS[key]] = ref.get().get_secret_value()
        return {"env": _SECRET_VARS[key]}

    repo_doc = repository.model_dump(mode="json", exclude_none=True)
    repo_doc["encryption"]["passphrase"] = swap(repository.encryption.passphrase, "passphrase")
    if repository.credentials is not None:
        for key, ref in repository.credentials:
            if isinstance(ref, SecretRef):
                repo_doc["credentials"][key] = swap(ref, key)
    files: dict[str, str] = {}
    if repository.ca_file is not None:
        try:
            files[CA_FILE] = repository.ca_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"repositories.{repository.name}.ca_file: cannot read {repository.ca_file}: "
                f"{exc.strerror}"
            ) from exc
        repo_doc["ca_file"] = CA_FILE  # made absolute again by materialize()
    workload_doc = workload.model_dump(mode="json", exclude_none=True)
    workload_doc["postgres"]["primary"].pop("password", None)
    workload_doc["postgres"]["os_user"] = config.kubernetes.os_user
    workload_doc["postgres"]["bin_dir"] = str(config.kubernetes.pg_bin_dir)
    tier = estate.tiers[workload.tier]
    document = {
        "config": {
            "version": 1,
            "log": config.log.model_dump(mode="json"),
            "repositories": [repo_doc],
            "workloads": [workload_doc],
        },
        "tiers": {tier.name: tier.model_dump(mode="json", exclude_none=True, exclude={"name"})},
        "files": files,
    }
    return PodBundle(json.dumps(document, sort_keys=True), secret_env)


def materialize(bundle: str, directory: Path, state_dir: Path) -> Path:
    """Write the bundle as a config directory under ``directory``; return the config path.

    Everything written is readable by the PostgreSQL OS user (pgBackRest reads the CA
    file); nothing in it is secret.
    """
    try:
        document = json.loads(bundle)
        config: dict[str, Any] = document["config"]
        tiers: dict[str, Any] = document["tiers"]
        files: dict[str, str] = document.get("files", {})
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{BUNDLE_ENV} is not a drill bundle drd wrote: {exc}") from exc
    root = make_dir(directory, mode=0o755)
    tiers_dir = make_dir(root / "tiers", mode=0o755)
    for name, content in files.items():
        if "/" in name or name.startswith("."):
            raise ConfigError(f"{BUNDLE_ENV}: refusing file name {name!r}")
        atomic_write(root / name, content, mode=0o644)
    for repo in config.get("repositories", []):
        if repo.get("ca_file") == CA_FILE:
            repo["ca_file"] = str(root / CA_FILE)
    for name, tier in tiers.items():
        atomic_write(tiers_dir / f"{name}.yaml", yaml.safe_dump(tier), mode=0o644)
    config.update(state_dir=str(state_dir), tiers_dir=str(tiers_dir))
    path = root / "drd.yaml"
    atomic_write(path, yaml.safe_dump(config, sort_keys=False), mode=0o644)
    return path
