"""The ``drd`` command line: a thin Typer layer over the service modules.

Each capability adds its command group as its own module here and registers it in
``app.py``; commands parse arguments, call a service function, and render the result
with ``output.py`` (a table for people, ``--output json`` for machines).
"""
