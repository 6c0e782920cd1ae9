"""Field types shared by the config models: durations, cron expressions, secret refs."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    SecretStr,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

from drd.config import cron
from drd.errors import ConfigError
from drd.redact import MIN_SECRET_LENGTH, register_secret

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^(?:\d+[smhdw])+$")
_PART = re.compile(r"(\d+)([smhdw])")


class StrictModel(BaseModel):
    """Base for every config model: unknown fields are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_duration(value: Any) -> timedelta:
    """``30s``, ``5m``, ``1h30m``, ``7d``, ``2w`` (or a timedelta / number of seconds)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration is a string like '30s', '5m', '7d'")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if not isinstance(value, str) or not _DURATION.match(value.strip()):
        raise ValueError(
            f"invalid duration {value!r}: use a number and a unit s/m/h/d/w, e.g. '5m'"
        )
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(value.strip()))
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest string ``parse_duration`` reads back to the same value."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    out = ""
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": _DURATION.pattern, "examples": ["30s", "5m", "7d"]}
    ),
]


def _check_cron(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("a cron expression is a string like '0 3 * * sun'")
    try:
        return cron.normalize(value)
    except cron.CronSyntaxError as exc:
        raise ValueError(f"invalid cron expression {value!r}: {exc}") from exc


CronExpr = Annotated[
    str,
    BeforeValidator(_check_cron),
    WithJsonSchema(
        {
            "type": "string",
            "description": "five-field crontab expression (crontab meaning: 0 and 7 are Sunday)",
            "examples": ["0 3 * * sun", "*/15 * * * *"],
        }
    ),
]


class SecretRef(StrictModel):
    """Where a secret lives: an environment variable or a file. Never the value itself.

    The value is read when needed (so rotated Kubernetes secret files are picked up),
    returned as ``SecretStr`` and registered for redaction.
    """

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _exactly_one(self, info: ValidationInfo) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret reference needs exactly one of 'env' or 'file'")
        context = info.context or {}
        if context.get("check_secrets", True):
            problem = self.problem()
            if problem:
                raise ValueError(f"missing secret: {problem}")
        return self

    def describe(self) -> str:
        return f"env:{self.env}" if self.env else f"file:{self.file}"

    def problem(self) -> str | None:
        """Why the secret cannot be read right now, or None."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                return f"environment variable {self.env} is not set"
            if len(value) < MIN_SECRET_LENGTH:
                return f"environment variable {self.env} is shorter than {MIN_SECRET_LENGTH} chars"
            return None
        if self.file is None:  # pragma: no cover - the validator guarantees one source
            return "secret reference has no source"
        try:
            content = self.file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            return f"secret file {self.file} cannot be read ({exc.strerror})"
        if len(content) < MIN_SECRET_LENGTH:
            return (
                f"secret file {self.file} is empty or shorter than {MIN_SECRET_LENGTH} characters"
            )
        return None

    def get(self) -> SecretStr:
        """Read the secret now. Raises ConfigError (naming the reference, not the value)."""
        problem = self.problem()
        if problem:
            raise ConfigError(f"cannot read secret {self.describe()}: {problem}")
        if self.env is not None:
            value = os.environ[self.env]
        else:
            value = Path(str(self.file)).read_text(encoding="utf-8").strip()
        register_secret(value)
        return SecretStr(value)
