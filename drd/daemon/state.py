"""What the daemon tells the outside world about itself: its role and its readiness.

Kept apart from ``drd.daemon.http`` so the scheduler and leader election can build a
``Readiness`` without importing the HTTP server, and the status page can show the role
without importing either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

#: "unknown" until leader election has answered once: a daemon that does not know
#: whether it should run jobs is not ready.
Role = Literal["leader", "follower", "unknown"]


@dataclass(frozen=True)
class Readiness:
    """A snapshot of the three conditions ``/readyz`` requires.

    ``detail`` is free text for humans (e.g. the catalog error); it is redacted
    before it is served, but callers should still keep secrets out of it.
    """

    config_loaded: bool
    catalog_ok: bool
    role: Role
    detail: str = ""

    def problems(self) -> list[str]:
        """Each condition that is not met, in words; empty when ready."""
        out = []
        if not self.config_loaded:
            out.append("configuration not loaded")
        if not self.catalog_ok:
            out.append("catalog unreachable")
        if self.role not in ("leader", "follower"):
            out.append("role unknown: leader election has not answered yet")
        return out

    @property
    def ready(self) -> bool:
        return not self.problems()

    def as_dict(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "config_loaded": self.config_loaded,
            "catalog_ok": self.catalog_ok,
            "role": self.role,
            "failed": self.problems(),
            "detail": self.detail,
        }
