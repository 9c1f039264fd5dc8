"""How a condition's text becomes scores: documents per variant, BM25 (+PRF), semantic and hybrid matrices.

Every function returns one row per query and one column per evaluation image; -inf marks an image a
ranking does not hold (no matching word for BM25, no text at all for the semantic ranking).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..search import fusion
from ..search.documents import FULL, Unit, embedding_text, keyword_document
from ..search.expansion import PRF_DOCS, expanded_query, prf_terms
from ..search.index.sparse_engine import SparseEngine
from ..search.text import tokenize
from .sources import SourceText

VIEWS = {"all": "full + tiles", "full": "full image only"}
FIELDS = {"both": "tags + caption", "tags": "tags only", "caption": "caption only"}
UNITS = {"image": "image document", "tile": "best tile"}


@dataclass(frozen=True)
class Variant:
    """How a source's units become documents: which tiles, which fields, image or tile documents."""

    view: str = "all"
    fields: str = "both"
    unit: str = "image"

    @property
    def label(self) -> str:
        """Human-readable name, e.g. "full + tiles, tags + caption, image document"."""
        return f"{VIEWS[self.view]}, {FIELDS[self.fields]}, {UNITS[self.unit]}"


def variants(src: SourceText, ablate: bool) -> list[Variant]:
    """The default variant, plus one-factor-at-a-time ablations that apply to this source."""
    out = [Variant()]
    if ablate and src.has_tiles:
        out += [Variant(view="full"), Variant(unit="tile")]
    if ablate and src.has_tags:
        out += [Variant(fields="tags"), Variant(fields="caption")]
    return out


def _groups(src: SourceText, variant: Variant):
    """(evaluation image id, its units as the variant sees them) of each document of a condition."""
    tags_on, caption_on = variant.fields in ("both", "tags"), variant.fields in ("both", "caption")
    for image_id, units in src.units.items():
        groups: dict[str, list[Unit]] = {}
        for u in units:
            if variant.view == "full" and u.tile_key != FULL:
                continue
            key = u.tile_key if variant.unit == "tile" else "image"
            groups.setdefault(key, []).append(
                Unit(u.tile_key, u.tags if tags_on else (), u.caption if caption_on else "", u.kind))
        for group in groups.values():
            yield image_id, group


def documents(src: SourceText, variant: Variant) -> tuple[list[str], list[list[str]]]:
    """(evaluation image id, tokens) of each document of a condition; empty documents are left out."""
    return _built(src, variant, keyword_document)


def text_documents(src: SourceText, variant: Variant) -> tuple[list[str], list[str]]:
    """(evaluation image id, text to embed) of each document, built as the semantic index builds it."""
    return _built(src, variant, embedding_text)


def _built(src: SourceText, variant: Variant, build: Callable[[list[Unit]], Any]) -> tuple[list[str], list]:
    """(owners, documents) of a condition with one builder of the document model; empty ones left out."""
    built = ((image_id, build(group)) for image_id, group in _groups(src, variant))
    pairs = [(image_id, doc) for image_id, doc in built if doc]
    return [o for o, _ in pairs], [d for _, d in pairs]


def _owner_index(image_ids: tuple[str, ...], owners: list[str]) -> np.ndarray:
    position = {i: n for n, i in enumerate(image_ids)}
    return np.fromiter((position[o] for o in owners), dtype=np.int64, count=len(owners))


def score_matrix(image_ids: tuple[str, ...], owners: list[str], docs: list[list[str]],
                 queries: dict[str, str], progress: bool = False, desc: str = "", prf: bool = False
                 ) -> np.ndarray:
    """BM25 score of every image for every query (rows), max over an image's documents; -inf: no match.

    prf: each query is expanded with the top words of its first PRF_DOCS documents (expansion.py)."""
    from tqdm import tqdm

    owner_index = _owner_index(image_ids, owners)
    engine = SparseEngine()
    engine.add(docs)
    out = np.full((len(queries), len(image_ids)), -np.inf)
    bar = tqdm(list(queries.values()), desc=desc[:60], unit="query", file=sys.stderr, disable=not progress,
               leave=False)
    for row, query in enumerate(bar):
        if not docs:
            continue
        terms = list(dict.fromkeys(tokenize(query)))
        scores = engine.score_all(terms)
        if prf:
            first = np.flatnonzero(np.isfinite(scores))
            first = first[np.lexsort((first, -scores[first]))][:PRF_DOCS]
            extra = prf_terms([docs[d] for d in first], terms, engine.idf)
            scores = engine.score_all(*expanded_query(terms, extra))
        np.maximum.at(out[row], owner_index, scores)
    return out


def semantic_matrix(image_ids: tuple[str, ...], owners: list[str], texts: list[str], queries: dict[str, str],
                    embedder, progress: bool = False) -> np.ndarray:
    """Cosine of every image to every query (rows), max over an image's documents; -inf: no text."""
    out = np.full((len(queries), len(image_ids)), -np.inf)
    if not texts or not queries:
        return out
    doc_vecs = embedder.encode(texts, progress=progress)
    sims = embedder.encode(list(queries.values()), query=True) @ doc_vecs.T
    owner_index = _owner_index(image_ids, owners)
    for row in range(len(queries)):
        np.maximum.at(out[row], owner_index, sims[row])
    return out


def hybrid_matrix(keyword: np.ndarray, semantic: np.ndarray) -> np.ndarray:
    """RRF of the two rankings of each query (rows), as hybrid search fuses them."""
    return np.stack([fusion.fused_scores(k, s) for k, s in zip(keyword, semantic, strict=True)])
