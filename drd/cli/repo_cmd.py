"""``drd repo``: initialise a filestore snapshot repository and manage its keys.

Every command opens the repository named in the config with that repository's
``encryption.passphrase``. A new passphrase (``repo key add``) comes from an
environment variable named with ``--passphrase-env`` or, on a terminal, from a
prompt; never from the command line, where it would land in shell history and ``ps``.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from drd.catalog import open_configured
from drd.cli.context import state
from drd.cli.db_cmd import actor
from drd.cli.output import OutputFormat, write_json, write_table
from drd.config import Estate
from drd.config.models import FilesystemRepository, S3Repository
from drd.errors import ConfigError
from drd.redact import MIN_SECRET_LENGTH, register_secret
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

app = typer.Typer(help="Initialise filestore snapshot repositories and manage their keys.")
key_app = typer.Typer(help="List, add and remove the passphrases that open a repository.")
app.add_typer(key_app, name="key")

KEY_COLUMNS = ("id", "kind", "created", "hostname", "label", "current")


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


@contextmanager
def _opened_store(estate: Estate, repository_name: str) -> Iterator[ObjectStore]:
    store = _store_for(estate, repository_name)
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
    with _opened_store(estate, repository) as store:
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
    with _opened_store(estate, repository) as store:
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
