"""mllmret: caption photos with a multimodal LLM, then search them by keyword."""

from __future__ import annotations

import json
import logging
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from . import config
from .cutoff import MIN_RELATIVE, MIN_SIMILARITY
from .defaults import CAPTION_BATCH, MAX_NEW_TOKENS
from .errors import MllmretError
from .query_args import QueryCommand


class _Group(TyperGroup):
    """Typed errors become one line on stderr; Ctrl-C says that stored work is kept."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MllmretError as e:
            typer.echo(f"Error: {e}", err=True)
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


def _store(db: Path | None):
    from .store import Store

    return Store(db or config.db_path())


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(code)


@app.callback()
def _root(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details.")] = False):
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@app.command()
def caption(
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
    base_url: Annotated[str | None, typer.Option(
        envvar="MLLMRET_BASE_URL", help="openai: server URL, e.g. http://127.0.0.1:8000/v1.")] = None,
    api_key: Annotated[str | None, typer.Option(
        envvar="MLLMRET_API_KEY", help="openai: API key (or OPENAI_API_KEY).", show_default=False,
    )] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="openai: requests in flight.")] = 4,
    timeout: Annotated[float, typer.Option(help="openai: seconds per request.")] = 120.0,
    retries: Annotated[int, typer.Option(min=0, help="openai: retries on 429/5xx/timeouts.")] = 4,
    captions: Annotated[Path | None, typer.Option(
        help="import: the JSONL file of captions made elsewhere.")] = None,
    force: Annotated[bool, typer.Option(help="Caption again what this run already has.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Count what is new, time one batch on the model, print the estimate; "
        "store nothing.")] = False,
    ocr: Annotated[bool, typer.Option(
        "--ocr", help="Also read the text in each photo (OCR, [ocr] extra).")] = False,
    ocr_only: Annotated[bool, typer.Option(
        "--ocr-only", help="Only read the text in each photo: no M-LLM.")] = False,
    ocr_grid: Annotated[str, typer.Option(
        help="OCR: tiles to read besides the whole photo (2x2 found 72% of labelled words, not 66%, "
        "at 4.3x the time).")] = "none",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    no_embed: NoEmbed = False,
    embedder: EmbedderOption = None,
    db: DbOption = None,
) -> None:
    """Describe every image and tile under PATHS with an M-LLM, store the text and embed it.

    Rerunning the same command resumes; a new model or prompt makes a new run beside the old one.
    --ocr / --ocr-only add an OCR run (text read in the photos) to the library, new or existing.
    """
    from .captioners import get_captioner
    from .pipeline import caption_paths
    from .prompts import load_prompt

    if backend == "import":
        if captions is None:
            raise _fail("--backend import needs --captions FILE.jsonl")
        return import_(captions, images=paths[0] if paths else None, model=model, no_embed=no_embed,
                       embedder=embedder, db=db)
    reader = _ocr_engine() if ocr or ocr_only else None
    if ocr_only:
        with _store(db) as store:
            _ocr(store, paths, reader, force, quiet, ocr_grid)
            return _embed(store, embedder, quiet, embed=not no_embed)
    captioner = get_captioner(
        backend, model=model, device=device.value, dtype=dtype.value,
        quantize=None if quantize is Quantize.none else quantize.value,
        max_new_tokens=max_new_tokens, base_url=base_url, api_key=api_key,
        concurrency=concurrency, timeout=timeout, retries=retries,
        image_splitting=image_splitting.resolve(grid),
    )
    if dry_run:
        return _dry_run(db, paths, captioner, load_prompt(prompt), grid, overlap, batch_size)
    with _store(db) as store:
        summary = caption_paths(
            store, paths, captioner, load_prompt(prompt), grid=grid, overlap=overlap,
            batch_size=batch_size, force=force, progress=not quiet,
        )
        _print_summary(summary)
        if reader is not None:
            _ocr(store, paths, reader, force, quiet, ocr_grid)
        _embed(store, embedder, quiet, embed=not no_embed)


def _embed(store, embedder: str | None, quiet: bool, embed: bool = True) -> None:
    """The indexing step of caption/import/embed: the keyword index, then vectors for every image text
    that has none (unless `embed` is False)."""
    from .library_embedding import embed_library

    s = embed_library(store, embedder, progress=not quiet, embed=embed)
    if s is None:
        return
    typer.echo(f"embedded {s.embedded} images for search by meaning ({s.images} in all, {s.embedder})",
               err=True)


def _dry_run(db: Path | None, paths: list[Path], captioner, prompt, grid: str, overlap: float,
             batch_size: int) -> None:
    from .estimate import describe_estimate, estimate
    from .store import Store

    path = db or config.db_path()
    store = Store(path) if path.exists() else None
    try:
        est = estimate(store, paths, captioner, prompt, grid=grid, overlap=overlap, batch_size=batch_size)
    finally:
        if store is not None:
            store.close()
    for line in describe_estimate(est, grid):
        typer.echo(line)
    for item in est.skipped:
        typer.echo(f"  skipped {item.path}: {item.reason}", err=True)


def _ocr_engine():
    from .ocr import OcrEngine

    return OcrEngine()


def _ocr(store, paths: list[Path], reader, force: bool, quiet: bool, grid: str) -> None:
    from .ocr_pipeline import ocr_paths

    summary = ocr_paths(store, paths, reader, force=force, progress=not quiet, grid=grid)
    _print_summary(summary, "read text in")


def _print_summary(s, verb: str = "captioned") -> None:
    typer.echo(
        f"run {s.run_id}: {verb} {s.captioned_images} images ({s.captioned_tiles} tiles) in "
        f"{s.seconds:.1f}s ({s.images_per_second:.2f} images/s); {s.already_done} already "
        f"captioned, {s.duplicates} duplicate files, {len(s.failed)} skipped",
        err=True,
    )
    for item in s.failed:
        typer.echo(f"  skipped {item.path}: {item.reason}", err=True)


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="JSONL: path|file_name|image_id, text, ...")],
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
    from .jsonl import import_jsonl, skipped_report

    with _store(db) as store:
        s = import_jsonl(store, file, images_dir=images, model=model, progress=not quiet)
        typer.echo(
            f"imported {s.added} captions for {s.images} images in {len(s.runs)} run(s); "
            f"{s.already_present} already present, {len(s.skipped)} lines skipped", err=True,
        )
        for line in skipped_report(s.skipped):
            typer.echo(line, err=True)
        if s.skipped and not s.imported_lines:
            raise typer.Exit(1)  # nothing in the file could be used
        _embed(store, embedder, quiet, embed=not no_embed)


@app.command()
def embed(
    embedder: EmbedderOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    db: DbOption = None,
) -> None:
    """Embed the stored text for search by meaning (a library made by an older version, or a new
    --embedder); resumes where a killed run stopped."""
    with _store(db) as store:
        if not store.has_captions():
            raise _fail(f"no captions in {store.path} yet: run `mllmret caption PATH` first")
        _embed(store, embedder, quiet)


@app.command()
def export(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File [default: stdout].")
                      ] = None,
    run: RunOption = None,
    model: ModelFilter = None,
    db: DbOption = None,
) -> None:
    """Write captions as JSONL, one line per tile caption; `mllmret import` reads it back."""
    from .jsonl import export_jsonl

    with _store(db) as store:
        run_ids = store.select_runs(run, model)
        if output is None:
            n = export_jsonl(store, sys.stdout, run_ids)
        else:
            try:
                with output.open("w", encoding="utf-8") as f:
                    n = export_jsonl(store, f, run_ids)
            except OSError as e:
                raise _fail(f"cannot write {str(output)!r}: {e.strerror or e}") from None
    typer.echo(f"exported {n} captions", err=True)


class ComposerKind(str, Enum):
    tirg = "tirg"
    encoder = "encoder"


class Composer(str, Enum):
    rules = "rules"
    learned = "learned"


class SearchMode(str, Enum):
    keyword = "keyword"
    semantic = "semantic"
    hybrid = "hybrid"


@app.command(cls=QueryCommand)
def search(
    query: Annotated[list[str] | None, typer.Argument(
        help='Words to find. "a phrase" must match as written, +word must appear, -word must not. '
        'With --like: the modification ("without the leash, on a beach").', show_default=False)] = None,
    k: Annotated[int, typer.Option("-k", "--limit", min=1, help="How many results.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
    mode: Annotated[SearchMode, typer.Option(
        envvar="MLLMRET_SEARCH_MODE",
        help="keyword: BM25 only (fastest start); semantic: sentence-embedding similarity; hybrid: both, "
        "fused (RRF).")
    ] = SearchMode.hybrid,
    embedder: EmbedderOption = None,
    min_similarity: Annotated[float, typer.Option(
        help="semantic/hybrid: leave out meaning-only results (no query word) less similar than this "
        "(cosine); -1 keeps every image (as `mllmret eval` ranks).")
    ] = MIN_SIMILARITY,
    min_relative: Annotated[float, typer.Option(
        help="semantic/hybrid: also leave out meaning-only results less similar than this share of the "
        "query's best similarity; 0 turns it off.")
    ] = MIN_RELATIVE,
    more_meaning: Annotated[bool, typer.Option(
        "--more-meaning", help="Also show the meaning-only results below the cut-off (\"more like this "
        "meaning\").")] = False,
    run: RunOption = None,
    model: ModelFilter = None,
    engine: Annotated[str, typer.Option(help="sparse (fast, default) or rank-bm25 (reference).")] = "sparse",
    like: Annotated[str | None, typer.Option(
        "--like", metavar="REF", help="Like this photo, but …: REF is an image id (as --json prints it), a "
        "file path the library holds, or a new image file (captioned now with the library's latest "
        "captioner, not stored unless --add). The words are the modification: what to add, remove "
        '("without the leash", "no people") or replace ("a cat instead of the dog"). The reference is '
        "never among the results.", rich_help_panel="Like this photo, but …")] = None,
    add: Annotated[bool, typer.Option(
        "--add", help="With --like FILE: also store the new image in the library (full image and tiles, "
        "as `mllmret caption` does).", rich_help_panel="Like this photo, but …")] = False,
    caption_backend: Annotated[str | None, typer.Option(
        help="With --like FILE: captioning backend for the new image [default: the latest run's].",
        rich_help_panel="Like this photo, but …")] = None,
    caption_model: Annotated[str | None, typer.Option(
        help="With --like FILE: captioning model [default: the latest run's].",
        rich_help_panel="Like this photo, but …")] = None,
    caption_prompt: Annotated[str | None, typer.Option(
        help="With --like FILE: caption prompt name or file [default: the latest run's prompt].",
        rich_help_panel="Like this photo, but …")] = None,
    rewrite_with: Annotated[str | None, typer.Option(
        metavar="URL", help="With --like: have an LLM on an OpenAI-compatible server rewrite reference + "
        "modification into one description of the wanted photo, used as the query; URL/v1/MODEL, e.g. "
        "http://127.0.0.1:8080/v1/llama3 (key: MLLMRET_API_KEY or OPENAI_API_KEY). If it fails, a "
        "warning and the rule-based composition.", rich_help_panel="Like this photo, but …")] = None,
    rewrite_model: Annotated[str | None, typer.Option(
        help="The model for --rewrite-with when its URL has no /v1/MODEL.",
        rich_help_panel="Like this photo, but …")] = None,
    rewrite_prompt: Annotated[str, typer.Option(
        help="Rewrite prompt name or file, with {caption} and {modification}.",
        rich_help_panel="Like this photo, but …")] = "rewrite",
    rewrite_timeout: Annotated[float, typer.Option(
        min=0.1, help="Seconds to wait for the rewrite (one retry at most).",
        rich_help_panel="Like this photo, but …")] = 30.0,
    composer: Annotated[Composer, typer.Option(
        help="With --like: rules = edit-aware word composition; learned = also rank by meaning with the "
        "vector of a trained composer (`mllmret train-composer`), in semantic/hybrid mode.",
        rich_help_panel="Like this photo, but …")] = Composer.rules,
    composer_path: Annotated[Path | None, typer.Option(
        help="Checkpoint for --composer learned: a fine-tuned encoder folder or a TIRG .safetensors "
        "[default: the data dir's composers/fashioniq-encoder, else composers/fashioniq.safetensors].",
        rich_help_panel="Like this photo, but …")] = None,
    db: DbOption = None,
) -> None:
    """Rank images by their tags and captions (BM25, meaning, or both), with the matched words and tile.

    `--like REF words…` searches for images like REF, changed as the words say: REF's words are kept
    (at half weight) unless the words remove them ("without X", "no X", "Y instead of X", -X), the
    words' own additions count fully, removed words are excluded, and REF itself is left out;
    --rewrite-with has an LLM write the query instead. Example:

    \b
      mllmret search --like 42 without the leash, on a beach
      mllmret search --like ~/new.jpg --add a cat instead of the dog
    """
    from .library_embedding import SEARCH_BACKLOG
    from .query import parse_query, why_empty
    from .search import Searcher

    text = " ".join(query or [])
    if like is None:
        like_only = {"--add": add, "--caption-backend": caption_backend, "--caption-model": caption_model,
                     "--caption-prompt": caption_prompt, "--rewrite-with": rewrite_with,
                     "--rewrite-model": rewrite_model, "--composer learned": composer is Composer.learned,
                     "--composer-path": composer_path}
        given = [name for name, value in like_only.items() if value]
        if given:
            raise _fail(f"{given[0]} goes with --like REF")
        parsed = parse_query(text)
        if parsed.empty:
            raise _fail(why_empty(text))
    learned = None
    if like is not None and composer is Composer.learned:
        if mode is SearchMode.keyword:
            raise _fail("--composer learned ranks by meaning: use --mode hybrid or semantic")
        learned = _load_composer(composer_path)
        if learned.kind == "encoder":  # the library is searched with the fine-tuned encoder's vectors
            embedder = embedder or str(learned.path)
    with _store(db) as store:
        if not store.has_captions():
            raise _fail(f"no captions in {store.path} yet: run `mllmret caption PATH` first")
        run_ids = store.select_runs(run, model)
        cut = (None, None) if more_meaning else (min_similarity, min_relative)
        searcher = Searcher(store, run_ids, engine, mode=mode.value, embedder=embedder, min_similarity=cut[0],
                            min_relative=cut[1], progress=True, max_backlog=SEARCH_BACKLOG)
        if like is not None:
            return _search_like(store, searcher, run_ids, like, text, k, as_json, mode, add=add,
                                caption_backend=caption_backend, caption_model=caption_model,
                                caption_prompt=caption_prompt, rewrite_with=rewrite_with,
                                rewrite_model=rewrite_model, rewrite_prompt=rewrite_prompt,
                                rewrite_timeout=rewrite_timeout,
                                composer=learned)
        results = searcher.search(parsed, k)
    _print_notice(searcher)
    if not results:
        typer.echo(f"no images match {text!r}", err=True)
    _print_results(results, as_json, mode)
    _print_hidden(searcher)


def _print_notice(searcher) -> None:
    """The one line saying that a search by meaning was answered by keyword (embeddings missing)."""
    if searcher.notice:
        typer.echo(f"Note: {searcher.notice}", err=True)


def _print_hidden(searcher, err: bool = True) -> None:
    """The one line saying how many meaning-only results the cut-off left out."""
    if searcher.hidden:
        typer.echo(f"{searcher.hidden} more images hold no query word and are below the meaning cut-off: "
                   "--more-meaning shows them", err=err)


def _print_results(results, as_json: bool, mode: SearchMode) -> None:
    for r in results:
        if as_json:
            typer.echo(json.dumps(r.to_dict(), ensure_ascii=False))
        else:
            typer.echo(format_result(r, via=mode is not SearchMode.keyword, mode=mode.value))


def _search_like(store, searcher, run_ids, like: str, modification: str, k: int, as_json: bool,
                 mode: SearchMode, *, add: bool, caption_backend: str | None, caption_model: str | None,
                 caption_prompt: str | None, rewrite_with: str | None, rewrite_model: str | None,
                 rewrite_prompt: str, rewrite_timeout: float, composer=None) -> None:
    """`search --like`: resolve the reference, compose, search, print the composition then the results.

    `composer` is None for the rules alone, else a loaded learned composer (composed.composer)."""
    from .composed.like import resolve_reference, search_like
    from .composed.rewrite import Rewriter

    learned = composer

    rewriter = None
    if rewrite_with is not None:  # a bad URL or prompt is an error before any captioning
        rewriter = Rewriter.from_spec(rewrite_with, rewrite_model, prompt=rewrite_prompt,
                                      timeout=rewrite_timeout)
    elif rewrite_model is not None:
        raise _fail("--rewrite-model goes with --rewrite-with URL")
    reference = resolve_reference(store, like, run_ids, backend=caption_backend, model=caption_model,
                                  prompt=caption_prompt, add=add)
    vector = None
    if learned is not None:
        vector = learned.query_vector(searcher.semantic.embedder, reference.text, modification)
    if reference.source == "added":  # stored now: embedded now, as `mllmret caption` would
        from .library_embedding import embed_library

        embed_library(store, searcher.semantic.embedder)
    result = search_like(searcher, reference, modification, k, rewriter=rewriter, query_vector=vector)
    _print_notice(searcher)
    warning = result.composition.warning
    if warning:
        typer.echo(f"Warning: {warning}", err=True)
    if as_json:
        typer.echo(json.dumps(result.to_dict(results=False), ensure_ascii=False))
    else:
        typer.echo(format_composition(result))
    if not result.results:
        typer.echo(f"no images like {like} match {modification!r}", err=True)
        return
    _print_results(result.results, as_json, mode)


def _load_composer(path: Path | None):
    """--composer-path, else the data dir's fine-tuned encoder if trained, else its TIRG checkpoint."""
    from .composed.composer import load_composer
    from .config import composer_path

    if path is None:
        encoder = composer_path("encoder")
        path = encoder if encoder.is_dir() else composer_path("tirg")
    return load_composer(path)


def format_composition(result) -> str:
    """The lines before composed-search results: the reference and what became of its words."""
    ref, c = result.reference, result.composition
    where = {"library": "", "captioned": " (new file, captioned now, not stored; --add stores it)",
             "added": " (new file, now added to the library)"}[ref.source]
    name = f"#{ref.image_id} {ref.path}" if ref.image_id is not None else str(ref.path)
    lines = [f"reference: {name}{where}"]
    if c.rewrite is not None:
        lines.append(f"rewrite: {c.rewrite}")
    parts = (("kept", c.kept), ("dropped", c.dropped), ("added", c.added), ("excluded", c.exclude))
    for label, words in parts:
        lines.append(f"{label}: {', '.join(words) if words else '-'}")
    return "\n".join(lines)


def format_result(r, via: bool = False, mode: str | None = None) -> str:
    """One result as a table row: rank, image id, score, path, matched words, [how it matched,] tile.

    The score is BM25 in keyword mode, the similarity in semantic mode, the fused (RRF) score in hybrid;
    the tile is named by where it lies ("top left"; `--json` has its box); words found in text read in
    the photo are named after it."""
    where = r.tile_name or r.tile_key or "-"
    if r.in_photo:
        where = f"{where}  text in photo: {', '.join(r.in_photo)}"
    if not via:
        return (f"{r.rank:>3}  #{r.image_id:<5} {r.score:7.3f}  {r.path or r.external_id}  "
                f"[{', '.join(r.matched)}]  {where}")
    score = r.similarity if mode == "semantic" and r.similarity is not None else r.score
    sim = "" if r.similarity is None else f" {r.similarity:.2f}"
    return (f"{r.rank:>3}  #{r.image_id:<5} {score:7.4f}  {r.path or r.external_id}  "
            f"[{', '.join(r.matched)}]  {r.via}{sim}  {where}")


@app.command("eval")
def eval_(
    ctx: typer.Context,
    task: Annotated[str, typer.Option(help="retrieval (class names as queries) | composed (CIRR, ...).")] = (
        "retrieval"),
    dataset: Annotated[str | None, typer.Option(
        help="coco | voc | vlm; with --task composed: cirr | fashioniq | genecis (files under --data-dir).")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Evaluation data [default: ../shared/data].")] = None,
    annotations: Annotated[Path | None, typer.Option(help="Any COCO-format labels file.")] = None,
    captions: Annotated[Path | None, typer.Option(
        help="COCO-format human captions file; with --task composed --dataset cirr: blip2 | mllm.")] = None,
    voc_root: Annotated[Path | None, typer.Option(help="A PASCAL VOC folder (Annotations/*.xml).")] = None,
    voc_split: Annotated[str, typer.Option(help="VOC split under ImageSets/Main.")] = "val",
    source: Annotated[list[str] | None, typer.Option(help="human | db | jsonl:PATH; repeatable.")] = None,
    run: RunOption = None,
    model: Annotated[str | None, typer.Option(help="Only this model's text (db and jsonl).")] = None,
    per_model: Annotated[bool, typer.Option(help="Each model of a source is its own condition.")] = False,
    ablate: Annotated[bool, typer.Option(help="Add full-only, best-tile, tags-only, caption-only.")] = False,
    expand: Annotated[bool, typer.Option(help="Add a class names + synonyms condition.")] = False,
    prf: Annotated[bool, typer.Option(help="Add a pseudo-relevance-feedback condition (BM25).")] = False,
    modes: Annotated[str, typer.Option(help="Ranking modes, comma-separated: keyword,semantic,hybrid.")] = (
        "keyword"),
    embedder: Annotated[str | None, typer.Option(
        help="sentence-transformers model for semantic/hybrid [default: the packaged all-MiniLM-L6-v2].")
    ] = None,
    baseline: Annotated[str | None, typer.Option(help="clip: add a CLIP baseline (needs --images).")] = None,
    images: Annotated[Path | None, typer.Option(help="Folder of the set's image files.")] = None,
    clip_model: Annotated[str | None, typer.Option(help="CLIP model for --baseline clip.")] = None,
    device: Annotated[Device, typer.Option(help="Where the CLIP baseline and the embedder run.")] = (
        Device.auto),
    out: Annotated[Path, typer.Option(help="Folder for results.json and PR plots.")] = Path("eval/out"),
    results_md: Annotated[Path | None, typer.Option(help="Generated markdown to write/update.")] = None,
    composer: Annotated[list[Path] | None, typer.Option(
        help="With --task composed: add the learned rows of this `mllmret train-composer` output (a TIRG "
        ".safetensors or an encoder folder); repeatable.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    db: DbOption = None,
) -> None:
    """Retrieval quality with class names as queries: AP, PR-AUC, PR curves; see eval/README.md."""
    from .evaluation import report as rep

    if task == "composed":
        from .composed import evaluate as ce

        result = ce.run_composed(dataset or "cirr", data_dir, str(captions) if captions else None,
                                 modes.split(","), embedder, device.value, not quiet, rep.command_line(ctx),
                                 composers=composer or ())
        typer.echo(ce.format_table(result))
        written = [ce.write_json(result, out / "results.json")]
        if results_md is not None:
            written.append(ce.update_markdown(result, results_md))
        typer.echo("wrote " + ", ".join(map(str, written)), err=True)
        return
    if task != "retrieval":
        raise MllmretError(f"--task is retrieval or composed, not {task!r}")
    if composer:
        raise MllmretError("--composer goes with --task composed")
    from .evaluation.runner import EvalConfig, run_eval

    result = run_eval(EvalConfig(
        dataset=dataset, data_dir=data_dir, annotations=annotations, captions=captions, voc_root=voc_root,
        voc_split=voc_split, sources=source or [], db=db, run=run, model=model, per_model=per_model,
        ablate=ablate, expand=expand, prf=prf, modes=modes.split(","), embedder=embedder, baseline=baseline,
        images=images, clip_model=clip_model, device=device.value, progress=not quiet,
        command=rep.command_line(ctx),
    ))
    typer.echo(rep.format_table(result))
    written = [rep.write_json(result, out / "results.json"), *rep.write_plots(result, out)]
    if results_md is not None:
        written.append(rep.update_markdown(result, results_md))
    typer.echo("wrote " + ", ".join(map(str, written)), err=True)


@app.command("train-composer")
def train_composer(
    data_dir: Annotated[Path | None, typer.Option(
        help="The composed-retrieval data (its fashioniq/ folder is read) [default: ../shared/data].")
    ] = None,
    kind: Annotated[ComposerKind, typer.Option(
        help="tirg: a small fusion head over frozen sentence vectors (seconds after embedding); encoder: "
        "fine-tune the sentence encoder itself on 'reference [SEP] modification' (better, ~9 CPU min per "
        "epoch; it then embeds the library too).")] = ComposerKind.tirg,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Where to write [default: composers/fashioniq.safetensors (tirg) or "
        "composers/fashioniq-encoder/ (encoder) in the data dir].")
    ] = None,
    epochs: Annotated[int | None, typer.Option(
        min=1, help="Passes over the training queries [default: tirg 12, encoder 4].")] = None,
    batch_size: Annotated[int | None, typer.Option(
        min=2, help="Queries per step, the in-batch negatives [default: tirg 256, encoder 128].")] = None,
    lr: Annotated[float | None, typer.Option(
        min=0.0, help="AdamW peak learning rate [default: tirg 1e-3, encoder 5e-5].")] = None,
    hidden: Annotated[int, typer.Option(min=1, help="Width of the gate and residual MLPs.")] = 512,
    holdout: Annotated[float, typer.Option(
        min=0.0, max=0.5, help="Fraction of training queries held out to pick the epoch.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    embedder: Annotated[str | None, typer.Option(
        envvar="MLLMRET_EMBEDDER", help="sentence-transformers model whose vectors are composed "
        "[default: the packaged all-MiniLM-L6-v2]; search and eval must use the same.")] = None,
    device: Annotated[Device, typer.Option(help="Where the embedder runs.")] = Device.auto,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train a learned composer on the FashionIQ train split, for `search --like --composer learned` and eval.

    Reads official/cap.*.train.json and the BLIP-2 captions of the train images (never the val split
    that `mllmret eval --task composed --dataset fashioniq` scores); 10% of the training queries pick
    the epoch."""
    from .composed import composer as cm
    from .composed.benchmarks import fashioniq_triplets
    from .config import composer_path
    from .embedding import Embedder

    triplets, files = fashioniq_triplets(data_dir, "train")
    typer.echo(f"{len(triplets)} training queries from {len(files) // 2} FashionIQ categories", err=True)
    trained_on = "FashionIQ train (" + ", ".join(sorted({t.group for t in triplets})) + ")"
    given = {k: v for k, v in {"epochs": epochs, "batch_size": batch_size, "lr": lr}.items() if v}
    if kind is ComposerKind.encoder:  # what is not given takes the trainer's own default
        composer, report = cm.finetune_encoder(
            triplets, embedder, out or composer_path("encoder"), holdout=holdout, seed=seed,
            progress=not quiet, trained_on=trained_on, **given)
        path, before = composer.path, "before fine-tuning"
    else:
        emb = Embedder(embedder, device=None if device is Device.auto else device.value)
        composer, report = cm.train_composer(triplets, emb, hidden=hidden, holdout=holdout, seed=seed,
                                             progress=not quiet, **given)
        composer.meta["trained_on"] = trained_on
        path, before = composer.save(out or composer_path("tirg")), "un-learned r+m"
    if report.holdout_r10:
        typer.echo(f"held-out R@10 (among {report.n_holdout} held-out targets): {before} "
                   f"{100 * report.baseline_r10:.1f}, learned {100 * max(report.holdout_r10):.1f} "
                   f"(epoch {report.best_epoch} of {composer.meta['epochs']})")
    typer.echo(f"embedding {report.embed_seconds:.0f} s, training {report.train_seconds:.0f} s; wrote {path}")


@app.command()
def stats(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    db: DbOption = None,
) -> None:
    """Counts of images, tiles and captions per run and model."""
    with _store(db) as store:
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
    from .prompts import available_prompts, load_prompt

    for name in available_prompts():
        typer.echo(f"{name}: {load_prompt(name).text.splitlines()[0]}")
    for name in available_prompts("rewrite"):
        typer.echo(f"{name} (rewrite prompt for `search --like … --rewrite-with`, not for captioning): "
                   f"{load_prompt(name, kind='rewrite').text.splitlines()[0]}")


@app.command()
def demo(
    query: Annotated[list[str] | None, typer.Argument(help="Queries to run [default: a few].")
                     ] = None,
    db: Annotated[Path | None, typer.Option(help="Database [default: demo.db in the data dir].")
                  ] = None,
    mode: Annotated[SearchMode, typer.Option(help="Search mode, as for `mllmret search`.")] = (
        SearchMode.hybrid),
) -> None:
    """Index the bundled sample photos (hand-written captions, no captioning model) and search them."""
    from .sample import QUERIES, load_sample, sample_images_dir
    from .search import Searcher
    from .store import Store

    path = db or config.data_dir() / "demo.db"
    flag = "" if mode is SearchMode.hybrid else f" --mode {mode.value}"
    with Store(path) as store:
        s = load_sample(store)
        typer.echo(f"indexed {s.images} photos from {sample_images_dir()} into {path} "
                   f"({s.added} new captions)")
        searcher = Searcher(store, mode=mode.value, min_similarity=MIN_SIMILARITY, min_relative=MIN_RELATIVE)
        for q in query or QUERIES:  # exactly what the printed command prints (same cut-off, -k 3)
            typer.echo(f"\n$ mllmret search {q!r} -k 3{flag} --db {path}")
            results = searcher.search(q, 3)
            for r in results:
                typer.echo(format_result(r, via=mode is not SearchMode.keyword, mode=mode.value))
            if not results:
                typer.echo(f"no images match {q!r}")
            _print_hidden(searcher, err=False)
    typer.echo("\nNext: `mllmret caption ~/Pictures` describes your own photos with a local model.")


@app.command()
def serve(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    host: Annotated[str, typer.Option(
        help="Address to bind. Anything but 127.0.0.1/localhost lets other machines see your photos.")
    ] = "127.0.0.1",
    mode: Annotated[SearchMode, typer.Option(
        envvar="MLLMRET_SEARCH_MODE", help="The page's search mode until you pick another (keyword, "
        "semantic or hybrid, as for `mllmret search`); the first search by meaning loads the embedder.")
    ] = SearchMode.hybrid,
    embedder: Annotated[str | None, typer.Option(
        envvar="MLLMRET_EMBEDDER", help="sentence-transformers model folder or id for semantic/hybrid "
        "[default: the packaged all-MiniLM-L6-v2].")] = None,
    db: DbOption = None,
) -> None:
    """Search and refine in a local web page (and a JSON API under /api); needs the `web` extra."""
    try:
        import uvicorn

        from .web import LOCAL_HOSTS, create_app, preflight
    except ImportError as e:
        raise _fail(f"the web page needs FastAPI and uvicorn ({e.name} is missing): "
                    "pip install 'mllm-retrieval[web]'") from None
    from .embedding import resolve_model

    path = (db or config.db_path()).absolute()
    preflight(path, host, port)
    if embedder is not None or mode is not SearchMode.keyword:
        resolve_model(embedder)  # a file, or no packaged model: say so now (a model loads on first use)
    if host not in LOCAL_HOSTS:
        typer.echo(f"Warning: listening on {host}: anyone who can reach this machine can search and "
                   "view your photos (there is no login).", err=True)
    state = "" if path.exists() else " (no database yet: the page says how to make one)"
    typer.echo(f"Serving {path}{state}; {mode.value} search by default\nOpen http://{host}:{port}/ in a "
               "browser; Ctrl-C stops.", err=True)
    app_ = create_app(path, allowed_hosts=None if host in LOCAL_HOSTS else ["*"], mode=mode.value,
                      embedder=embedder, embed_missing=True)
    uvicorn.run(app_, host=host, port=port, log_level="warning")


tags_app = typer.Typer(help="Keywords where photo tools look: XMP sidecars.", no_args_is_help=True)
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
    run: RunOption = None,
    model: ModelFilter = None,
    db: DbOption = None,
) -> None:
    """Write each captioned photo's tags into its XMP sidecar: dc:subject, lr:hierarchicalSubject mllmret|TAG.

    A person's keywords and description are kept; a later write replaces only ours. Photos changed since
    captioning, read-only sidecars and sidecars that are not XMP are skipped with a reason."""
    from .sidecars import write_sidecars

    with _store(db) as store:
        s = write_sidecars(store, paths or [], store.select_runs(run, model), naming=sidecar_name.value,
                           max_tags=max_tags, caption=caption, remove=remove, dry_run=dry_run)
    done = {(False, False): "wrote", (False, True): "deleted", (True, False): "would write",
            (True, True): "would delete"}
    for w in s.written:
        typer.echo(f"{done[dry_run, w.deleted]}\t{w.sidecar}\t{w.change.describe()}")
    typer.echo(f"{len(s.written)} sidecars {'to change' if dry_run else 'changed'}, {s.unchanged} unchanged, "
               f"{len(s.skipped)} skipped", err=True)
    for item in s.skipped:
        typer.echo(f"  skipped {item.path}: {item.reason}", err=True)
