"""Secret redaction shared by logging, the command runner and error messages.

Secrets reach drd through references (env var or file, see ``drd.config.secrets``).
When a reference is resolved its value is registered here, and every string that
leaves the process (log events, command output, exception text) is passed through
``redact``. Key names that look secret (password, secret, token ...) are masked too,
whatever their value, so a secret that was never registered is still not logged
under an obvious name.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

MASK = "***"
# Values shorter than this are not registered: masking every "a" would ruin logs, and a
# 3-character secret is not a secret. Config validation rejects such short secrets.
MIN_SECRET_LENGTH = 4

_SECRET_KEY = re.compile(
    r"(pass(word|phrase)?|secret|token|cipher[-_]?pass|credential|private[-_]?key|key[-_]?secret|"
    r"access[-_]?key|api[-_]?key|authorization)",
    re.IGNORECASE,
)
# user:password@ in URLs (postgresql://u:p@h/db, https://u:p@host)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@", re.IGNORECASE)
# key=value pairs in libpq conninfo strings and pgBackRest-style options
_KV_PASSWORD = re.compile(
    r"(?P<key>\b(password|passwd|cipher-pass|s3-key-secret|s3-token)\s*=\s*)(?P<value>'[^']*'|\S+)",
    re.IGNORECASE,
)

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str) -> None:
    """Remember a secret value so that it is masked wherever it would be printed."""
    if len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        _secrets.add(value)


def forget_all_secrets() -> None:
    """Clear the registry (tests only: secrets stay registered for the process lifetime)."""
    with _lock:
        _secrets.clear()


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def redact(text: str) -> str:
    """Mask registered secret values and password-shaped fragments in ``text``."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _URL_PASSWORD.sub(rf"\g<scheme>{MASK}@", text)
    return _KV_PASSWORD.sub(rf"\g<key>{MASK}", text)


def redact_value(key: str, value: Any) -> Any:
    """Redact one structured value; secret-looking keys are masked entirely."""
    if is_secret_key(key) and value not in (None, "", False):
        return MASK
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(key, v) for v in value]
    if isinstance(value, bytes | int | float | bool) or value is None:
        return value
    return redact(str(value))
