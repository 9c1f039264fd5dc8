"""`mllmret caption`, `import` and `embed`: text into the library, then indexed for search."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import config
from ..defaults import CAPTION_BATCH, MAX_NEW_TOKENS
from .main import (
    DbOption,
    Device,
    DType,
    EmbedderOption,
    NoEmbed,
    Quantize,
    Splitting,
    app,
    fail,
    open_store,
)


@app.command()
def caption(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders (recursive).")],
    backend: Annotated[str, typer.Option(help="transformers | openai | import.")] = "transformers",
    model: Annotated[str | None, typer.Option(
        help="Local folder or hub id (transformers), or the server's model name (openai). "
        "[default: HuggingFaceTB/SmolVLM-256M-Instruct]")] = None,
    prompt: Annotated[str, typer.Option(help="Prompt name in prompts/ or a file path.")] = (
        "tags_caption"),
    grid: Annotated[str, typer.Option(help="Tiles besides the full image: 2x2, 3x3, none.")] = "2x2",
    overlap: Annotated[float, typer.Option(help="Tile overlap as a fraction of tile size.")] = 0.0,
    batch_size: Annotated[int, typer.Option(min=1, help="Tiles per model call.")] = CAPTION_BATCH,
    max_new_tokens: Annotated[int, typer.Option(
        min=1, help="Longest answer in tokens (generation stops earlier once the answer is complete).",
    )] = MAX_NEW_TOKENS,
    image_splitting: Annotated[Splitting, typer.Option(
        help="The model's own cutting of each image into sub-images (SmolVLM/Idefics3). auto: off when "
        "--grid makes tiles (they already split the photo; ~13x fewer image tokens), on with --grid none.",
    )] = Splitting.auto,
    device: Annotated[Device, typer.Option(help="Where the model runs.")] = Device.auto,
    dtype: Annotated[DType, typer.Option(
        help="Weights dtype (auto: bf16/fp16 on GPU, bf16 on CPUs with native bf16, else float32).")] = (
        DType.auto),
    quantize: Annotated[Quantize, typer.Option(help="bitsandbytes quantisation (CUDA).")] = (
        Quantize.none),
    base_url: Annotated[list[str] | None, typer.Option(
        envvar="MLLMRET_BASE_URL", help="openai: server URL, e.g. http://127.0.0.1:8000/v1; repeat it "
        "(or give a comma list) to spread requests over several servers serving the same model.",
    )] = None,
    api_key: Annotated[str | None, typer.Option(
        envvar="MLLMRET_API_KEY", help="openai: API key (or OPENAI_API_KEY).", show_default=False,
    )] = None,
    concurrency: Annotated[int, typer.Option(
        min=1, help="openai: requests in flight, across photos and servers.")] = 4,
    timeout: Annotated[float, typer.Option(help="openai: seconds per request.")] = 120.0,
    retries: Annotated[int, typer.Option(min=0, help="openai: retries on 429/5xx/timeouts.")] = 4,
    captions: Annotated[Path | None, typer.Option(
        help="import: the JSONL file (or folder of shards) of captions made elsewhere; PATHS[0] is the "
        "folder that its file_name values are relative to.")] = None,
    force: Annotated[bool, typer.Option(help="Caption again what this run already has.")] = False,
    ray: Annotated[str | None, typer.Option(
        "--ray", help="Caption on Ray actors ([ray] extra): local (start one here), auto (join the "
        "running cluster) or a cluster address. Photos must be readable at their paths on every node.",
        show_default=False)] = None,
    workers: Annotated[int, typer.Option(min=1, help="--ray: actors, one model each.")] = 1,
    cpus_per_worker: Annotated[float, typer.Option(min=0, help="--ray: CPUs per actor.")] = 1.0,
    gpus_per_worker: Annotated[float, typer.Option(min=0, help="--ray: GPUs per actor.")] = 0.0,
    shards: Annotated[Path | None, typer.Option(
        help="Write captions as JSONL shards into this folder instead of a database (a worker that "
        "cannot reach it); `mllmret import DIR` merges them.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Count what is new, time one batch on the model, print the estimate; "
        "store nothing.")] = False,
    ocr: Annotated[bool, typer.Option(
        "--ocr", help="Also read the text in each photo (OCR, [ocr] extra).")] = False,
    ocr_only: Annotated[bool, typer.Option(
        "--ocr-only", help="Only read the text in each photo: no M-LLM.")] = False,
    ocr_grid: Annotated[str, typer.Option(
        help="OCR: tiles to read besides the whole photo (2x2 found 76% of labelled words, not 70%, "
        "at 3.3x the time).")] = "none",
    metadata: Annotated[bool, typer.Option(
        "--metadata/--no-metadata", help="Also make the keywords, titles and descriptions already in each "
        "photo's metadata searchable (XMP sidecars, embedded XMP/IPTC, EXIF; headers only, about 0.4 ms a "
        "photo; as `tags read`).",
    )] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    no_embed: NoEmbed = False,
    embedder: EmbedderOption = None,
    db: DbOption = None,
) -> None:
    """Describe every image and tile under PATHS with an M-LLM, store the text and embed it.

    Rerunning the same command resumes; a new model or prompt makes a new run beside the old one.
    --ocr / --ocr-only add an OCR run (text read in the photos) to the library, new or existing.
    """
    from ..capture.captioners import get_captioner
    from ..capture.images import require_paths
    from ..capture.pipeline import CaptionSettings, caption_paths
    from ..capture.prompts import load_prompt

    if ray is not None and shards is not None:
        raise fail("--ray writes the database and --shards writes files instead: use one of them")
    require_paths(paths)  # a typo is an error before a model loads or a library is made
    reader = _ocr_engine() if ocr or ocr_only else None
    if ocr_only:
        with open_store(db) as store:
            _ocr(store, paths, reader, force, quiet, ocr_grid)
            return embed_stored(store, embedder, quiet, embed=not no_embed)
    options = backend_options_given(ctx, backend, {
        "model": model, "device": device.value, "dtype": dtype.value,
        "quantize": None if quantize is Quantize.none else quantize.value,
        "max_new_tokens": max_new_tokens, "base_url": base_url, "api_key": api_key,
        "concurrency": concurrency, "timeout": timeout, "retries": retries,
        "image_splitting": image_splitting.resolve(grid), "captions": captions, "images": paths[0],
    })
    captioner = get_captioner(backend, **options)
    if hasattr(captioner, "store_text"):  # its text comes with it (import): stored as it is
        given = [flag for flag, on in (("--dry-run", dry_run), ("--shards", shards is not None),
                                       ("--ray", ray is not None), ("--ocr", ocr)) if on]
        if given:  # it opens no image and runs no model: these would be silently ignored
            then = "; read the photos with `caption --ocr-only` after it" if ocr else ""
            raise fail(f"{', '.join(given)} does not apply to --backend {backend} (it stores text made "
                       f"elsewhere{then})")
        with open_store(db) as store:
            return report_import(store, captioner.store_text(store, progress=not quiet), embedder, quiet,
                                 embed=not no_embed)
    settings = CaptionSettings(grid, overlap, batch_size, force)
    if dry_run:
        return _dry_run(db, paths, captioner, load_prompt(prompt), settings)
    if shards is not None:
        from ..capture.shards import caption_to_shards

        return print_summary(caption_to_shards(paths, captioner, load_prompt(prompt), shards, settings,
                                               progress=not quiet), where=f"into shards in {shards}")
    with open_store(db) as store:
        if ray is not None:
            from ..capture.distributed import caption_with_ray

            summary = caption_with_ray(store, paths, backend, options, load_prompt(prompt), settings,
                                       address=ray, workers=workers, cpus_per_worker=cpus_per_worker,
                                       gpus_per_worker=gpus_per_worker, progress=not quiet)
        else:
            summary = caption_paths(store, paths, captioner, load_prompt(prompt), settings,
                                    progress=not quiet)
        print_summary(summary)
        if reader is not None:
            _ocr(store, paths, reader, force, quiet, ocr_grid)
        if metadata:
            from ..metadata.read import read_metadata

            print_summary(read_metadata(store, paths, force=force, progress=not quiet), "read metadata of")
        embed_stored(store, embedder, quiet, embed=not no_embed)


def backend_options_given(ctx: typer.Context, backend: str, options: dict) -> dict:
    """The options the backend declares; one it does not, given on the command line, is an error."""
    from ..capture.captioners import backend_options

    declared = backend_options(backend)
    if declared is None:
        return options
    for name in options.keys() - declared:
        source = ctx.get_parameter_source(name)
        if source is not None and source.name != "DEFAULT":  # typer may bring its own click
            raise fail(f"--{name.replace('_', '-')} does not apply to --backend {backend}")
    return {k: v for k, v in options.items() if k in declared}


def embed_stored(store, embedder: str | None, quiet: bool, embed: bool = True) -> None:
    """The indexing step of caption/import/embed: the keyword index, then vectors for every image text
    that has none (unless `embed` is False)."""
    from ..library.embed import embed_library

    s = embed_library(store, embedder, progress=not quiet, embed=embed)
    if s is None:
        return
    typer.echo(f"embedded {s.embedded} images for search by meaning ({s.images} in all, {s.embedder})",
               err=True)


def _dry_run(db: Path | None, paths: list[Path], captioner, prompt, settings) -> None:
    from ..capture.estimate import describe_estimate, estimate
    from ..library.store import Store

    path = db or config.db_path()
    store = Store(path) if path.exists() else None
    try:
        est = estimate(store, paths, captioner, prompt, settings)
    finally:
        if store is not None:
            store.close()
    for line in describe_estimate(est, settings.grid):
        typer.echo(line)
    for item in est.skipped:
        typer.echo(f"  skipped {item.path}: {item.reason}", err=True)


def _ocr_engine():
    from ..capture.ocr import OcrEngine

    return OcrEngine()


def _ocr(store, paths: list[Path], reader, force: bool, quiet: bool, grid: str) -> None:
    from ..capture.ocr_pipeline import ocr_paths

    summary = ocr_paths(store, paths, reader, force=force, progress=not quiet, grid=grid)
    print_summary(summary, "read text in")


def print_summary(s, verb: str = "captioned", where: str | None = None) -> None:
    typer.echo(
        f"{where or f'run {s.run_id}'}: {verb} {s.captioned_images} images ({s.captioned_tiles} tiles) in "
        f"{s.seconds:.1f}s ({s.images_per_second:.2f} images/s); {s.already_done} already "
        f"captioned, {s.duplicates} duplicate files, {len(s.failed)} skipped, {len(s.removed)} gone",
        err=True,
    )
    for item in s.failed:
        typer.echo(f"  skipped {item.path}: {item.reason}", err=True)
    for path in s.removed:
        typer.echo(f"  gone {path}: no longer in its folder; its text left search", err=True)


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(
        help="JSONL: path|file_name|image_id, text, ...; or a folder of JSONL shards (caption --shards).")],
    images: Annotated[Path | None, typer.Option(help="Folder that file_name is relative to.")] = (
        None),
    model: Annotated[str | None, typer.Option(help="Model name for lines without one.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    no_embed: NoEmbed = False,
    embedder: EmbedderOption = None,
    db: DbOption = None,
) -> None:
    """Import captions made elsewhere (same format as `mllmret export`), then embed them.

    Each line is checked; bad lines are skipped and reported by line number and reason, the rest are
    imported. Exit status 1 when no line could be imported."""
    from ..capture.captioners import get_captioner

    source = get_captioner("import", captions=file, images=images, model=model)
    with open_store(db) as store:
        s = source.store_text(store, progress=not quiet)
        report_import(store, s, embedder, quiet, embed=not no_embed)


def report_import(store, s, embedder: str | None, quiet: bool, embed: bool = True) -> None:
    """Print what an import did and its skipped lines; exit 1 when no line could be used, else embed."""
    from ..library.jsonl import skipped_report

    typer.echo(
        f"imported {s.added} captions for {s.images} images in {len(s.runs)} run(s); "
        f"{s.already_present} already present, {len(s.skipped)} lines skipped", err=True,
    )
    for line in skipped_report(s.skipped):
        typer.echo(line, err=True)
    if s.skipped and not s.imported_lines:
        raise typer.Exit(1)  # nothing in the file could be used
    embed_stored(store, embedder, quiet, embed=embed)


@app.command()
def embed(
    embedder: EmbedderOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    db: DbOption = None,
) -> None:
    """Embed the stored text for search by meaning (a library made by an older version, or a new
    --embedder); resumes where a killed run stopped."""
    with open_store(db) as store:
        if not store.has_captions():
            raise fail(f"no captions in {store.path} yet: run `mllmret caption PATH` first")
        embed_stored(store, embedder, quiet)
