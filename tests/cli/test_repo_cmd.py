"""`drd repo init` and `drd repo key list/add/remove` through the CLI entry point."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from drd.catalog import open_configured
from drd.cli import app as cli_app
from drd.cli import repo_cmd
from drd.config import Estate, load
from drd.errors import EncryptionError
from drd.snapshot.keys import PassphraseWrapper, list_keys, open_repository
from drd.storage import MemoryStore, ObjectStore

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE = "repo-cli-test-passphrase"
NEW_PASSPHRASE = "repo-cli-new-passphrase"


class FastWrapper(PassphraseWrapper):
    """Cheap scrypt so CLI tests stay fast (test_keys covers the production cost)."""

    def __init__(self, passphrase: str, **_: Any) -> None:
        super().__init__(passphrase, n=2**10)


@pytest.fixture
def config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The local example config with paths in tmp_path; `drd repo` on a test root app."""
    monkeypatch.setenv("DRD_LOCAL_PASSPHRASE", PASSPHRASE)
    data = yaml.safe_load((ROOT / "examples" / "local" / "drd.yaml").read_text())
    data["state_dir"] = str(tmp_path / "state")
    data["tiers_dir"] = str(ROOT / "tiers")
    data["repositories"][0]["path"] = str(tmp_path / "repository")
    path = tmp_path / "drd.yaml"
    path.write_text(yaml.safe_dump(data))
    root = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
    root.callback()(cli_app._global_options)
    root.add_typer(repo_cmd.app, name="repo")
    monkeypatch.setattr(cli_app, "app", root)  # main() builds its command from this
    return path


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch, config_path: Path) -> MemoryStore:
    """One in-memory store behind every command; cheap scrypt."""
    memory = MemoryStore("memory://local")

    def store_for(estate: Estate, repository_name: str) -> ObjectStore:
        repo_cmd._repository(estate, repository_name)  # unknown names still fail
        return memory

    monkeypatch.setattr(repo_cmd, "_store_for", store_for)
    monkeypatch.setattr(repo_cmd, "PassphraseWrapper", FastWrapper)
    return memory


def drd(config: Path, *args: str) -> int:
    return cli_app.main(["--config", str(config), *args])


def drd_json(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    assert drd(config, "--output", "json", *args) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_init_and_refuse_second_init(
    config_path: Path, store: MemoryStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """`repo init` creates config and one key; a second init exits 4 and changes nothing."""
    data = drd_json(config_path, capsys, "repo", "init", "local")
    assert data["repository"] == "local"
    assert data["location"] == "memory://local"
    assert json.loads(store.get("config"))["id"] == data["id"]
    assert [k.id for k in list_keys(store)] == [data["key_id"]]
    assert drd(config_path, "repo", "init", "local") == 4
    err = capsys.readouterr().err
    assert err.startswith("drd: error: memory://local is already a drd repository")
    assert len(list_keys(store)) == 1


def test_key_list_table_and_json(
    config_path: Path, store: MemoryStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """`repo key list` shows the keys and marks the one the configured passphrase opens."""
    init = drd_json(config_path, capsys, "repo", "init", "local", "--label", "first")
    assert drd(config_path, "repo", "key", "list", "local") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["ID", "KIND", "CREATED", "HOSTNAME", "LABEL", "CURRENT"]
    assert init["key_id"] in out
    assert "first" in out
    data = drd_json(config_path, capsys, "repo", "key", "list", "local")
    (key,) = data["keys"]
    assert key["id"] == init["key_id"]
    assert key["kind"] == "scrypt"
    assert key["current"] is True
    assert PASSPHRASE not in json.dumps(data)


def test_key_add_rotate_and_remove(
    config_path: Path,
    store: MemoryStore,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rotation: add a key from an env var, switch the config to it, remove the old key."""
    old = drd_json(config_path, capsys, "repo", "init", "local")["key_id"]
    monkeypatch.setenv("NEW_DRD_PASS", NEW_PASSPHRASE)
    added = drd_json(
        config_path,
        capsys,
        "repo",
        "key",
        "add",
        "local",
        "--passphrase-env",
        "NEW_DRD_PASS",
        "--label",
        "2026 rotation",
    )
    new = added["key_id"]
    _, keys_old, _ = open_repository(store, [FastWrapper(PASSPHRASE)])
    _, keys_new, opened = open_repository(store, [FastWrapper(NEW_PASSPHRASE)])
    assert keys_old == keys_new
    assert opened == new

    monkeypatch.setenv("DRD_LOCAL_PASSPHRASE", NEW_PASSPHRASE)
    listed = drd_json(config_path, capsys, "repo", "key", "list", "local")["keys"]
    assert {k["id"]: k["current"] for k in listed} == {old: False, new: True}
    assert drd(config_path, "repo", "key", "remove", "local", old) == 0
    assert f"removed key {old}" in capsys.readouterr().out
    assert [k.id for k in list_keys(store)] == [new]
    with pytest.raises(EncryptionError):
        open_repository(store, [FastWrapper(PASSPHRASE)])

    with open_configured(load(config_path).config) as catalog:
        entries = catalog.audit_entries()
    assert [e.action for e in entries] == ["repo.init", "repo.key.add", "repo.key.remove"]
    assert entries[2].details["key_id"] == old
    for entry in entries:
        assert PASSPHRASE not in json.dumps(entry.details)
        assert NEW_PASSPHRASE not in json.dumps(entry.details)


def test_remove_current_key_is_refused(
    config_path: Path, store: MemoryStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """Removing the key the configured passphrase opens exits 10 with a hint."""
    key_id = drd_json(config_path, capsys, "repo", "init", "local")["key_id"]
    assert drd(config_path, "repo", "key", "remove", "local", key_id) == 10
    err = capsys.readouterr().err
    assert "refusing to remove it" in err
    assert "hint: open the repository with another key's passphrase" in err
    assert len(list_keys(store)) == 1


def test_wrong_configured_passphrase_exits_8(
    config_path: Path,
    store: MemoryStore,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A config passphrase that opens no key is one clear line and exit 8."""
    drd_json(config_path, capsys, "repo", "init", "local")
    monkeypatch.setenv("DRD_LOCAL_PASSPHRASE", "some other passphrase")
    assert drd(config_path, "repo", "key", "list", "local") == 8
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip().splitlines() == [
        "drd: error: repository memory://local: no key matches the passphrase (1 key tried) "
        "(hint: check the repository's encryption.passphrase; `drd repo key list` shows its keys)"
    ]


def test_uninitialised_and_unknown_repository(
    config_path: Path, store: MemoryStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """An uninitialised repository exits 4 saying what to run; an unknown name exits 2."""
    assert drd(config_path, "repo", "key", "list", "local") == 4
    assert "not a drd repository: memory://local (run `drd repo init" in capsys.readouterr().err
    assert drd(config_path, "repo", "init", "nope") == 2
    assert "unknown repository 'nope' (known: local)" in capsys.readouterr().err


def test_key_add_passphrase_sources(
    config_path: Path,
    store: MemoryStore,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The new passphrase comes from a named env var or a double prompt, never argv."""
    drd_json(config_path, capsys, "repo", "init", "local")
    monkeypatch.setattr(repo_cmd, "_stdin_is_tty", lambda: False)
    assert drd(config_path, "repo", "key", "add", "local") == 2
    assert "--passphrase-env NAME" in capsys.readouterr().err
    assert drd(config_path, "repo", "key", "add", "local", "--passphrase-env", "UNSET_VAR") == 2
    assert "UNSET_VAR (--passphrase-env) is not set" in capsys.readouterr().err
    monkeypatch.setenv("SAME_PASS", PASSPHRASE)
    assert drd(config_path, "repo", "key", "add", "local", "--passphrase-env", "SAME_PASS") == 2
    assert "is the configured one" in capsys.readouterr().err

    monkeypatch.setattr(repo_cmd, "_stdin_is_tty", lambda: True)
    answers = iter([NEW_PASSPHRASE, "typo" + NEW_PASSPHRASE])
    monkeypatch.setattr(getpass, "getpass", lambda prompt: next(answers))
    assert drd(config_path, "repo", "key", "add", "local") == 2
    assert "the two passphrases differ" in capsys.readouterr().err
    assert len(list_keys(store)) == 1

    answers = iter([NEW_PASSPHRASE, NEW_PASSPHRASE])
    data = drd_json(config_path, capsys, "repo", "key", "add", "local")
    assert open_repository(store, [FastWrapper(NEW_PASSPHRASE)])[2] == data["key_id"]


def test_real_filesystem_store_end_to_end(
    config_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without fakes: the configured filesystem repository, production scrypt cost."""
    data = drd_json(config_path, capsys, "repo", "init", "local")
    assert data["location"].startswith(str(tmp_path / "repository"))
    config_files = list((tmp_path / "repository").rglob("config"))
    assert len(config_files) == 1
    listed = drd_json(config_path, capsys, "repo", "key", "list", "local")
    assert [k["id"] for k in listed["keys"]] == [data["key_id"]]
    key_file = config_files[0].parent / "keys" / data["key_id"]
    assert json.loads(key_file.read_text())["n"] >= 2**15
