"""Composed search, "like this photo, but …": a reference image plus a modification text.

`resolve_reference` turns what the user named into a `Reference`: an image of the library (its id, or a
file path the library holds, compared as absolute and resolved paths, else by content) with its stored
text, or a new image file captioned now — by default with the backend, model, prompt and settings of the
library's latest run — and added to the library only when asked (`add=True`).

`search_like` composes the reference text with the modification (`edits.compose`: reference words kept
at weight 0.5, words of the modification at 1.0, removed words excluded as -words are) and searches:
keyword ranking uses the weighted terms, semantic ranking embeds the composed text (or a given query
vector), and the reference itself is never returned. With a `rewrite.Rewriter`, an LLM's description of
the wanted image becomes the query instead (CIReVL-style); when it fails, the rules are used and the
result carries a warning.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..capture.captioners.base import Captioner, backend_options, backends, get_captioner
from ..capture.images import SUFFIXES, open_image, sha256_file
from ..capture.parsing import parse_output
from ..capture.prompts import DEFAULT_PROMPT, Prompt, load_prompt
from ..errors import ImageError, MllmretError
from ..library.store import Store
from ..search.documents import FULL, Unit, embedding_text, reference_text
from ..search.query import Query
from ..search.searcher import Result, Searcher
from ..search.text import surface_words, tokenize
from .edits import compose
from .rewrite import RewriteError, Rewriter

# settings of a run that a new reference is captioned with too (so that --add lands in the same run)
RUN_OPTIONS = ("max_new_tokens", "quantize", "base_url", "dtype", "image_splitting")
_NEG_OPERATOR = re.compile(r'(?<!\S)-"([^"]*)"?|(?<!\S)-(\w\S*)')
_OPERATOR_MARKS = re.compile(r'(?<!\S)\+(?=\S)|"')


@dataclass(frozen=True)
class Reference:
    """The image a composed query starts from; `image_id` is None when it is not in the library."""

    image_id: int | None
    path: str | None
    text: str
    source: str = "library"  # library | captioned (new file, captioned now) | added (new file, now stored)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"image_id": self.image_id, "path": self.path, "source": self.source, "text": self.text}


@dataclass(frozen=True)
class Composition:
    """What a composed query ranks with: terms and weights, excluded words, and the text to embed."""

    terms: tuple[str, ...]
    weights: tuple[float, ...]
    exclude: tuple[str, ...]
    kept: tuple[str, ...]  # reference words in the query
    dropped: tuple[str, ...]  # reference words left out
    added: tuple[str, ...]  # words that are not the reference's
    text: str
    rewrite: str | None = None  # the LLM's description, when it was used
    warning: str | None = None  # why the rewrite was not used
    shown: tuple[tuple[str, str], ...] = ()  # token -> the word as written (tokens are stems)

    def words(self) -> dict[str, list[str]]:
        """kept, dropped, added and excluded as a person wrote them (the lists hold index tokens)."""
        shown = dict(self.shown)
        lists = {"kept": self.kept, "dropped": self.dropped, "added": self.added, "excluded": self.exclude}
        return {k: [shown.get(t, t) for t in ts] for k, ts in lists.items()}

    def query(self) -> Query:
        """The composition as a search query (excluded words act as -words)."""
        excluded = set(self.exclude)
        return Query(terms=tuple(t for t in self.terms if t not in excluded), exclude=self.exclude,
                     text=self.text)

    def weight_map(self) -> dict[str, float]:
        """Term -> BM25 weight."""
        return dict(zip(self.terms, self.weights, strict=True))


@dataclass(frozen=True)
class LikeResult:
    """A composed search: the reference, how it was composed with the modification, and the results."""

    reference: Reference
    modification: str
    composition: Composition
    results: list[Result]

    def to_dict(self, results: bool = True) -> dict[str, Any]:
        """JSON-friendly form; `results=False` gives the composition alone (the CLI's first JSON line)."""
        c = self.composition
        out = {"reference": self.reference.to_dict(), "modification": self.modification, **c.words(),
               "query": c.text, "rewrite": c.rewrite, "warning": c.warning}
        if results:
            out["results"] = [r.to_dict() for r in self.results]
        return out


# references
def reference_captioner(store: Store, run_ids: Sequence[int] | None = None, backend: str | None = None,
                        model: str | None = None, prompt: str | None = None,
                        **options: Any) -> tuple[Captioner, Prompt]:
    """The captioner and prompt for a new reference image: those of the library's latest run, unless
    `backend`, `model` or `prompt` (a name or file) say otherwise; `options` go to the captioner."""
    run = store.latest_captioned_run(run_ids)
    backend = backend or (run.backend if run else "transformers")
    same = run is not None and backend == run.backend
    if backend not in backends():
        where = f"the library's latest run (run {run.id}: {run.backend} {run.model}) was" if same else ""
        raise MllmretError(f"{where or 'backend'} {backend!r} cannot caption a new image here: give "
                           f"--caption-backend ({', '.join(backends())}) and --caption-model")
    if same:
        declared = backend_options(backend)
        options = {**{k: run.params[k] for k in RUN_OPTIONS
                      if k in run.params and (declared is None or k in declared)}, **options}
    captioner = get_captioner(backend, model=model or (run.model if same else None), **options)
    if prompt is not None:
        chosen = load_prompt(prompt)
    elif same and (text := store.run_prompt(run.id)):
        chosen = Prompt(run.prompt_name or f"run-{run.id}", text)
    else:
        chosen = load_prompt(DEFAULT_PROMPT)
    return captioner, chosen


def image_text(store: Store, image_id: int, run_ids: Sequence[int] | None = None) -> str:
    """An image's stored tags and captions, of the full image (all its tiles when that has none)."""
    return reference_text(list(store.tile_texts(run_ids, [image_id], searchable=False)))


def resolve_reference(store: Store, ref: str | int | os.PathLike, run_ids: Sequence[int] | None = None,
                      *, captioner: Captioner | None = None, prompt: Prompt | str | None = None,
                      backend: str | None = None, model: str | None = None, add: bool = False,
                      grid: str = "2x2") -> Reference:
    """The reference image named by an id, a stored path or a new image file (see the module docstring).

    A new file is captioned with `captioner` (else `reference_captioner(store, run_ids, backend, model)`)
    and `prompt`; with `add` it goes through `pipeline.caption_paths` (tiles included) and is stored."""
    text = str(ref).strip()
    if isinstance(ref, int) or (text.isascii() and text.isdigit() and len(text) <= 18):
        image_id = int(text)
        if store.image_exists(image_id):
            return library_reference(store, image_id, run_ids)
        if not Path(text).is_file():
            raise MllmretError(f"--like {text}: no image with id {image_id} in the library (ids are what "
                               "`mllmret search --json` prints as image_id)")
    path = Path(text).expanduser()
    image_id = _stored_image(store, path)
    if image_id is not None:
        return library_reference(store, image_id, run_ids)
    if not path.exists():
        raise MllmretError(f"--like {text}: no such file, and no image of the library has this path or id")
    if not path.is_file():
        raise MllmretError(f"--like {text}: not a file (give one image)")
    if path.suffix.lower() not in SUFFIXES:
        raise MllmretError(f"--like {text}: not an image file type ({path.suffix or 'no suffix'})")
    try:
        image = open_image(path)
    except ImageError as e:
        raise MllmretError(f"--like {text}: {e}") from None
    if captioner is None:
        captioner, chosen = reference_captioner(store, run_ids, backend, model,
                                                prompt if isinstance(prompt, str) else None)
        prompt = prompt if isinstance(prompt, Prompt) else chosen
    elif not isinstance(prompt, Prompt):
        prompt = load_prompt(prompt or DEFAULT_PROMPT)
    absolute = str(path.absolute())
    if add:
        return _add(store, path, captioner, prompt, grid, run_ids)
    check = getattr(captioner, "check", None)
    if check is not None:
        check()
    [raw] = captioner.describe([image], prompt.text)
    parsed = parse_output(raw)
    described = embedding_text([Unit(FULL, parsed.tags, parsed.caption)])
    if not described:
        raise MllmretError(f"--like {text}: the captioner ({captioner.backend} {captioner.model_id}) said "
                           "nothing about it")
    return Reference(None, absolute, described, "captioned")


def _add(store: Store, path: Path, captioner: Captioner, prompt: Prompt, grid: str,
         run_ids: Sequence[int] | None) -> Reference:
    from ..capture.pipeline import CaptionSettings, caption_paths

    summary = caption_paths(store, [path], captioner, prompt, CaptionSettings(grid=grid), progress=False)
    if summary.failed:
        raise MllmretError(f"--like {path}: could not add it: {summary.failed[0].reason}")
    image_id = _stored_image(store, path)
    if image_id is None:
        raise MllmretError(f"--like {path}: captioned, but not found in the library afterwards")
    runs = None if run_ids is None else sorted({*run_ids, summary.run_id})
    ref = library_reference(store, image_id, runs)
    return Reference(ref.image_id, ref.path, ref.text, "added")


def library_reference(store: Store, image_id: int, run_ids: Sequence[int] | None = None) -> Reference:
    """An image of the library as a reference, from its stored text (an error if it has none)."""
    text = image_text(store, image_id, run_ids)
    if not text:
        which = "" if run_ids is None else " in the selected runs (--run/--model)"
        raise MllmretError(f"--like: image {image_id} has no tags or captions{which} to start from")
    row = store.image_row(image_id)
    return Reference(image_id, row["path"] or row["external_id"], text, "library")


def _stored_image(store: Store, path: Path) -> int | None:
    """The library image a file path names: its path as stored, the same file by resolved path, or the
    same content (sha256) when the file exists."""
    absolute, resolved = str(path.absolute()), str(path.resolve())
    for candidate in dict.fromkeys([absolute, resolved]):
        row = store.file_row(candidate)
        if row and row["image_id"] and row["status"] == "ok":
            return int(row["image_id"])
    for stored, image_id in store.files_named(path.name):
        if str(Path(stored).resolve()) == resolved:
            return int(image_id)
    if path.is_file():
        try:
            sha = sha256_file(path)
        except ImageError:
            return None
        known = store.image_with_sha(sha)
        if known:
            return known[0]
    return None


# composing and searching
def modification_text(modification: str) -> str:
    """The modification with search operators read as words: -word as "without word", +word as word."""
    text = _NEG_OPERATOR.sub(lambda m: f", without {m.group(1) or m.group(2)},", modification or "")
    return " ".join(_OPERATOR_MARKS.sub("", text).split())


def compose_like(reference_text: str, modification: str, rewriter: Rewriter | None = None) -> Composition:
    """The rule-based composition (`edits.compose`), or the rewriter's description when it gives one."""
    cq = compose(reference_text, modification_text(modification))
    rules = Composition(terms=cq.terms, weights=cq.weights, exclude=cq.exclude, kept=cq.kept,
                        dropped=cq.dropped, added=cq.added, text=cq.text, shown=cq.shown)
    if rewriter is None:
        return rules
    try:
        described = rewriter.rewrite(reference_text, modification)
    except RewriteError as e:
        return replace(rules, warning=f"rewrite failed ({e}); using the rule-based composition")
    words = list(dict.fromkeys(tokenize(described)))
    if not words:
        return replace(rules, warning=f"the rewrite {described!r} has no words to search for; using the "
                       "rule-based composition")
    ref = list(dict.fromkeys(tokenize(reference_text)))
    said = set(words)
    ref_set = set(ref)
    return Composition(terms=tuple(words), weights=(1.0,) * len(words),
                       exclude=tuple(t for t in cq.exclude if t not in said),
                       kept=tuple(t for t in ref if t in said),
                       dropped=tuple(t for t in ref if t not in said),
                       added=tuple(t for t in words if t not in ref_set), text=described, rewrite=described,
                       shown=tuple({**surface_words(described), **dict(cq.shown)}.items()))


@dataclass(frozen=True)
class LikeOptions:
    """How `search --like` makes its reference and its query, as the CLI's options say."""

    add: bool = False  # a new file is stored (and embedded), not only captioned
    caption_backend: str | None = None
    caption_model: str | None = None
    caption_prompt: str | None = None
    rewrite_with: str | None = None  # an OpenAI-compatible URL: an LLM writes the query
    rewrite_model: str | None = None
    rewrite_prompt: str = "rewrite"
    rewrite_timeout: float = 30.0
    composer: Any = None  # a loaded learned composer (composer.load_composer), else the rules alone


def search_like_ref(store: Store, searcher: Searcher, like: str, modification: str, k: int,
                    run_ids: Sequence[int] | None = None, options: LikeOptions = LikeOptions()) -> LikeResult:
    """`search --like REF words…`: resolve REF (an id, a stored path or a new file), compose, search."""
    rewriter = None
    if options.rewrite_with is not None:  # a bad URL or prompt is an error before any captioning
        rewriter = Rewriter.from_spec(options.rewrite_with, options.rewrite_model,
                                      prompt=options.rewrite_prompt, timeout=options.rewrite_timeout)
    elif options.rewrite_model is not None:
        raise MllmretError("--rewrite-model goes with --rewrite-with URL")
    reference = resolve_reference(store, like, run_ids, backend=options.caption_backend,
                                  model=options.caption_model, prompt=options.caption_prompt, add=options.add)
    vector = None
    if options.composer is not None:
        vector = options.composer.query_vector(searcher.semantic.embedder, reference.text, modification)
    if reference.source == "added":  # stored now: embedded now, as `mllmret caption` would
        from ..library.embed import embed_library

        embed_library(store, searcher.semantic.embedder)
    return search_like(searcher, reference, modification, k, rewriter=rewriter, query_vector=vector)


def search_like(searcher: Searcher, reference: Reference, modification: str, k: int = 10,
                mode: str | None = None, rewriter: Rewriter | None = None,
                query_vector: np.ndarray | None = None) -> LikeResult:
    """Images like the reference, changed as the modification says; never the reference itself.

    `query_vector` replaces the embedded composed text in semantic and hybrid modes (a learned composer's
    output, in the embedder's space); keyword ranking still uses the composed terms."""
    composition = compose_like(reference.text, modification, rewriter)
    q = composition.query()
    if q.empty and (query_vector is None or (mode or searcher.mode) == "keyword"):
        raise MllmretError("nothing left to search for: the modification removes every word of the "
                           "reference and adds none")
    skip = () if reference.image_id is None else (reference.image_id,)
    results = searcher.search(q, k, mode, weights=composition.weight_map(), exclude_ids=skip,
                              query_vector=query_vector)
    return LikeResult(reference, modification, composition, results)
