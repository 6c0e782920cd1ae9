"""Configuration: pydantic models, tier files, and the single validation entry point."""

from drd.config.loader import Estate, Problem, json_schema, load
from drd.config.models import DrdConfig, FilesystemRepository, S3Repository, Workload
from drd.config.tier import Tier
from drd.config.types import SecretRef

__all__ = [
    "DrdConfig",
    "Estate",
    "FilesystemRepository",
    "Problem",
    "S3Repository",
    "SecretRef",
    "Tier",
    "Workload",
    "json_schema",
    "load",
]
