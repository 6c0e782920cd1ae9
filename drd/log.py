"""Logging setup: structlog, JSON when not a TTY, readable on a TTY, secrets redacted.

Event names are fixed snake_case strings (``backup_started``); context such as
``run_id`` and ``workload`` is bound with ``bind_context`` (contextvars), so it follows
the work across function calls without being passed around. The redaction processor
runs last before rendering, so nothing reaches a handler unredacted; stdlib logging
(boto3, apscheduler) is routed through the same processors.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from drd.redact import redact, redact_value

LEVELS = ("debug", "info", "warning", "error")


def _redact_event(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        value = event_dict[key]
        event_dict[key] = (
            redact(value)
            if key == "event" and isinstance(value, str)
            else (redact_value(key, value))
        )
    return event_dict


def _render_exception_redacted(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    exc = event_dict.get("exception")
    if isinstance(exc, str):
        event_dict["exception"] = redact(exc)
    return event_dict


def configure(
    level: str = "info", *, json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Configure structlog and stdlib logging once per process (idempotent)."""
    stream = stream or sys.stderr
    if json is None:
        json = not stream.isatty()
    numeric = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    tail: list[Any] = [
        structlog.processors.format_exc_info if json else structlog.processors.StackInfoRenderer(),
        _render_exception_redacted,
        _redact_event,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty(), exception_formatter=_plain_tb)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # Third-party libraries are noisy at debug; keep them at warning unless asked.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))


def _plain_tb(sio: TextIO, exc_info: Any) -> None:
    sio.write("\n" + redact("".join(traceback.format_exception(*exc_info))))


def get_logger(name: str = "drd") -> Any:
    return structlog.get_logger(name)


def bind_context(**values: Any) -> None:
    """Bind ``run_id``, ``workload`` ... for everything logged in this context."""
    structlog.contextvars.bind_contextvars(**values)


def clear_context() -> None:
    structlog.contextvars.clear_contextvars()
