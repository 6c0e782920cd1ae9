"""Load and validate the estate config and its tier files; one entry point: ``load``.

Every problem is reported as one line ``FILE:LINE: FIELD.PATH: why`` and all problems
of all files are reported together, so an operator fixes a config in one pass. Line
numbers come from the YAML node tree, so they point at the offending key even for
errors found after parsing (unknown tier, bad cron).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from drd.config.models import DrdConfig
from drd.config.tier import Tier
from drd.errors import ConfigError


@dataclass(frozen=True)
class Problem:
    file: Path
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else f"{self.file}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


@dataclass(frozen=True)
class Estate:
    """A validated configuration with its tiers, as the rest of drd consumes it."""

    path: Path
    config: DrdConfig
    tiers: Mapping[str, Tier] = field(default_factory=dict)

    def tier_of(self, workload_name: str) -> Tier:
        return self.tiers[self.config.workload(workload_name).tier]


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: YAML would silently keep the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path, problems: list[Problem]) -> tuple[Any, yaml.Node | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.append(Problem(path, None, "", f"cannot read file: {exc.strerror}"))
        return None, None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        reason = exc.problem or str(exc)
        if exc.context and exc.context_mark and exc.context_mark is not mark:
            reason += f" ({exc.context} started at line {exc.context_mark.line + 1})"
        problems.append(Problem(path, line, "", f"invalid YAML: {reason}"))
        return None, None
    except yaml.YAMLError as exc:
        problems.append(Problem(path, None, "", f"invalid YAML: {exc}"))
        return None, None
    return data, node


def _line_of(node: yaml.Node | None, loc: Iterable[Any]) -> int | None:
    """Line (1-based) of the deepest YAML node that ``loc`` reaches."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == part:
                    line = key_node.start_mark.line + 1
                    node = value_node
                    break
            else:
                return line
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _clean_loc(loc: tuple[Any, ...], data: Any) -> list[Any]:
    """Drop pydantic's union-tag entries (``repositories.0.s3.bucket``) by following the data."""
    out: list[Any] = []
    current = data
    for part in loc:
        if isinstance(current, Mapping) and isinstance(part, str) and part not in current:
            if current.get("type") == part:
                continue
            out.append(part)
            current = None
            continue
        out.append(part)
        if isinstance(current, Mapping):
            current = current.get(part)
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            current = current[part]
        else:
            current = None
    return out


def format_path(loc: Iterable[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _message(error: Mapping[str, Any], model: type[BaseModel], loc: list[Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        name = str(loc[-1]) if loc else "?"
        allowed = _allowed_fields(model, loc[:-1])
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown field {name!r}{hint}"
    if kind == "missing":
        return "required field is missing"
    msg = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg


def _allowed_fields(model: type[BaseModel], loc: list[Any]) -> list[str]:
    """Field names of the model(s) reached by ``loc`` (for did-you-mean suggestions).

    Through a union (s3 | filesystem repository) the names of every member count.
    """
    current: list[type[BaseModel]] = [model]
    for part in loc:
        if isinstance(part, int):
            continue
        nxt: list[type[BaseModel]] = []
        for candidate in current:
            info = candidate.model_fields.get(part)
            if info is not None:
                nxt.extend(_models_in(info.annotation))
        current = nxt
    return sorted({name for candidate in current for name in candidate.model_fields})


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()):
        found.extend(_models_in(arg))
    return found


def _validate(
    model: type[BaseModel],
    data: Any,
    *,
    node: yaml.Node | None,
    path: Path,
    context: dict[str, Any],
    problems: list[Problem],
) -> Any:
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            loc = _clean_loc(tuple(error["loc"]), data)
            problems.append(
                Problem(path, _line_of(node, loc), format_path(loc), _message(error, model, loc))
            )
        return None


def load_tiers(
    tiers_dir: Path, problems: list[Problem], context: dict[str, Any]
) -> dict[str, Tier]:
    """Load every ``*.yaml`` tier file; a tier's name is its file name (``tier-0.yaml``)."""
    tiers: dict[str, Tier] = {}
    for tier_path in sorted(tiers_dir.glob("*.yaml")):
        data, node = _read_yaml(tier_path, problems)
        if data is None and node is None:
            continue
        if not isinstance(data, dict):
            problems.append(Problem(tier_path, 1, "", "a tier file must be a mapping"))
            continue
        data.setdefault("name", tier_path.stem)
        if data["name"] != tier_path.stem:
            problems.append(
                Problem(
                    tier_path,
                    _line_of(node, ["name"]),
                    "name",
                    f"tier name {data['name']!r} must match the file name {tier_path.stem!r}",
                )
            )
            continue
        tier = _validate(Tier, data, node=node, path=tier_path, context=context, problems=problems)
        if tier is not None:
            tiers[tier.name] = tier
    return tiers


def load(config_path: Path | str, *, check_secrets: bool = True) -> Estate:
    """Load, validate and cross-check the config and its tiers, or raise ``ConfigError``.

    ``check_secrets`` verifies that every secret reference can be read (the env var is
    set, the file exists); it is on for ``drd config validate`` and the daemon.
    """
    path = Path(config_path)
    problems: list[Problem] = []
    if not path.exists():
        raise ConfigError(
            f"{path}: config file not found",
            hint="pass --config FILE or set DRD_CONFIG",
        )
    data, node = _read_yaml(path, problems)
    if problems:
        raise ConfigError(f"{path}: invalid configuration", [str(p) for p in problems])
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: invalid configuration", [f"{path}:1: the config must be a mapping"]
        )

    base = path.parent
    context: dict[str, Any] = {"check_secrets": check_secrets}
    tiers_dir_raw = data.get("tiers_dir", "tiers")
    tiers_dir = (base / str(tiers_dir_raw)).resolve()
    tiers: dict[str, Tier] = {}
    if not tiers_dir.is_dir():
        problems.append(
            Problem(
                path, _line_of(node, ["tiers_dir"]), "tiers_dir", f"directory {tiers_dir} not found"
            )
        )
    else:
        tiers = load_tiers(tiers_dir, problems, context)
        context["tiers"] = {p.stem for p in tiers_dir.glob("*.yaml")}
    raw_repos = data.get("repositories") or []
    if isinstance(raw_repos, list):
        context["repositories"] = {r.get("name") for r in raw_repos if isinstance(r, dict)}

    config = _validate(DrdConfig, data, node=node, path=path, context=context, problems=problems)
    if problems or config is None:
        raise ConfigError(f"{path}: invalid configuration", [str(p) for p in problems])
    config = _resolve_paths(config, base)
    return Estate(path=path.resolve(), config=config, tiers=tiers)


def _resolve_paths(config: DrdConfig, base: Path) -> DrdConfig:
    """Relative ``state_dir``/``tiers_dir`` are relative to the config file, not the cwd."""
    updates: dict[str, Any] = {}
    for name in ("state_dir", "tiers_dir"):
        value: Path = getattr(config, name)
        if not value.is_absolute():
            updates[name] = (base / value).resolve()
    return config.model_copy(update=updates) if updates else config


def json_schema() -> dict[str, Any]:
    """JSON Schema of the config file and of a tier file (for editors and CI)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "drd configuration",
        **DrdConfig.model_json_schema(mode="validation"),
        "$comment": "tier files: see #/$defs/Tier",
        "$defs": {
            **DrdConfig.model_json_schema(mode="validation").get("$defs", {}),
            "Tier": Tier.model_json_schema(mode="validation"),
        },
    }
