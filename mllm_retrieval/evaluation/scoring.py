"""How a condition's text becomes scores: documents per variant, BM25 (+PRF), semantic and hybrid matrices
(hybrid with search's feedback: `feedback_refiner`).

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
from ..search.expansion import PRF_DOCS, Feedback, expanded_query, prf_terms, rocchio
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


@dataclass
class Embedded:
    """A condition's semantic side: each text document's vector and owner, each query's vector, and the
    cosine matrix (rows: queries, columns: evaluation images; max over an image's documents)."""

    owner_index: np.ndarray
    doc_vecs: np.ndarray
    query_vecs: np.ndarray
    matrix: np.ndarray


def embedded(image_ids: tuple[str, ...], owners: list[str], texts: list[str], queries: dict[str, str],
             embedder, progress: bool = False) -> Embedded:
    """Embed a condition's documents and queries; cosine of every image to every query (-inf: no text)."""
    out = np.full((len(queries), len(image_ids)), -np.inf)
    owner_index = _owner_index(image_ids, owners)
    if not texts or not queries:
        return Embedded(owner_index, np.zeros((0, 0), dtype=np.float32), np.zeros((0, 0), dtype=np.float32),
                        out)
    doc_vecs = np.asarray(embedder.encode(texts, progress=progress), dtype=np.float32)
    query_vecs = np.asarray(embedder.encode(list(queries.values()), query=True), dtype=np.float32)
    sims = query_vecs @ doc_vecs.T
    for row in range(len(queries)):
        np.maximum.at(out[row], owner_index, sims[row])
    return Embedded(owner_index, doc_vecs, query_vecs, out)


def semantic_matrix(image_ids: tuple[str, ...], owners: list[str], texts: list[str], queries: dict[str, str],
                    embedder, progress: bool = False) -> np.ndarray:
    """Cosine of every image to every query (rows), max over an image's documents; -inf: no text."""
    return embedded(image_ids, owners, texts, queries, embedder, progress).matrix


@dataclass(frozen=True)
class Refiner:
    """Search's feedback over one condition: `feedback` says how many first images count as relevant, and
    rescore(row, first images) returns that query's refined keyword and semantic scores."""

    feedback: Feedback
    rescore: Callable[[int, np.ndarray], tuple[np.ndarray, np.ndarray]]


def hybrid_matrix(keyword: np.ndarray, semantic: np.ndarray, method: str | Callable = "rrf",
                  refiner: Refiner | None = None) -> np.ndarray:
    """The two rankings of each query (rows) fused as hybrid search fuses them (`method`: fusion.FUSIONS,
    or a function of two score vectors, for comparisons).

    With a `refiner` (search's feedback, `feedback_refiner`), each row's first fused images refine its
    two rankings, which are fused again."""
    fuse = method if callable(method) else lambda a, b: fusion.fused_scores(a, b, method=method)
    rows = []
    for row, (kw, sem) in enumerate(zip(keyword, semantic, strict=True)):
        fused = fuse(kw, sem)
        if refiner is not None:
            first = np.flatnonzero(np.isfinite(fused))
            first = first[np.lexsort((first, -fused[first]))][:refiner.feedback.first(len(first))]
            fused = fuse(*refiner.rescore(row, first))
        rows.append(fused)
    return np.stack(rows) if rows else np.zeros(keyword.shape)


def feedback_refiner(image_ids: tuple[str, ...], owners: list[str], docs: list[list[str]],
                     queries: dict[str, str], sem: Embedded, fb: Feedback | None = None) -> Refiner:
    """Search's hybrid feedback over a condition: the first images' words expand the BM25 query and their
    mean embedding moves the query vector (expansion.Feedback), as `Searcher` refines a hybrid search."""
    from ..search.index.semantic_index import scan

    fb = fb or Feedback()
    engine = SparseEngine()
    engine.add(docs)
    kw_owner = _owner_index(image_ids, owners)
    docs_of: dict[int, list[int]] = {}
    for d, i in enumerate(kw_owner.tolist()):
        docs_of.setdefault(i, []).append(d)
    vecs_of: dict[int, list[int]] = {}
    for v, i in enumerate(sem.owner_index.tolist()):
        vecs_of.setdefault(i, []).append(v)
    terms = [list(dict.fromkeys(tokenize(q))) for q in queries.values()]

    def rescore(row: int, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        kw = np.full(len(image_ids), -np.inf)
        if terms[row] and docs:
            extra = prf_terms([docs[d] for i in first.tolist() for d in docs_of.get(i, [])], terms[row],
                              engine.idf, fb.terms)
            np.maximum.at(kw, kw_owner, engine.score_all(*expanded_query(terms[row], extra, fb.weight)))
        out = np.full(len(image_ids), -np.inf)
        if len(sem.doc_vecs):
            chosen = [v for i in first.tolist() for v in vecs_of.get(i, [])]
            qvec = rocchio(sem.query_vecs[row], sem.doc_vecs[chosen], fb.beta)
            np.maximum.at(out, sem.owner_index, scan(sem.doc_vecs, qvec))
        return kw, out

    return Refiner(fb, rescore)
