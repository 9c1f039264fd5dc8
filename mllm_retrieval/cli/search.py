"""`mllmret search` (keyword, meaning, hybrid; `--like REF` composed queries) and `mllmret demo`."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from .. import config
from ..search.cutoff import MIN_RELATIVE, MIN_SIMILARITY
from ..search.modes import DEFAULT, Fusion
from ..search.query_args import QueryCommand
from .main import (
    DbOption,
    EmbedderOption,
    ModelFilter,
    RunOption,
    SearchMode,
    app,
    fail,
    open_store,
)


class Composer(str, Enum):
    rules = "rules"
    learned = "learned"


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
        "fused, refined by feedback (measured best: eval/RESULTS.md).")
    ] = SearchMode.hybrid,
    feedback: Annotated[bool | None, typer.Option(
        "--feedback/--no-feedback", help="Refine the query from the first results (their words join the "
        "keyword query, their meaning moves the semantic one) and rank again, printing the words it added "
        "[default: on in hybrid mode, off in keyword and semantic].", show_default=False)] = None,
    fusion: Annotated[Fusion, typer.Option(
        help="hybrid: how the keyword and meaning rankings are fused, combmnz (scores) or rrf (ranks).")
    ] = DEFAULT,
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
    from ..library.embed import SEARCH_BACKLOG
    from ..search.query import parse_query, why_empty
    from ..search.searcher import Searcher

    text = " ".join(query or [])
    if like is None:
        like_only = {"--add": add, "--caption-backend": caption_backend, "--caption-model": caption_model,
                     "--caption-prompt": caption_prompt, "--rewrite-with": rewrite_with,
                     "--rewrite-model": rewrite_model, "--composer learned": composer is Composer.learned,
                     "--composer-path": composer_path}
        given = [name for name, value in like_only.items() if value]
        if given:
            raise fail(f"{given[0]} goes with --like REF")
        parsed = parse_query(text)
        if parsed.empty:
            raise fail(why_empty(text))
    learned = None
    if like is not None and composer is Composer.learned:
        if mode is SearchMode.keyword:
            raise fail("--composer learned ranks by meaning: use --mode hybrid or semantic")
        learned = _load_composer(composer_path)
        if learned.kind == "encoder":  # the library is searched with the fine-tuned encoder's vectors
            embedder = embedder or str(learned.path)
    with open_store(db) as store:
        if not store.has_captions():
            raise fail(f"no captions in {store.path} yet: run `mllmret caption PATH` first")
        run_ids = store.select_runs(run, model)
        cut = (None, None) if more_meaning else (min_similarity, min_relative)
        searcher = Searcher(store, run_ids, engine, mode=mode.value, embedder=embedder, min_similarity=cut[0],
                            min_relative=cut[1], progress=True, max_backlog=SEARCH_BACKLOG,
                            feedback=feedback, fuse_with=fusion.value)
        if like is not None:
            from ..composed.like import LikeOptions, search_like_ref

            options = LikeOptions(add=add, caption_backend=caption_backend, caption_model=caption_model,
                                  caption_prompt=caption_prompt, rewrite_with=rewrite_with,
                                  rewrite_model=rewrite_model, rewrite_prompt=rewrite_prompt,
                                  rewrite_timeout=rewrite_timeout, composer=learned)
            result = search_like_ref(store, searcher, like, text, k, run_ids, options)
            return print_like(result, like, as_json, searcher, mode)
        results = searcher.search(parsed, k)
    print_notice(searcher)
    if not results:
        typer.echo(f"no images match {text!r}", err=True)
    print_results(results, as_json, mode)
    print_hidden(searcher)
    if searcher.suggested and not as_json:
        typer.echo(f"Related words (added by feedback): {' '.join(searcher.suggested)}", err=True)


def print_notice(searcher) -> None:
    """The one line saying that a search by meaning was answered by keyword (embeddings missing)."""
    if searcher.notice:
        typer.echo(f"Note: {searcher.notice}", err=True)


def print_hidden(searcher, err: bool = True) -> None:
    """The one line saying how many meaning-only results the cut-off left out."""
    if searcher.hidden:
        typer.echo(f"{searcher.hidden} more images hold no query word and are below the meaning cut-off: "
                   "--more-meaning shows them", err=err)


def print_results(results, as_json: bool, mode: SearchMode) -> None:
    for r in results:
        if as_json:
            typer.echo(json.dumps(r.to_dict(), ensure_ascii=False))
        else:
            typer.echo(format_result(r, via=mode is not SearchMode.keyword, mode=mode.value))


def print_like(result, like: str, as_json: bool, searcher, mode: SearchMode) -> None:
    """`search --like`: the composition (its warning on stderr), then the results."""
    print_notice(searcher)
    warning = result.composition.warning
    if warning:
        typer.echo(f"Warning: {warning}", err=True)
    if as_json:
        typer.echo(json.dumps(result.to_dict(results=False), ensure_ascii=False))
    else:
        typer.echo(format_composition(result))
    if not result.results:
        typer.echo(f"no images like {like} match {result.modification!r}", err=True)
        return
    print_results(result.results, as_json, mode)


def _load_composer(path: Path | None):
    """--composer-path, else the data dir's fine-tuned encoder if trained, else its TIRG checkpoint."""
    from ..composed.composer import load_composer
    from ..config import composer_path

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
    for label, words in c.words().items():
        lines.append(f"{label}: {', '.join(words) if words else '-'}")
    return "\n".join(lines)


def format_result(r, via: bool = False, mode: str | None = None) -> str:
    """One result as a table row: rank, image id, score, path, matched words, [how it matched,] tile.

    The score is BM25 in keyword mode, the similarity in semantic mode, the fused score in hybrid;
    the tile is named by where it lies ("top left"; `--json` has its box); words found in text read in
    the photo are named after it."""
    where = r.tile_name or r.tile_key or "-"
    if r.in_photo:
        where = f"{where}  text in photo: {', '.join(r.in_photo)}"
    if r.in_metadata:
        where = f"{where}  in photo metadata: {', '.join(r.in_metadata)}"
    if not via:
        return (f"{r.rank:>3}  #{r.image_id:<5} {r.score:7.3f}  {r.path or r.external_id}  "
                f"[{', '.join(r.matched)}]  {where}")
    score = r.similarity if mode == "semantic" and r.similarity is not None else r.score
    sim = "" if r.similarity is None else f" {r.similarity:.2f}"
    return (f"{r.rank:>3}  #{r.image_id:<5} {score:7.4f}  {r.path or r.external_id}  "
            f"[{', '.join(r.matched)}]  {r.via}{sim}  {where}")


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
    from ..library.sample import QUERIES, load_sample, sample_images_dir
    from ..library.store import Store
    from ..search.searcher import Searcher

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
            print_hidden(searcher, err=False)
    print_notice(searcher)  # e.g. answered by keyword: a keyword-only install
    typer.echo("\nNext: `mllmret caption ~/Pictures` describes your own photos with a local model.")
