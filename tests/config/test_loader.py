"""Loading the estate config: every problem is one line with file, line, field path and why."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from drd.config import load
from drd.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
version: 1
state_dir: state
tiers_dir: tiers
repositories:
  - name: local
    type: filesystem
    path: /srv/drd/repo
    encryption:
      passphrase: {env: DRD_TEST_PASSPHRASE}
  - name: s3-eu
    type: s3
    bucket: acme-backups
    endpoint: https://localhost:9000
    uri_style: path
    credentials:
      access_key_id: {env: DRD_TEST_PASSPHRASE}
      secret_access_key: {env: DRD_TEST_PASSPHRASE}
    encryption:
      passphrase: {env: DRD_TEST_PASSPHRASE}
workloads:
  - name: alpha
    tier: tier-0
    repository: local
    postgres:
      primary: {port: 5432}
      pgdata: /var/lib/postgresql/15/main
  - name: beta
    tier: tier-1
    repository: s3-eu
    postgres:
      primary: {port: 5433}
      pgdata: /var/lib/postgresql/15/beta
  - name: gamma
    tier: tier-2
    repository: local
    postgres:
      primary: {port: 5434}
      pgdata: /var/lib/postgresql/15/gamma
"""


@pytest.fixture
def estate_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(ROOT / "tiers", tmp_path / "tiers")
    monkeypatch.setenv("DRD_TEST_PASSPHRASE", "a-long-enough-passphrase")
    return tmp_path


def _line(text: str, needle: str) -> int:
    """1-based line of the first line containing ``needle``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def _problems(estate_dir: Path, text: str) -> list[str]:
    path = estate_dir / "drd.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    return info.value.problems


def test_good_config_loads_with_paths_relative_to_file(estate_dir: Path) -> None:
    """A valid config loads; relative state_dir and tiers_dir resolve next to the file."""
    path = estate_dir / "drd.yaml"
    path.write_text(GOOD)
    estate = load(path)
    assert estate.config.state_dir == (estate_dir / "state").resolve()
    assert [w.name for w in estate.config.workloads] == ["alpha", "beta", "gamma"]
    assert estate.tier_of("beta").name == "tier-1"
    assert estate.config.catalog_url().startswith("sqlite:///")
    assert estate.config.workload("alpha").stanza() == "alpha"


def test_unknown_tier_names_the_field_and_line(estate_dir: Path) -> None:
    """workloads[2].tier naming a missing tier is reported with its line, not a crash."""
    text = GOOD.replace("tier: tier-2", "tier: tier-9")
    problems = _problems(estate_dir, text)
    assert problems == [
        f"{estate_dir / 'drd.yaml'}:{_line(text, 'tier-9')}: "
        "workloads[2].tier: unknown tier 'tier-9' "
        "(known: tier-0, tier-1, tier-2, tier-3)"
    ]


def test_unknown_field_suggests_the_right_one(estate_dir: Path) -> None:
    """A misspelt key is an unknown field, with a did-you-mean hint."""
    text = GOOD.replace("    uri_style: path", "    uri_styel: path")
    problems = _problems(estate_dir, text)
    assert len(problems) == 1
    assert (
        f":{_line(text, 'uri_styel')}: repositories[1].uri_styel: "
        "unknown field 'uri_styel'; did you mean 'uri_style'?" in problems[0]
    )


def test_invalid_cron_in_a_tier_names_the_tier_file(estate_dir: Path) -> None:
    """A bad cron expression is reported in the tier file, at the field."""
    tier = estate_dir / "tiers" / "tier-1.yaml"
    tier.write_text(tier.read_text().replace('full: "0 2 * * sun"', 'full: "0 26 * * sun"'))
    problems = _problems(estate_dir, GOOD)
    assert len(problems) == 1
    assert problems[0].startswith(
        f"{tier}:7: postgres.full: invalid cron expression '0 26 * * sun'"
    )
    assert "hour field" in problems[0]


def test_invalid_duration(estate_dir: Path) -> None:
    """A duration without a unit is refused with the expected form."""
    tier = estate_dir / "tiers" / "tier-2.yaml"
    tier.write_text(tier.read_text().replace("rpo: 1h", "rpo: 1 hour"))
    problems = _problems(estate_dir, GOOD)
    assert any(
        p.startswith(f"{tier}:4: objectives.rpo: invalid duration '1 hour'") for p in problems
    ), problems


def test_missing_secret_reference(estate_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset env var behind a secret reference is reported at every field that uses it."""
    monkeypatch.delenv("DRD_TEST_PASSPHRASE")
    problems = _problems(estate_dir, GOOD)
    assert (
        f"{estate_dir / 'drd.yaml'}:9: repositories[0].encryption.passphrase: missing secret: "
        "environment variable DRD_TEST_PASSPHRASE is not set" in problems
    )
    assert len(problems) == 4


def test_secret_reference_without_source(estate_dir: Path) -> None:
    """An empty secret reference is an error, not a silent empty password."""
    problems = _problems(
        estate_dir,
        GOOD.replace("{env: DRD_TEST_PASSPHRASE}\n  - name: s3-eu", "{}\n  - name: s3-eu"),
    )
    assert any(
        "repositories[0].encryption.passphrase: a secret reference needs exactly one" in p
        for p in problems
    )


def test_invalid_yaml_reports_line(estate_dir: Path) -> None:
    """Broken YAML is reported with its line number."""
    text = GOOD.replace("    repository: s3-eu\n", "    repository: s3-eu\n    bad: [1, 2\n")
    problems = _problems(estate_dir, text)
    assert len(problems) == 1
    assert problems[0].startswith(f"{estate_dir / 'drd.yaml'}:")
    assert "invalid YAML" in problems[0]
    line = int(problems[0].split(":")[1])
    assert _line(text, "bad: [1, 2") <= line <= _line(text, "bad: [1, 2") + 1


def test_duplicate_keys_are_refused(estate_dir: Path) -> None:
    """A key given twice is an error (YAML would silently keep the last one)."""
    problems = _problems(
        estate_dir, GOOD.replace("state_dir: state\n", "state_dir: state\nstate_dir: other\n")
    )
    assert problems == [f"{estate_dir / 'drd.yaml'}:3: invalid YAML: duplicate key 'state_dir'"]


def test_many_problems_reported_together(estate_dir: Path) -> None:
    """Several independent problems come back in one pass."""
    text = GOOD.replace("tier: tier-2", "tier: nope").replace("repository: s3-eu", "repository: s4")
    text = text.replace("primary: {port: 5432}", "primary: {port: 99999}")
    problems = _problems(estate_dir, text)
    paths = sorted(p.split(": ")[1] for p in problems)
    assert paths == [
        "workloads[0].postgres.primary.port",
        "workloads[1].repository",
        "workloads[2].tier",
    ]


def test_discriminated_union_paths_skip_the_tag(estate_dir: Path) -> None:
    """Errors inside an s3 repository read repositories[1].bucket, not repositories[1].s3.bucket."""
    problems = _problems(estate_dir, GOOD.replace("bucket: acme-backups", "bucket: Bad_Bucket"))
    assert len(problems) == 1
    assert ": repositories[1].bucket: " in problems[0]


def test_unknown_repository_type(estate_dir: Path) -> None:
    """A repository type other than s3/filesystem is named."""
    problems = _problems(estate_dir, GOOD.replace("type: filesystem", "type: ftp"))
    assert any("repositories[0]" in p and "'ftp'" in p for p in problems), problems


def test_password_in_catalog_url_is_refused(estate_dir: Path) -> None:
    """A password inside the catalog URL is an error pointing to catalog_password."""
    problems = _problems(
        estate_dir,
        GOOD.replace("version: 1\n", "version: 1\ncatalog: postgresql://drd:hunter22@db/drd\n"),
    )
    assert len(problems) == 1
    assert "catalog_password" in problems[0]
    assert "hunter22" not in problems[0]


def test_missing_file_and_missing_tiers_dir(estate_dir: Path) -> None:
    """A missing config file or tiers directory is a ConfigError, not a traceback."""
    with pytest.raises(ConfigError, match="config file not found"):
        load(estate_dir / "absent.yaml")
    problems = _problems(estate_dir, GOOD.replace("tiers_dir: tiers", "tiers_dir: no-such-dir"))
    assert any("tiers_dir: directory" in p and "not found" in p for p in problems)


def test_shipped_examples_validate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """examples/local and examples/s3 are valid when their secrets are provided."""
    monkeypatch.setenv("DRD_LOCAL_PASSPHRASE", "example-passphrase")
    assert load(ROOT / "examples" / "local" / "drd.yaml").config.workloads[0].odoo is not None
    estate = load(ROOT / "examples" / "s3" / "drd.yaml", check_secrets=False)
    assert estate.config.catalog_url().startswith("postgresql://")
