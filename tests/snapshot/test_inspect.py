"""Snapshot list/show/diff, and the ``drd snapshot`` commands end to end on real files."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from drd.cli import snapshot_cmd
from drd.cli.context import AppState
from drd.cli.output import OutputFormat
from drd.errors import ConfigError, SnapshotError
from drd.snapshot import format as fmt
from drd.snapshot import inspect
from drd.snapshot.create import create_snapshot
from drd.snapshot.keys import PassphraseWrapper, init_repository
from drd.snapshot.repository import Repository
from drd.storage import MemoryStore
from drd.storage.factory import STORE_DIR
from drd.storage.filesystem import FilesystemStore

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE_ENV = "DRD_SNAPSHOT_CLI_TEST_PASSPHRASE"


@pytest.fixture
def repo() -> Repository:
    """An empty in-memory repository (cheap scrypt)."""
    store = MemoryStore()
    config, keys = init_repository(store, PassphraseWrapper("inspect-tests", n=2**10))
    return Repository(store, config, keys)


def entry(path: str, kind: fmt.EntryType = "file", **kw: object) -> fmt.TreeEntry:
    return fmt.TreeEntry(path, kind, int(kw.pop("mode", 0o644)), int(kw.pop("mtime", 1)), **kw)  # type: ignore[arg-type]


def test_diff_trees_added_removed_changed() -> None:
    """Paths only in B are added, only in A removed; type/size/content/mode/target changes."""
    a = [
        entry("same", size=3, content=("aa",)),
        entry("touched", size=3, content=("bb",), mtime=1),
        entry("gone", size=1, content=("cc",)),
        entry("grew", size=1, content=("dd",)),
        entry("chmod", size=1, content=("ee",)),
        entry("becomes-dir"),
        entry("lnk", "symlink", target="x"),
    ]
    b = [
        entry("same", size=3, content=("aa",)),
        entry("touched", size=3, content=("bb",), mtime=99),
        entry("grew", size=2, content=("dd", "ff")),
        entry("chmod", size=1, content=("ee",), mode=0o600),
        entry("becomes-dir", "dir", mode=0o755),
        entry("lnk", "symlink", target="y"),
        entry("new", size=5, content=("gg",)),
    ]
    result = inspect.diff_trees(a, b, a_id="A", b_id="B")
    assert [e.path for e in result.added] == ["new"]
    assert [e.path for e in result.removed] == ["gone"]
    assert {c.path: c.fields for c in result.changed} == {
        "becomes-dir": ("type", "mode"),
        "chmod": ("mode",),
        "grew": ("size", "content"),
        "lnk": ("target",),
    }
    assert result.as_dict()["summary"] == {"added": 1, "removed": 1, "changed": 4}
    assert inspect.diff_trees(a, a).empty


def test_diff_list_and_show_on_real_snapshots(repo: Repository, tmp_path: Path) -> None:
    """diff of two real snapshots sees edits; list and show read the manifests."""
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "keep").write_bytes(b"keep")
    (src / "d" / "edit").write_bytes(b"before")
    (src / "old").write_bytes(b"old")
    first = create_snapshot(
        repo, src, workload="acme", tier="tier-1", db_restore_point={"wal_lsn": "0/3000060"}
    )
    (src / "d" / "edit").write_bytes(b"after!!")
    (src / "old").unlink()
    (src / "d" / "added").write_bytes(b"new")
    second = create_snapshot(repo, src, workload="acme", tier="tier-1", tags=("manual",))
    create_snapshot(repo, src, workload="other", tier="tier-2")

    result = inspect.diff(repo, first.snapshot_id[:8], second.snapshot_id)
    assert [e.path for e in result.added] == ["d/added"]
    assert [e.path for e in result.removed] == ["old"]
    assert [c.path for c in result.changed] == ["d/edit"]
    assert result.changed[0].fields == ("size", "content")

    rows = inspect.list_snapshots(repo, "acme")
    assert [r.id for r in rows] == [first.snapshot_id, second.snapshot_id]
    assert rows[1].parent == first.snapshot_id
    assert rows[1].tags == ("manual",)
    assert (rows[0].files, rows[0].bytes) == (3, 13)
    assert len(inspect.list_snapshots(repo)) == 3

    detail = inspect.show(repo, first.snapshot_id[:6]).as_dict()
    assert detail["id"] == first.snapshot_id
    assert detail["db_restore_point"] == {"wal_lsn": "0/3000060"}
    assert detail["summary"]["files"] == 3
    assert detail["entries"] == 4  # d, d/edit, d/keep, old


# -- the command line ------------------------------------------------------------------


@pytest.fixture
def estate_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config with one filesystem repository (initialised) and one workload with a filestore."""
    monkeypatch.setenv(PASSPHRASE_ENV, "cli-snapshot-passphrase")
    with socket.socket() as sock:  # a port where no PostgreSQL listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    filestore = tmp_path / "filestore"
    (filestore / "ab").mkdir(parents=True)
    (filestore / "ab" / "0123").write_bytes(os.urandom(4000))
    (filestore / "readme.txt").write_text("hello")
    config = {
        "version": 1,
        "state_dir": str(tmp_path / "state"),
        "tiers_dir": str(ROOT / "tiers"),
        "repositories": [
            {
                "name": "local",
                "type": "filesystem",
                "path": str(tmp_path / "repository"),
                "encryption": {"passphrase": {"env": PASSPHRASE_ENV}},
            }
        ],
        "workloads": [
            {
                "name": "acme-erp",
                "tier": "tier-1",
                "repository": "local",
                "postgres": {
                    "primary": {"host": "127.0.0.1", "port": port, "dbname": "acme"},
                    "pgdata": str(tmp_path / "pgdata"),
                },
                "filestore": {"path": str(filestore)},
            }
        ],
    }
    (tmp_path / "drd.yaml").write_text(yaml.safe_dump(config))
    init_repository(
        FilesystemStore(tmp_path / "repository" / STORE_DIR),
        PassphraseWrapper("cli-snapshot-passphrase", n=2**10),
    )
    return tmp_path


def run(estate_dir: Path, *args: str, output: OutputFormat = OutputFormat.table) -> tuple[int, str]:
    state = AppState(config_path=estate_dir / "drd.yaml", output=output, log_level="warning")
    result = CliRunner().invoke(snapshot_cmd.app, list(args), obj=state)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout


def test_cli_create_list_show_diff_restore_verify(estate_dir: Path) -> None:
    """Every `drd snapshot` command works on a real filesystem repository, JSON and table."""
    code, out = run(estate_dir, "create", "acme-erp", "--tag", "t1", output=OutputFormat.json)
    assert code == 0, out
    first = json.loads(out)
    assert (first["files"], first["tags"]) == (2, ["t1"])
    (estate_dir / "filestore" / "ab" / "4567").write_bytes(b"new attachment")
    code, out = run(estate_dir, "create", "acme-erp")
    assert code == 0
    assert out.startswith("snapshot ")
    assert "3 files" in out
    second = out.split("id ")[-1].strip()

    code, out = run(estate_dir, "list", output=OutputFormat.json)
    assert [r["id"] for r in json.loads(out)] == [first["snapshot_id"], second]
    code, out = run(estate_dir, "list", "acme-erp")
    assert out.splitlines()[0].split() == [
        "ID", "TIME", "WORKLOAD", "TIER", "TAGS", "FILES", "SIZE", "PARENT"
    ]  # fmt: skip
    assert first["snapshot_id"][:8] in out

    code, out = run(estate_dir, "show", second[:8])
    assert f"id: {second}" in out
    assert "db restore point:" in out

    code, out = run(estate_dir, "diff", first["snapshot_id"][:8], second[:8])
    assert out.splitlines() == ["+ ab/4567", "1 added, 0 removed, 0 changed"]

    target = estate_dir / "restored"
    code, out = run(estate_dir, "restore", second[:8], "--target", str(target), "-i", "ab")
    assert code == 0, out
    assert sorted(p.name for p in target.rglob("*")) == ["0123", "4567", "ab"]
    assert (target / "ab" / "4567").read_bytes() == b"new attachment"

    code, out = run(estate_dir, "verify", "--read-data", output=OutputFormat.json)
    report = json.loads(out)
    assert (code, report["ok"], report["snapshots"]) == (0, True, 2)
    code, out = run(estate_dir, "verify", "--read-data-subset", "50%")
    assert "no problems found" in out


def test_cli_verify_damage_exits_with_snapshot_error(estate_dir: Path) -> None:
    """verify prints each damaged object and then fails with a SnapshotError summary."""
    run(estate_dir, "create", "acme-erp")
    store = FilesystemStore(estate_dir / "repository" / STORE_DIR)
    key = next(store.list("snapshots/")).key
    data = bytearray(store.get(key))
    data[-1] ^= 1
    store.put(key, bytes(data))
    with pytest.raises(SnapshotError, match=f"1 object\\(s\\): {key}"):
        run(estate_dir, "verify")


def test_cli_repository_choice() -> None:
    """--repository may be omitted only when it is unambiguous."""
    from drd.config import load

    estate = load(ROOT / "examples" / "local" / "drd.yaml", check_secrets=False)
    assert snapshot_cmd.repository_name(estate, None) == "local"
    assert snapshot_cmd.repository_name(estate, "other") == "other"
    assert snapshot_cmd.repository_name(estate, None, workload="acme-erp") == "local"
    two = estate.config.model_copy(update={"repositories": [*estate.config.repositories] * 2})
    with pytest.raises(ConfigError, match="choose one with --repository"):
        snapshot_cmd.repository_name(type(estate)(estate.path, two, estate.tiers), None)
    assert snapshot_cmd.parse_percent("12.5%") == 12.5
