"""pgBackRest configuration files.

pgBackRest refuses secrets (``repo1-cipher-pass``, ``repo1-s3-key-secret`` ...) on
its command line, so they go in the config file: written atomically, mode 600, owned
by the OS user that runs pgBackRest (the PostgreSQL user). Every pgBackRest call passes
``--config=FILE`` explicitly because Debian ships a global /etc/pgbackrest.conf.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from drd.fsutil import atomic_write

OptionValue = str | int | bool | Path
Sections = Mapping[str, Mapping[str, OptionValue]]


def _format(value: OptionValue) -> str:
    if isinstance(value, bool):
        return "y" if value else "n"
    text = str(value)
    if "\n" in text:
        raise ValueError("pgBackRest option values cannot contain newlines")
    return text


def render(sections: Sections) -> str:
    """Render an ini file; ``global`` first, then stanzas in the given order."""
    order = sorted(sections, key=lambda name: (name != "global", list(sections).index(name)))
    lines: list[str] = ["# Written by drd; changes are overwritten."]
    for section in order:
        lines.append(f"\n[{section}]")
        lines.extend(f"{key}={_format(value)}" for key, value in sections[section].items())
    return "\n".join(lines) + "\n"


def write(path: Path, sections: Sections, *, owner: str | None) -> None:
    """Write the config atomically, mode 600, owned by ``owner`` (when running as root)."""
    atomic_write(path, render(sections), mode=0o600, owner=owner)
