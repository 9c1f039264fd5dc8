"""`mllmret tags`: keywords written where photo tools look (XMP sidecars)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from .main import (
    DbOption,
    ModelFilter,
    RunOption,
    app,
    open_store,
)

tags_app = typer.Typer(help="Keywords where photo tools look (XMP sidecars, or --embed in the photo): "
                       "write ours, read a person's.", no_args_is_help=True)
app.add_typer(tags_app, name="tags")


class SidecarName(str, Enum):
    digikam = "digikam"
    lightroom = "lightroom"


@tags_app.command("write")
def tags_write(
    paths: Annotated[list[Path] | None, typer.Argument(
        help="Only photos in these files or folders [default: every captioned photo].")] = None,
    max_tags: Annotated[int, typer.Option(min=1, help="Most keywords per photo (most frequent first).")] = 25,
    sidecar_name: Annotated[SidecarName, typer.Option(
        help="digikam: IMG.jpg.xmp (digiKam, darktable, exiftool); lightroom: IMG.xmp.")
    ] = SidecarName.digikam,
    caption: Annotated[bool, typer.Option("--caption", help="Also write the full-image caption as "
                                          "dc:description where the photo has no description yet.")] = False,
    remove: Annotated[bool, typer.Option(
        "--remove", help="Take our keywords (and description) out again.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print what would change; write nothing.")] = False,
    embed: Annotated[bool, typer.Option(
        "--embed", help="Write into the JPEG/PNG/TIFF/WebP file itself instead of a sidecar (XMP, and IPTC "
        "where it has IPTC; [xmp] extra). The image data is not touched.")] = False,
    run: RunOption = None,
    model: ModelFilter = None,
    db: DbOption = None,
) -> None:
    """Write each captioned photo's tags into its XMP sidecar: dc:subject, lr:hierarchicalSubject mllmret|TAG.

    A person's keywords and description are kept; a later write replaces only ours. Photos changed since
    captioning, read-only sidecars and sidecars that are not XMP are skipped with a reason. With --embed the
    keywords go into the photo file; the library then knows its new content hash as the same photo."""
    from ..metadata.sidecars import write_sidecars

    with open_store(db) as store:
        s = write_sidecars(store, paths or [], store.select_runs(run, model), naming=sidecar_name.value,
                           max_tags=max_tags, caption=caption, remove=remove, dry_run=dry_run, embed=embed)
    done = {(False, False): "wrote", (False, True): "deleted", (True, False): "would write",
            (True, True): "would delete"}
    for w in s.written:
        typer.echo(f"{done[dry_run, w.deleted]}\t{w.target}\t{w.change.describe()}")
    what = "photos" if embed else "sidecars"
    typer.echo(f"{len(s.written)} {what} {'to change' if dry_run else 'changed'}, {s.unchanged} unchanged, "
               f"{len(s.skipped)} skipped", err=True)
    for item in s.skipped:
        typer.echo(f"  skipped {item.path}: {item.reason}", err=True)


@tags_app.command("read")
def tags_read(
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders (recursive).")],
    force: Annotated[bool, typer.Option(help="Read again what this library has read (edited keywords).")] = (
        False),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    db: DbOption = None,
) -> None:
    """Make the keywords, titles and descriptions a person gave each photo searchable.

    Read from XMP sidecars (IMG.jpg.xmp, IMG.xmp), embedded XMP and IPTC, and EXIF (ImageDescription, XP
    keywords): stored as a "metadata" run beside the captions, no model needed. Our own keywords (from
    `tags write`) are not read back."""
    from ..metadata.read import read_metadata
    from .caption import embed_stored, print_summary

    with open_store(db) as store:
        summary = read_metadata(store, paths, force=force, progress=not quiet)
        print_summary(summary, "read metadata of")
        embed_stored(store, None, quiet)
