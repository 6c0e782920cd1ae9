"""Durations and secret references."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from drd.config.types import SecretRef, format_duration, parse_duration
from drd.errors import ConfigError
from drd.redact import redact


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("7d", 604800), ("2w", 1209600), ("0s", 0)],
)
def test_durations_parse(text: str, seconds: int) -> None:
    """The documented duration spellings parse to the right number of seconds."""
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["5", "5 m", "five minutes", "-5m", "5y", "", "1.5h"])
def test_bad_durations_are_refused(text: str) -> None:
    """Anything but number+unit groups is an error that shows the expected form."""
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10**9))
def test_duration_format_round_trips(seconds: int) -> None:
    """format_duration produces text that parse_duration reads back exactly."""
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


def test_secret_from_env_is_read_and_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """An env reference resolves to a SecretStr and its value is masked from then on."""
    monkeypatch.setenv("DRD_TEST_SECRET", "s3cr3t-value-123")
    ref = SecretRef(env="DRD_TEST_SECRET")
    secret = ref.get()
    assert secret.get_secret_value() == "s3cr3t-value-123"
    assert "s3cr3t" not in repr(secret)
    assert redact("token is s3cr3t-value-123!") == "token is ***!"


def test_secret_from_file(tmp_path: Path) -> None:
    """A file reference is read (stripped of the trailing newline)."""
    path = tmp_path / "pass"
    path.write_text("file-secret-xyz\n")
    assert SecretRef(file=path).get().get_secret_value() == "file-secret-xyz"


def test_secret_ref_needs_exactly_one_source() -> None:
    """Both or neither of env/file is a validation error."""
    with pytest.raises(ValidationError, match="exactly one"):
        SecretRef.model_validate({"env": "A", "file": "/x"}, context={"check_secrets": False})
    with pytest.raises(ValidationError, match="exactly one"):
        SecretRef.model_validate({}, context={"check_secrets": False})


def test_missing_secret_names_reference_not_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading an unset env var raises ConfigError naming the variable."""
    monkeypatch.delenv("DRD_NOT_SET", raising=False)
    ref = SecretRef.model_validate({"env": "DRD_NOT_SET"}, context={"check_secrets": False})
    with pytest.raises(ConfigError, match="DRD_NOT_SET is not set"):
        ref.get()
