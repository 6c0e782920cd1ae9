"""``drd repo``: initialise a filestore snapshot repository and manage its keys;
audit its Object Lock immutability and write its storage-class lifecycle.

The key commands open the repository named in the config with that repository's
``encryption.passphrase``. A new passphrase (``repo key add``) comes from an
environment variable named with ``--passphrase-env`` or, on a terminal, from a
prompt; never from the command line, where it would land in shell history and ``ps``.
On a repository serving an immutable tier, ``init`` and ``key add`` first check that the
bucket can lock, and the config and key wrappers they write are locked.
``check-immutability`` and ``lifecycle`` need no passphrase: they read object metadata
and bucket configuration only (``drd.retention.immutability``, ``.lifecycle``).
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from drd.catalog import open_configured
from drd.cli.context import state
from drd.cli.db_cmd import actor
from drd.cli.output import OutputFormat, write_json, write_table
from drd.config import Estate
from drd.config.models import FilesystemRepository, S3Repository
from drd.errors import ChecksFailedError, ConfigError
from drd.redact import MIN_SECRET_LENGTH, register_secret
from drd.retention.immutability import (
    REPOSITORY_EXEMPT,
    ImmutabilityReport,
    check_immutability,
    describe_repository,
    ensure_object_lock,
    lock_store,
    open_repository_root,
    repository_policy,
)
from drd.retention.lifecycle import apply_lifecycle, desired_lifecycle, plan_lifecycle
from drd.snapshot.keys import (
    KeyInfo,
    PassphraseWrapper,
    add_key,
    init_repository,
    list_keys,
    open_repository,
    remove_key,
)
from drd.storage.base import ObjectStore

app = typer.Typer(
    help="Initialise repositories, manage their keys, check immutability, write lifecycle."
)
key_app = typer.Typer(help="List, add and remove the passphrases that open a repository.")
app.add_typer(key_app, name="key")

KEY_COLUMNS = ("id", "kind", "created", "hostname", "label", "current")
FINDING_COLUMNS = ("repository", "key", "problem", "detail")
LIFECYCLE_COLUMNS = ("repository", "change", "prefix", "days", "storage_class")
MAX_FINDINGS_SHOWN = 50  # per repository in the table; --output json lists every one
NOT_IMMUTABLE = "no tier of its workloads asks for immutability"


def _repository(estate: Estate, name: str) -> FilesystemRepository | S3Repository:
    for repo in estate.config.repositories:
        if repo.name == name:
            return repo
    known = ", ".join(r.name for r in estate.config.repositories) or "none"
    raise ConfigError(f"unknown repository {name!r} (known: {known})")


def _store_for(estate: Estate, repository_name: str) -> ObjectStore:
    """The object store of a configured repository (tests replace this function)."""
    from drd.storage.factory import open_store  # noqa: PLC0415 - keeps boto3 off `--help`

    return open_store(_repository(estate, repository_name))


def _root_store_for(estate: Estate, repository_name: str) -> ObjectStore:
    """The store on a repository's root (filestore/ and pgbackrest/); tests replace it."""
    return open_repository_root(_repository(estate, repository_name))


@contextmanager
def _opened_root(estate: Estate, repository_name: str) -> Iterator[ObjectStore]:
    store = _root_store_for(estate, repository_name)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def _opened_store(
    estate: Estate, repository_name: str, *, write: bool = False
) -> Iterator[ObjectStore]:
    """The repository's store; what is written through it is locked on an immutable
    repository. ``write``: first refuse a bucket that cannot lock (``ensure_object_lock``)."""
    _repository(estate, repository_name)  # an unknown name is a ConfigError
    if write:
        ensure_object_lock(estate, repository_name, lambda repo: _root_store_for(estate, repo.name))
    store = lock_store(estate, repository_name, _store_for(estate, repository_name))
    try:
        yield store
    finally:
        store.close()


def _configured_wrapper(estate: Estate, repository_name: str) -> PassphraseWrapper:
    secret = _repository(estate, repository_name).encryption.passphrase.get()
    passphrase = secret.get_secret_value()
    register_secret(passphrase)
    return PassphraseWrapper(passphrase)


def _audit(estate: Estate, action: str, repository: str, details: dict[str, Any]) -> None:
    """Record a key change in the catalog's audit log (before acting, when destructive)."""
    with open_configured(estate.config) as catalog:
        catalog.append_audit(actor(), action, repository, details)


def _stdin_is_tty() -> bool:
    return sys.stdin.isatty()


def _new_passphrase(env: str | None) -> str:
    """The new passphrase: from the environment variable ``env``, else prompted twice."""
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(f"environment variable {env} (--passphrase-env) is not set")
    elif _stdin_is_tty():
        value = getpass.getpass("New repository passphrase: ")
        if getpass.getpass("Repeat the new passphrase: ") != value:
            raise ConfigError("the two passphrases differ; nothing was changed")
    else:
        raise ConfigError(
            "give the new passphrase with --passphrase-env NAME (the name of an environment "
            "variable holding it), or run on a terminal to be prompted"
        )
    if len(value) < MIN_SECRET_LENGTH:
        raise ConfigError(f"the new passphrase is shorter than {MIN_SECRET_LENGTH} characters")
    register_secret(value)
    return value


def _key_row(key: KeyInfo, current_key_id: str | None) -> dict[str, Any]:
    return {
        "id": key.id,
        "kind": key.kind,
        "created": key.created,
        "hostname": key.hostname,
        "label": key.label,
        "current": key.id == current_key_id,
    }


@app.command("init")
def init(
    ctx: typer.Context,
    repository: Annotated[str, typer.Argument(help="repository name in the config")],
    label: Annotated[str, typer.Option("--label", help="label of the first key")] = "initial",
) -> None:
    """Create the snapshot repository (config and first key); refuses an existing one."""
    st = state(ctx)
    estate = st.estate()
    wrapper = _configured_wrapper(estate, repository)
    with _opened_store(estate, repository, write=True) as store:
        config, _ = init_repository(store, wrapper, label=label)
        keys = list_keys(store)
        location = store.location
    _audit(
        estate,
        "repo.init",
        repository,
        {"location": location, "id": config.id, "key_id": keys[0].id if keys else None},
    )
    data = {
        "repository": repository,
        "location": location,
        "id": config.id,
        "created": config.created,
        "key_id": keys[0].id if keys else None,
    }
    if st.output is OutputFormat.json:
        write_json(data)
    else:
        typer.echo(
            f"initialised repository {repository} at {location} (id {config.id}, "
            f"key {data['key_id']}); keep the passphrase safe: without it the snapshots "
            "cannot be read"
        )


@key_app.command("list")
def key_list(
    ctx: typer.Context,
    repository: Annotated[str, typer.Argument(help="repository name in the config")],
) -> None:
    """The repository's keys; CURRENT marks the one the configured passphrase opens."""
    st = state(ctx)
    estate = st.estate()
    wrapper = _configured_wrapper(estate, repository)
    with _opened_store(estate, repository) as store:
        _, _, current = open_repository(store, [wrapper])
        rows = [_key_row(k, current) for k in list_keys(store)]
        location = store.location
    if st.output is OutputFormat.json:
        write_json({"repository": repository, "location": location, "keys": rows})
    else:
        write_table(rows, KEY_COLUMNS)


@key_app.command("add")
def key_add(
    ctx: typer.Context,
    repository: Annotated[str, typer.Argument(help="repository name in the config")],
    passphrase_env: Annotated[
        str | None,
        typer.Option(
            "--passphrase-env",
            metavar="NAME",
            help="environment variable holding the new passphrase (default: prompt)",
        ),
    ] = None,
    label: Annotated[str, typer.Option("--label", help="what the key is for")] = "",
) -> None:
    """Add a passphrase that opens the repository (no data is re-encrypted)."""
    st = state(ctx)
    estate = st.estate()
    wrapper = _configured_wrapper(estate, repository)
    new_passphrase = _new_passphrase(passphrase_env)
    if wrapper.matches(new_passphrase):
        raise ConfigError(
            "the new passphrase is the configured one: it already opens the repository"
        )
    with _opened_store(estate, repository, write=True) as store:
        _, keys, current = open_repository(store, [wrapper])
        key_id = add_key(store, keys, PassphraseWrapper(new_passphrase), label=label)
        location = store.location
    _audit(
        estate,
        "repo.key.add",
        repository,
        {"location": location, "key_id": key_id, "label": label, "opened_with": current},
    )
    if st.output is OutputFormat.json:
        write_json({"repository": repository, "key_id": key_id, "label": label})
    else:
        typer.echo(f"added key {key_id} to repository {repository}")


@key_app.command("remove")
def key_remove(
    ctx: typer.Context,
    repository: Annotated[str, typer.Argument(help="repository name in the config")],
    key_id: Annotated[str, typer.Argument(help="key id (see `drd repo key list`)")],
) -> None:
    """Remove a key; refuses the last key and the key the configured passphrase opens."""
    st = state(ctx)
    estate = st.estate()
    wrapper = _configured_wrapper(estate, repository)
    with _opened_store(estate, repository) as store:
        _, _, current = open_repository(store, [wrapper])
        _audit(
            estate,
            "repo.key.remove",
            repository,
            {"location": store.location, "key_id": key_id, "opened_with": current},
        )
        remove_key(store, key_id, current_key_id=current)
    if st.output is OutputFormat.json:
        write_json({"repository": repository, "removed": key_id})
    else:
        typer.echo(f"removed key {key_id} from repository {repository}")


# -- immutability and lifecycle ------------------------------------------------------------


def _print_report(estate: Estate, name: str, report: ImmutabilityReport) -> None:
    """One repository's result as a summary line and a table of what is wrong."""
    typer.echo(
        f"{describe_repository(estate, name)} ({report.policy.describe()}) at "
        f"{report.location}: {report.checked} objects checked, {len(report.findings)} "
        f"with a missing, short or weaker lock: {'ok' if report.ok else 'FAILED'}"
    )
    rows = [
        {"repository": name, "key": "-", "problem": "bucket", "detail": problem}
        for problem in report.bucket_problems
    ]
    rows += [
        {"repository": name, "key": f.key, "problem": f.problem, "detail": f.detail}
        for f in report.findings[:MAX_FINDINGS_SHOWN]
    ]
    if rows:
        write_table(rows, FINDING_COLUMNS)
    hidden = len(report.findings) - MAX_FINDINGS_SHOWN
    if hidden > 0:
        typer.echo(f"... and {hidden} more (--output json lists every one)")


@app.command("check-immutability")
def check_immutability_cmd(
    ctx: typer.Context,
    repository: Annotated[
        str | None,
        typer.Argument(help="repository name (default: every one serving an immutable tier)"),
    ] = None,
) -> None:
    """Check versioning, Object Lock and every object's lock; exit 11 on any problem."""
    st = state(ctx)
    estate = st.estate()
    names = [r.name for r in estate.config.repositories]
    if repository is not None:
        names = [_repository(estate, repository).name]
    now = datetime.now(UTC)
    results: list[dict[str, Any]] = []
    failed: list[str] = []
    for name in names:
        policy = repository_policy(estate, name)
        if policy is None:
            if repository is not None:
                results.append({"repository": name, "ok": True, "skipped": NOT_IMMUTABLE})
            continue
        with _opened_root(estate, name) as store:
            report = check_immutability(store, policy, now, exempt=REPOSITORY_EXEMPT)
        if not report.ok:
            failed.append(name)
        results.append({"repository": name, **report.as_dict()})
        if st.output is OutputFormat.table:
            _print_report(estate, name, report)
    if st.output is OutputFormat.json:
        write_json({"ok": not failed, "repositories": results})
    elif not results:
        typer.echo("no repository serves a tier with immutability: nothing to check")
    elif repository is not None and "skipped" in results[0]:
        typer.echo(f"repository {repository}: nothing to check, {NOT_IMMUTABLE}")
    if failed:
        raise ChecksFailedError(
            f"immutability check failed for {', '.join(failed)}: objects without a long "
            "enough lock, or a bucket that cannot lock",
            hint="lock what is listed (retention extends the locks of kept restore points; "
            "pgBackRest files are locked after each backup), or fix the bucket",
        )


@app.command("lifecycle")
def lifecycle_cmd(
    ctx: typer.Context,
    repository: Annotated[
        str | None, typer.Argument(help="repository name (default: every S3 repository)")
    ] = None,
    apply: Annotated[
        bool, typer.Option("--apply", help="write the rules to the bucket (audited)")
    ] = False,
) -> None:
    """Show the storage-class rules the tiers ask for against the bucket's; --apply writes."""
    st = state(ctx)
    estate = st.estate()
    if repository is not None:
        _repository(estate, repository)
        names = [repository]
    else:
        names = [r.name for r in estate.config.repositories if isinstance(r, S3Repository)]
    results: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for name in names:
        desired = desired_lifecycle(estate, name)
        with _opened_root(estate, name) as store:
            diff = plan_lifecycle(store, desired)
            applied = False
            if apply and not diff.in_sync:
                _audit(
                    estate,
                    "repo.lifecycle.apply",
                    name,
                    {"location": store.location, **diff.as_dict()},
                )
                diff = apply_lifecycle(store, desired)
                applied = True
            location = store.location
        results.append(
            {"repository": name, "location": location, "applied": applied, **diff.as_dict()}
        )
        for change, items in (
            ("add", diff.added),
            ("remove", diff.removed),
            ("keep", diff.unchanged),
        ):
            rows += [
                {
                    "repository": name,
                    "change": change,
                    "prefix": t.prefix,
                    "days": t.days,
                    "storage_class": t.storage_class,
                }
                for t in items
            ]
    if st.output is OutputFormat.json:
        write_json({"repositories": results})
        return
    if not names:
        typer.echo("no S3 repository: storage-class lifecycle applies to S3 only")
        return
    if rows:
        write_table(rows, LIFECYCLE_COLUMNS)
    for item in results:
        changes = len(item["added"]) + len(item["removed"])
        if item["applied"]:
            verdict = f"applied {changes} change(s)"
        elif item["in_sync"]:
            verdict = "in sync"
        else:
            verdict = f"{changes} change(s) pending: run with --apply to write them"
        typer.echo(f"repository {item['repository']} ({item['location']}): {verdict}")
