"""mllmret: caption photos with a multimodal LLM, then search them by keyword."""

from __future__ import annotations

import logging
import sqlite3
from enum import Enum
from pathlib import Path
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from .. import config
from ..errors import MllmretError
from ..search.modes import SearchMode  # noqa: F401  (the commands' --mode)


class _Group(TyperGroup):
    """Typed errors become one line on stderr; Ctrl-C says that stored work is kept."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MllmretError as e:
            typer.echo(f"Error: {e}", err=True)
            raise typer.Exit(1) from None
        except sqlite3.Error as e:  # a locked, full or damaged database: one line, never a traceback
            from ..library.locking import user_message

            typer.echo(f"Error: {user_message(e)}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("Interrupted: finished batches are stored; rerun to resume.", err=True)
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=_Group, help=__doc__, no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False, rich_markup_mode=None,
)

DbOption = Annotated[
    Path | None,
    typer.Option("--db", envvar="MLLMRET_DB", help="Database file [default: in the data dir]."),
]
RunOption = Annotated[int | None, typer.Option("--run", help="Only captions of this run id.")]
ModelFilter = Annotated[str | None, typer.Option("--model", help="Only captions of this model.")]
EmbedderOption = Annotated[str | None, typer.Option(
    envvar="MLLMRET_EMBEDDER", help="sentence-transformers model folder or id for semantic/hybrid "
    "[default: the packaged all-MiniLM-L6-v2].")]
NoEmbed = Annotated[bool, typer.Option(
    "--no-embed", help="Do not embed the stored text for search by meaning (keyword-only libraries; "
    "`mllmret embed` does it later).")]


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class DType(str, Enum):
    auto = "auto"
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"


class Splitting(str, Enum):
    auto = "auto"
    on = "on"
    off = "off"

    def resolve(self, grid: str) -> bool:
        """on/off as given; auto: the model splits only when we make no tiles ourselves."""
        return self is Splitting.on or (self is Splitting.auto and grid.strip().lower() == "none")


class Quantize(str, Enum):
    none = "none"
    q4 = "4bit"
    q8 = "8bit"


def open_store(db: Path | None):
    from ..library.store import Store

    return Store(db or config.db_path())


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(code)


@app.callback()
def _root(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details.")] = False):
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
