"""The `mllmret` command: typer glue that parses, calls one library function and prints.

One module per group of commands; each registers on `main.app` when imported, in `--help` order."""

# isort: off
from . import caption, search, serve, library, evaluate, tags  # noqa: F401  (registers the commands)
from .main import app
# isort: on

__all__ = ["app"]
