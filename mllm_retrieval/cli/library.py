"""`mllmret export`, `stats` and `prompts`: what the library and the package hold."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from .main import (
    DbOption,
    ModelFilter,
    RunOption,
    app,
    fail,
    open_store,
)


@app.command()
def export(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File [default: stdout].")
                      ] = None,
    run: RunOption = None,
    model: ModelFilter = None,
    db: DbOption = None,
) -> None:
    """Write captions as JSONL, one line per tile caption; `mllmret import` reads it back."""
    from ..library.jsonl import export_jsonl

    with open_store(db) as store:
        run_ids = store.select_runs(run, model)
        if output is None:
            n = export_jsonl(store, sys.stdout, run_ids)
        else:
            try:
                with output.open("w", encoding="utf-8") as f:
                    n = export_jsonl(store, f, run_ids)
            except OSError as e:
                raise fail(f"cannot write {str(output)!r}: {e.strerror or e}") from None
    typer.echo(f"exported {n} captions", err=True)


@app.command()
def stats(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    db: DbOption = None,
) -> None:
    """Counts of images, tiles and captions per run and model."""
    with open_store(db) as store:
        s = store.stats()
        failures = store.failures()
    if as_json:
        typer.echo(json.dumps(s, indent=2))
        return
    images = ", ".join(f"{n} {status}" for status, n in sorted(s["images"].items())) or "none"
    typer.echo(f"database: {s['database']}\nimages: {images}\nfiles: {s['files']} indexed, "
               f"{s['failed_files']} failed\ntiles: {s['tiles']}\ncaptions: {s['captions']}")
    for r in s["runs"]:
        typer.echo(f"  run {r['run']}: {r['backend']} {r['model']} prompt={r['prompt']} "
                   f"images={r['images']} tiles={r['tiles']} finished={r['finished'] or 'no'}"
                   + (f" kind={r['kind']}" if r["kind"] != "caption" else ""))
    for path, reason in failures[:20]:
        typer.echo(f"  failed {path}: {reason}")


@app.command()
def prompts() -> None:
    """List the bundled prompts (use one with `caption --prompt NAME`), then the rewrite prompts."""
    from ..capture.prompts import available_prompts, load_prompt

    for name in available_prompts():
        typer.echo(f"{name}: {load_prompt(name).text.splitlines()[0]}")
    for name in available_prompts("rewrite"):
        typer.echo(f"{name} (rewrite prompt for `search --like … --rewrite-with`, not for captioning): "
                   f"{load_prompt(name, kind='rewrite').text.splitlines()[0]}")


@app.command()
def check(
    repair: Annotated[bool, typer.Option("--repair", help="Remove unusable derived files, compact the change "
                                         "log and rebuild the keyword index.")] = False,
    db: DbOption = None,
) -> None:
    """Check the database (integrity), its index files (against the database) and the image files on disk.

    Exit status 1 when a problem remains."""
    from ..library.check import check_library_state, describe

    with open_store(db) as store:
        report = check_library_state(store, repair=repair)
    for line in describe(report):
        typer.echo(line)
    if report.problems:
        raise typer.Exit(1)
