"""The shipped tier files and the tier consistency rules."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from drd.config.loader import Problem, load_tiers
from drd.config.tier import Tier

TIERS = Path(__file__).resolve().parents[2] / "tiers"


def _tiers() -> dict[str, Tier]:
    problems: list[Problem] = []
    tiers = load_tiers(TIERS, problems, {})
    assert problems == []
    return tiers


def test_all_four_tiers_validate() -> None:
    """tier-0 .. tier-3 are shipped and valid."""
    assert sorted(_tiers()) == ["tier-0", "tier-1", "tier-2", "tier-3"]


def test_tier0_objectives_and_odoo_sh_retention_bar() -> None:
    """tier-0 is RPO 5m / RTO 30m and keeps at least Odoo.sh's 7 daily, 4 weekly, 3 monthly."""
    tier = _tiers()["tier-0"]
    assert tier.objectives.rpo == timedelta(minutes=5)
    assert tier.objectives.rto == timedelta(minutes=30)
    assert (tier.retention.keep_daily or 0) >= 7
    assert (tier.retention.keep_weekly or 0) >= 4
    assert (tier.retention.keep_monthly or 0) >= 3
    assert tier.immutability is not None


def test_tiers_are_ordered_by_strictness() -> None:
    """Lower tier numbers promise tighter objectives."""
    tiers = _tiers()
    rpos = [tiers[f"tier-{i}"].objectives.rpo for i in range(4)]
    rtos = [tiers[f"tier-{i}"].objectives.rto for i in range(4)]
    assert rpos == sorted(rpos)
    assert rtos == sorted(rtos)


def test_every_tier_switches_wal_within_half_its_rpo() -> None:
    """The effective archive_timeout never exceeds half the RPO."""
    for tier in _tiers().values():
        assert tier.effective_archive_timeout() <= tier.objectives.rpo / 2


def _tier0() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((TIERS / "tier-0.yaml").read_text())
    data["name"] = "tier-0"
    return data


def test_archive_timeout_above_half_rpo_is_refused() -> None:
    """An archive_timeout that cannot meet the RPO is a validation error."""
    data = _tier0()
    data["postgres"]["archive_timeout"] = "4m"
    with pytest.raises(ValidationError, match="half the RPO"):
        Tier.model_validate(data)


def test_empty_retention_is_refused() -> None:
    """A retention policy without any keep rule is rejected."""
    data = _tier0()
    data["retention"] = {"timezone": "UTC"}
    with pytest.raises(ValidationError, match="empty retention policy"):
        Tier.model_validate(data)


def test_lifecycle_must_increase_and_use_days() -> None:
    """Transitions out of order, or not in whole days, are refused."""
    data = _tier0()
    data["lifecycle"]["transitions"] = [
        {"after": "90d", "storage_class": "GLACIER_IR"},
        {"after": "30d", "storage_class": "STANDARD_IA"},
    ]
    with pytest.raises(ValidationError, match="increasing"):
        Tier.model_validate(data)
    data["lifecycle"]["transitions"] = [{"after": "36h", "storage_class": "STANDARD_IA"}]
    with pytest.raises(ValidationError, match="whole days"):
        Tier.model_validate(data)


def test_unknown_storage_class_and_zone_are_refused() -> None:
    """Storage classes and time zones are checked against known values."""
    data = _tier0()
    data["lifecycle"]["transitions"] = [{"after": "30d", "storage_class": "COLD"}]
    with pytest.raises(ValidationError, match="storage_class"):
        Tier.model_validate(data)
    data = _tier0()
    data["retention"]["timezone"] = "Mars/Olympus"
    with pytest.raises(ValidationError, match="unknown time zone"):
        Tier.model_validate(data)


def test_tier_name_must_match_file(tmp_path: Path) -> None:
    """A tier file whose name differs from its file name is reported at 'name'."""
    data = _tier0()
    data["name"] = "gold"
    (tmp_path / "tier-0.yaml").write_text(yaml.safe_dump(data))
    problems: list[Problem] = []
    assert load_tiers(tmp_path, problems, {}) == {}
    assert len(problems) == 1
    assert problems[0].path == "name"
    assert "must match the file name" in problems[0].message


def test_config_reference_is_up_to_date() -> None:
    """docs/config-reference.md is what the models generate (run `make docs` after changes)."""
    from drd.config.reference import render

    committed = (TIERS.parent / "docs" / "config-reference.md").read_text()
    assert committed == render(), "run `make docs` to regenerate docs/config-reference.md"
