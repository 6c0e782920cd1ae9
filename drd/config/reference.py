"""Generate the configuration reference (docs/config-reference.md) from the models.

The reference is generated so it cannot drift from the code; a test regenerates it and
compares with the committed file (``make docs`` rewrites it).
"""

from __future__ import annotations

import types
import typing
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from drd.config.models import DrdConfig
from drd.config.tier import Tier
from drd.config.types import format_duration


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        base = args[0]
        return "duration" if base is timedelta else _type_name(base)
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in args).replace("'", "`")
    if origin in (typing.Union, types.UnionType):
        parts = [_type_name(a) for a in args if a is not type(None)]
        suffix = " (optional)" if type(None) in args else ""
        return " \\| ".join(parts) + suffix
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if annotation is timedelta:
        return "duration"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    if isinstance(annotation, type):
        return {
            "str": "string",
            "int": "integer",
            "bool": "boolean",
            "float": "number",
            "Path": "path",
        }.get(annotation.__name__, annotation.__name__)
    return str(annotation)


def _default(info: Any) -> str:
    if info.is_required():
        return "**required**"
    if info.default_factory is not None:
        return "(defaults of its section)"
    value = info.default
    if value is PydanticUndefined or value is None:
        return "-"
    if isinstance(value, timedelta):
        return f"`{format_duration(value)}`"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, Path):
        value = str(value)
    return f"`{value}`"


def _models(root: type[BaseModel], seen: list[type[BaseModel]]) -> None:
    if root in seen:
        return
    seen.append(root)
    for info in root.model_fields.values():
        for model in _nested(info.annotation):
            _models(model, seen)


def _nested(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _nested(arg)]


def render() -> str:
    out = [
        "# Configuration reference",
        "",
        "Generated from the pydantic models by `make docs` (`python -m drd.config.reference`);",
        "do not edit by hand. Durations are written like `30s`, `5m`, `1h30m`, `7d`, `2w`.",
        "Cron expressions have crontab's meaning (day-of-week 0 and 7 are Sunday).",
        "Secrets are references: `{env: NAME}` or `{file: /path}`, never values.",
        "",
    ]
    for title, root in (
        ("Estate config file (drd.yaml)", DrdConfig),
        ("Tier file (tiers/*.yaml)", Tier),
    ):
        out += [f"## {title}", ""]
        models: list[type[BaseModel]] = []
        _models(root, models)
        for model in models:
            doc = (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else ""
            out += [f"### {model.__name__}", ""]
            if doc and not doc.startswith("!!!") and "Usage docs" not in doc:
                out += [doc, ""]
            out += ["| field | type | default | description |", "|---|---|---|---|"]
            for name, info in model.model_fields.items():
                desc = (info.description or "").replace("|", "\\|")
                out.append(
                    f"| `{name}` | {_type_name(info.annotation)} | {_default(info)} | {desc} |"
                )
            out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    import sys

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/config-reference.md")
    target.write_text(render())
    print(f"wrote {target}")
