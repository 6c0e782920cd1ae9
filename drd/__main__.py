"""``python -m drd`` is the ``drd`` command."""

from drd.cli.app import run

run()
