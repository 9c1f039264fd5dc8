"""What an image's text is, for everything that reads it: the one document model.

A unit is one tile's text from one run: its tile key, tags, caption and kind ("caption", or "ocr" for text
read in the photo). From an image's units come its keyword document (tokens, for BM25), its embedding
text (for the semantic index), its per-tile tokens (matched words, phrases, the best tile) and the tags a
result card shows. The keyword index, the semantic index, the searcher, evaluation, `search --like` and
the web page all build from these functions, so what `eval` measures is what `search` ranks.

DOCUMENT_VERSION names what these functions return: saved indexes are keyed by it, so changing what goes
into a document is one edit here and one bump of DOCUMENT_VERSION.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..capture.ocr import KIND as OCR
from ..capture.ocr import ocr_tokens
from ..capture.tiling import Box
from .text import surface_words, tokenize

DOCUMENT_VERSION = 1
FULL = "full"  # the tile key of the whole image
METADATA = "metadata"  # the kind of a person's own keywords and descriptions (metadata/read.py)


class TextUnit(Protocol):
    """One tile's text from one run, as the store (`TileText`) and evaluation sources (`Unit`) hold it."""

    tile_key: str
    tags: Sequence[str]
    caption: str
    kind: str


@dataclass(frozen=True)
class Unit:
    """A unit that is not (yet) in a store: a new photo's answer, an evaluation source's text."""

    tile_key: str
    tags: tuple[str, ...]
    caption: str
    kind: str = "caption"


@dataclass(frozen=True)
class TileTokens:
    """One tile's tokens (all selected runs), for matched words, phrases and the best tile."""

    key: str
    box: Box | None
    tokens: tuple[str, ...]
    in_photo: frozenset[str] = frozenset()  # the tokens that OCR read in the photo
    in_metadata: frozenset[str] = frozenset()  # the tokens of a person's keywords and descriptions


def unit_tokens(u: TextUnit) -> list[str]:
    """The tokens a unit contributes: its tags, then its caption (OCR text: see ocr.ocr_tokens)."""
    if u.kind == OCR:
        return ocr_tokens(u.caption)
    return tokenize(" , ".join(u.tags)) + tokenize(u.caption)


def keyword_document(units: Iterable[TextUnit]) -> list[str]:
    """One image's BM25 document: every unit's tokens, in unit order."""
    return [t for u in units for t in unit_tokens(u)]


def embedding_text(units: Iterable[TextUnit]) -> str:
    """One image's text to embed: all tags (deduplicated), then captions, each once.

    Tags come first so that a long image (many tiles, runs or captions) keeps its keywords when the model
    truncates; captions follow in unit order (the full image's first)."""
    units = list(units)
    tags = dict.fromkeys(t.strip() for u in units for t in u.tags if t.strip())
    captions = dict.fromkeys(u.caption.strip() for u in units if u.caption.strip())
    head = ", ".join(tags) + "." if tags else ""
    return " ".join([head, *captions]).strip()


def reference_text(units: Sequence[TextUnit]) -> str:
    """What a `--like` reference says about itself: its full image's text, else all its tiles'."""
    return embedding_text(u for u in units if u.tile_key == FULL) or embedding_text(units)


def by_image(texts: Iterable) -> dict[int, list]:
    """The store's `TileText`s grouped per image id, in their order."""
    out: dict[int, list] = {}
    for t in texts:
        out.setdefault(t.image_id, []).append(t)
    return out


def keyword_documents(texts: Iterable) -> dict[int, list[str]]:
    """One keyword document per image from the store's `TileText`s."""
    return {i: keyword_document(units) for i, units in by_image(texts).items()}


def embedding_texts(texts: Iterable) -> dict[int, str]:
    """One embedding text per image from the store's `TileText`s; images without any text are left out."""
    out = {i: embedding_text(units) for i, units in by_image(texts).items()}
    return {i: s for i, s in out.items() if s}


def tile_documents(texts: Iterable) -> dict[int, list[TileTokens]]:
    """Per image, each tile's tokens over the selected runs (and which of them OCR read in the photo)."""
    by_tile: dict[tuple[int, int], tuple[str, Box | None, list[str], set[str], set[str]]] = {}
    for t in texts:
        entry = by_tile.setdefault((t.image_id, t.tile_id), (t.tile_key, t.box, [], set(), set()))
        tokens = unit_tokens(t)
        entry[2].extend(tokens)
        if t.kind in (OCR, METADATA):
            entry[3 if t.kind == OCR else 4].update(tokens)
    out: dict[int, list[TileTokens]] = {}
    for (image_id, _), (key, box, tokens, read, given) in by_tile.items():
        out.setdefault(image_id, []).append(
            TileTokens(key, box, tuple(tokens), frozenset(read), frozenset(given)))
    return out


# Caption words too vague to refine by, when an image has no tags to show.
VAGUE = frozenset("one two three four five several various many some other left right side front back "
                  "feature featuring placed positioned located seems overall scene view can".split())


def clean_tag(tag: str) -> str:
    """A tag as a chip shows it and a query can hold it: lowercase, one line, no double quotes."""
    return " ".join(str(tag).replace('"', " ").lower().split())[:60]


def display_tags(units: Iterable[TextUnit], limit: int) -> list[str]:
    """The tags a result card shows: most frequent first (the whole image's on ties), else caption words."""
    tags: Counter = Counter()
    words: Counter = Counter()
    for u in sorted(units, key=lambda u: u.tile_key != FULL):  # stable: ties go to the whole image
        tags.update(clean_tag(t) for t in u.tags if clean_tag(t))
        words.update(w for w in surface_words(u.caption).values()  # as written, not stemmed
                     if w not in VAGUE and not w.isdigit())
    return [t for t, _ in (tags or words).most_common(limit)]
