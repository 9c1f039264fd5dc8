"""Search: BM25 over each image's text, semantic similarity, or both fused; with matched words and best tile.

Modes (`fusion.MODES`): keyword ranks by BM25; semantic by the cosine between the query's and each image's
sentence embedding (index.semantic_index); hybrid fuses the two rankings (fusion.py). Feedback
(expansion.Feedback, on by default in hybrid mode) takes the first results as relevant, refines both
queries from them and ranks again; the words it added are `suggested`. In every mode +word, -word and
"phrase" filter exactly as in keyword search: both rankings only hold images that pass them, and every
result is checked again against its stored text.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..capture.tiling import Box, tile_name
from ..errors import MllmretError
from ..library.store import Store
from . import fusion
from .documents import VAGUE, TileTokens, keyword_documents, tile_documents
from .expansion import PRF_DOCS, PRF_TERMS, PRF_WEIGHT, Feedback, prf_terms, rocchio
from .index.base import DEFAULT_ENGINE, EPSILON, K1, B
from .index.store_index import StoreIndex
from .query import Query, contains_phrase, parse_query
from .text import surface_words

DEFAULT_MODE = "hybrid"  # what `mllmret search` uses; Searcher itself defaults to keyword (see Searcher)
FUSED_EXACT = 256  # above semantic_index.APPROX_FROM images, the first this many fused results are exact
# (CombMNZ, the default; RRF, for --like, ranks keyword matches among partly approximate similarities)


@dataclass(frozen=True)
class Result:
    """One ranked image; `via` says whether it matched by keyword, by meaning, or both."""

    rank: int
    image_id: int
    score: float
    path: str | None
    matched: tuple[str, ...]
    tile_key: str | None
    tile: Box | None
    external_id: str | None = None
    via: str = "keyword"
    bm25: float | None = None
    similarity: float | None = None
    tile_name: str | None = None  # where the tile lies: "top left", "centre", "full" (tiling.tile_name)
    in_photo: tuple[str, ...] = ()  # matched words found in text read in the photo (OCR)
    in_metadata: tuple[str, ...] = ()  # matched words found in the photo's own keywords/descriptions

    def to_dict(self) -> dict:
        """JSON-friendly form."""
        return {
            "rank": self.rank, "image_id": self.image_id, "score": round(self.score, 4),
            "path": self.path, "external_id": self.external_id, "matched": list(self.matched),
            "tile": self.tile_key, "box": self.tile.as_list() if self.tile else None,
            "tile_name": self.tile_name, "via": self.via,
            "bm25": None if self.bm25 is None else round(self.bm25, 4),
            "similarity": None if self.similarity is None else round(self.similarity, 4),
            "text_in_photo": list(self.in_photo), "in_metadata": list(self.in_metadata),
        }


def check_mode(mode: str) -> str:
    """The mode, or a one-line error naming the choices."""
    if mode not in fusion.MODES:
        raise MllmretError(f"unknown search mode {mode!r}: use one of {', '.join(fusion.MODES)}")
    return mode


class Searcher:
    """Answers queries from indexes that follow the store (see index.store_index, index.semantic_index).

    `mode` is keyword, semantic or hybrid (see fusion.py); `embedder` an `embedding.Embedder`, a model
    name or folder, or None for the packaged all-MiniLM-L6-v2. `min_similarity` and `min_relative` hide
    meaning-only results (no query word in their text) less similar than max(min_similarity, min_relative x
    the query's best similarity); the ranking itself is the one evaluation fuses, and `hidden` counts what the
    last search hid. Keyword matches always stay. The semantic index and the
    model load on the first query that needs them, so keyword search never imports sentence-transformers.
    The library default stays keyword (callers keep BM25 semantics); `mllmret search` defaults to hybrid,
    DEFAULT_MODE, which measured better on every evaluation set (eval/RESULTS.md).

    `max_backlog`: when more images than this still lack an embedding, a search by meaning is answered by
    keyword instead of embedding them first, and `notice` says so (None, the default: always embed first).

    `feedback`: None (default) refines hybrid searches only, as measured best (expansion.Feedback); True
    refines in every mode (keyword: BM25 pseudo-relevance feedback, semantic: the query vector moved towards
    the first results); False never. `fuse_with` is how hybrid fuses (fusion.FUSIONS). Searches with a
    given `query_vector` (composed `--like`) keep RRF without feedback, as composed evaluation measured."""

    def __init__(self, store: Store, run_ids: list[int] | None = None, engine: str = DEFAULT_ENGINE,
                 persist: bool = True, mode: str = "keyword", embedder=None,
                 min_similarity: float | None = None, progress: bool = False,
                 max_backlog: int | None = None, min_relative: float | None = None,
                 feedback: bool | None = None, fuse_with: str = fusion.DEFAULT_FUSION) -> None:
        self.store = store
        self.run_ids = run_ids
        self.mode = check_mode(mode)
        if fuse_with not in fusion.FUSIONS:
            raise MllmretError(f"unknown fusion {fuse_with!r}: use one of {', '.join(fusion.FUSIONS)}")
        self.feedback, self.fuse_with = feedback, fuse_with
        self.suggested: tuple[str, ...] = ()  # words the last search's feedback added to the query
        self.index = StoreIndex(store, run_ids, engine, persist=persist)
        self.persist, self.progress, self.min_similarity = persist, progress, min_similarity
        self.max_backlog, self.min_relative = max_backlog, min_relative
        self.notice: str | None = None  # set by the last search when it fell back to keyword
        self.hidden = 0  # meaning-only results the last search left out (below the cut-off)
        self._embedder = embedder
        self._semantic = None

    @property
    def semantic(self):
        """The semantic index (created on first use)."""
        if self._semantic is None:
            from .index.semantic_index import SemanticIndex

            self._semantic = SemanticIndex(self.store, self.run_ids, self._embedder, persist=self.persist,
                                           progress=self.progress)
        return self._semantic

    @property
    def loaded_semantic(self):
        """The semantic index if a search has made it, else None (nothing loaded)."""
        return self._semantic

    def search(self, query: str | Query, k: int = 10, mode: str | None = None,
               weights: Mapping[str, float] | None = None, exclude_ids: Collection[int] = (),
               query_vector: np.ndarray | None = None) -> list[Result]:
        """The top-k images for a query (see `query.parse_query` for the syntax) in this or the given mode.

        `weights` scale the BM25 part of each query word (words not in it weigh 1); `exclude_ids` are
        image ids never returned (e.g. the reference of a composed query); `query_vector`, when given,
        is the semantic query (the embedder's unit vectors) instead of embedding the query's text."""
        q = parse_query(query) if isinstance(query, str) else query
        mode = check_mode(mode or self.mode)
        self.notice, self.hidden, self.suggested = None, 0, ()
        if mode != "keyword" and self._semantic is None:
            from .embedding import meaning_unavailable

            reason = meaning_unavailable(self._embedder)
            if reason is not None:  # a keyword-only install: keyword search, and one line that says so
                mode, self.notice = "keyword", f"{reason}; answered by keyword"
        if mode != "keyword" and self.max_backlog is not None:
            pending = self.semantic.backlog()
            if pending > self.max_backlog:
                from ..library.embed import backlog_note

                mode, self.notice = "keyword", backlog_note(pending)
        if k <= 0 or q.empty and (query_vector is None or mode == "keyword"):
            return []
        terms = q.ranking_terms
        term_weights = None if not weights else [float(weights.get(t, 1.0)) for t in terms]
        skip = frozenset(int(i) for i in exclude_ids)
        if mode != "keyword":
            return self._fused(q, k, mode, term_weights, skip, query_vector)
        must = _must(q)
        if self.feedback:  # BM25 pseudo-relevance feedback: eval's `--prf` condition
            hits = self.index.search(terms, PRF_DOCS + len(skip), must, q.exclude, term_weights)
            first = [i for i, _ in hits if i not in skip][:PRF_DOCS]
            terms, term_weights = self._expanded(terms, term_weights, first, PRF_TERMS, PRF_WEIGHT)
        want = (k if not (q.phrases or q.excluded_phrases) else k * 4) + len(skip)
        while True:
            hits = self.index.search(terms, want, must, q.exclude, term_weights)
            tiles = self._tiles([i for i, _ in hits if i not in skip])
            kept = [(i, s) for i, s in hits if i not in skip and _phrases_ok(tiles.get(i, []), q)]
            if len(kept) >= k or len(hits) < want:
                break
            want *= 4
        weights = _weights(terms, term_weights)
        return [self._result(rank, fusion.Fused(image_id, score, score, None), tiles.get(image_id, []), q,
                             weights)
                for rank, (image_id, score) in enumerate(kept[:k], 1)]

    def _fused(self, q: Query, k: int, mode: str, term_weights: list[float] | None = None,
               skip: frozenset[int] = frozenset(), query_vector: np.ndarray | None = None) -> list[Result]:
        """Semantic or hybrid: the whole filtered rankings are fused, as evaluation fuses them.

        +words and -words filter inside both rankings (BM25 postings; the image ids holding them for the
        semantic one). Phrases need each image's tokens, so they are checked on the fused order, best
        first, until k results pass; ranks are those among images holding all the phrase's words.
        Images in `skip` are left out of both rankings before they are fused. With feedback, the first
        fused results refine both queries (`_expanded`, `_moved`) and the refined rankings are fused
        again; an image that only feedback's words match counts as meaning-only for the cut-off."""
        must = _must(q)
        include = self.index.images_with(must) if must else None
        exclude = self.index.images_with(q.exclude, every=False) if q.exclude else None
        if skip:
            ids = np.fromiter(skip, dtype=np.int64, count=len(skip))
            exclude = ids if exclude is None else np.union1d(exclude, ids)
        terms = q.ranking_terms if mode == "hybrid" else ()

        method = "rrf" if query_vector is not None else self.fuse_with

        def rank(terms: Sequence[str], weights: list[float] | None, qvec: np.ndarray):
            found = self.semantic.similarities(qvec, include, exclude)
            keyword = (np.zeros(0, dtype=np.int64), np.zeros(0))
            if terms:
                keyword = self.index.scores(terms, must, q.exclude, weights)
                if skip:
                    keep = ~np.isin(keyword[0], ids)
                    keyword = (keyword[0][keep], keyword[1][keep])
            if found.error:  # an int8 scan (large libraries): the keyword matches fusion may need, exact
                found.exact_ids(fusion.contenders(keyword, found.pair, found.error, FUSED_EXACT, method))
            return keyword, found.pair

        qvec = self._query_vector(q, query_vector)
        keyword, meaning = rank(terms, term_weights, qvec)
        if query_vector is None and (self.feedback or self.feedback is None and mode == "hybrid"):
            fb = Feedback()
            n = fb.first(fusion.held(keyword, meaning))
            first = [f.image_id for f in fusion.fuse(keyword, meaning, limit=n, method=method)] if n else []
            if first and terms:
                terms, term_weights = self._expanded(terms, term_weights, first, fb.terms, fb.weight)
            if first:
                keyword, meaning = rank(terms, term_weights, self._moved(qvec, first, fb.beta))
        cut = self._cut(meaning[1])
        words = np.zeros(0, dtype=np.int64)
        if cut > -1.0:
            # meaning-only: no query word (feedback's words do not count); below the cut they are left out
            words = keyword[0] if not self.suggested else self.index.images_with(q.ranking_terms, every=False)
            below = meaning[0][meaning[1] < cut]
            self.hidden = len(below) - int(np.isin(below, words).sum())  # a lookup table, not a sort
        want = k if not (q.phrases or q.excluded_phrases) else k * 4
        while True:
            ranked = fusion.fuse(keyword, meaning, limit=want, min_meaning=cut, method=method)
            worded = np.isin(np.asarray([f.image_id for f in ranked], dtype=np.int64), words)
            fused = [f for f, w in zip(ranked, worded, strict=True)  # out: matched by feedback's words alone
                     if w or f.bm25 is None or f.similarity is None or f.similarity >= cut]
            tiles = self._tiles([f.image_id for f in fused])
            # every result is checked against its stored text (phrases; the indexes sync one by one)
            kept = [f for f in fused if _passes(tiles.get(f.image_id, []), q)]
            if len(kept) >= k or len(ranked) < want:
                break
            want *= 4
        weights = _weights(terms or q.ranking_terms, term_weights)  # semantic mode ranks by no term
        return [self._result(rank, f, tiles.get(f.image_id, []), q, weights)
                for rank, f in enumerate(kept[:k], 1)]

    def _expanded(self, terms: Sequence[str], weights: list[float] | None, first: list[int], n_terms: int,
                  weight: float) -> tuple[list[str], list[float]]:
        """The query's terms and weights with the words that best characterise the `first` images added
        (expansion.prf_terms over their keyword documents); `suggested` gets those words as written."""
        texts = list(self.store.tile_texts(self.run_ids, first))
        docs = keyword_documents(texts)
        extra = prf_terms([docs[i] for i in first if docs.get(i)], terms, self.index.idf, n_terms)
        shown: dict[str, str] = {}
        for t in texts:
            for token, word in surface_words(" , ".join(t.tags) + " " + t.caption).items():
                shown.setdefault(token, word)
        self.suggested = tuple(w for w in (shown.get(t, t) for t in extra) if w not in VAGUE)  # ranks by all
        base = list(weights) if weights is not None else [1.0] * len(terms)
        return [*terms, *extra], base + [weight] * len(extra)

    def _moved(self, qvec: np.ndarray, first: list[int], beta: float) -> np.ndarray:
        """The semantic query moved towards the `first` images' embeddings (expansion.rocchio)."""
        sem = self.semantic
        return rocchio(qvec, sem.vectors[sem.rows_of(np.asarray(first, dtype=np.int64))], beta)

    def _cut(self, sims: np.ndarray) -> float:
        """The similarity a meaning-only result needs: max(min_similarity, min_relative x best); -1: none."""
        cut = -1.0 if self.min_similarity is None else self.min_similarity
        if self.min_relative and len(sims):
            cut = max(cut, self.min_relative * float(sims.max()))
        return cut

    def _query_vector(self, q: Query, given: np.ndarray | None) -> np.ndarray:
        """The given query vector (checked against the index's size, made unit length), else the embedded
        query text."""
        if given is None:
            return self.semantic.embedder.encode_query(q.text or " ".join(q.ranking_terms))
        vec = np.asarray(given, dtype=np.float32).reshape(-1)
        self.semantic.refresh()
        if self.semantic.dim and len(vec) != self.semantic.dim:
            raise MllmretError(f"the query vector has {len(vec)} dimensions, the semantic index "
                               f"{self.semantic.dim} ({self.semantic.embedder.name})")
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm > 0 else vec

    def _tiles(self, image_ids: list[int]) -> dict[int, list[TileTokens]]:
        return tile_documents(self.store.tile_texts(self.run_ids, image_ids))

    def _result(self, rank: int, hit: fusion.Fused, tiles: list[TileTokens], q: Query,
                weights: Mapping[str, float] | None = None) -> Result:
        image = self.store.image_row(hit.image_id)
        present = {t for tile in tiles for t in tile.tokens}
        matched = tuple(t for t in q.ranking_terms if t in present)
        avg = sum(len(t.tokens) for t in tiles) / max(len(tiles), 1)
        idf = self.index.idf if not weights else (lambda t: self.index.idf(t) * weights.get(t, 1.0))
        tile = best_tile(tiles, matched, idf, avg)
        in_photo = tuple(t for t in matched if any(t in tile.in_photo for tile in tiles))
        in_metadata = tuple(t for t in matched if any(t in tile.in_metadata for tile in tiles))
        shown = surface_words(q.text)  # stems are for the index; a person sees the words they typed
        matched, in_photo, in_metadata = (tuple(shown.get(t, t) for t in ts)
                                          for ts in (matched, in_photo, in_metadata))
        return Result(rank=rank, image_id=hit.image_id, score=hit.score, path=image["path"], matched=matched,
                      tile_key=tile.key if tile else None, tile=tile.box if tile else None,
                      external_id=image["external_id"], via=_via(bool(matched), hit.similarity is not None),
                      bm25=hit.bm25, similarity=hit.similarity,
                      tile_name=_tile_name(tile, image), in_photo=in_photo, in_metadata=in_metadata)


def search(store: Store, query: str, k: int = 10, run_ids: list[int] | None = None,
           engine: str = DEFAULT_ENGINE, mode: str = "keyword", embedder=None) -> list[Result]:
    """One-shot search."""
    return Searcher(store, run_ids, engine, mode=mode, embedder=embedder).search(query, k)


def _weights(terms: Sequence[str], weights: list[float] | None) -> dict[str, float] | None:
    """Per-term weights as a mapping (None: all 1)."""
    return None if weights is None else dict(zip(terms, weights, strict=True))


def _tile_name(tile: TileTokens | None, image: Mapping) -> str | None:
    """The best tile in words ("full", "top left", ...), None when no tile matched."""
    if tile is None:
        return None
    return "full" if tile.key == "full" else tile_name(tile.box, image["width"], image["height"]) or tile.key


def _via(by_keyword: bool, by_meaning: bool) -> str:
    """keyword | meaning | both: the text holds a query word, and/or the semantic ranking holds the image."""
    return "both" if by_keyword and by_meaning else "keyword" if by_keyword else "meaning"


def _must(q: Query) -> tuple[str, ...]:
    """Terms every result must hold: +words and the words of each phrase."""
    return tuple(dict.fromkeys([*q.must, *(t for p in q.phrases for t in p)]))


def _passes(tiles: list[TileTokens], q: Query) -> bool:
    """The image's stored text has every +word, no -word, every phrase and no excluded phrase."""
    present = {t for tile in tiles for t in tile.tokens}
    return (all(t in present for t in _must(q)) and not any(t in present for t in q.exclude)
            and _phrases_ok(tiles, q))


def _phrases_ok(tiles: list[TileTokens], q: Query) -> bool:
    seqs = [list(t.tokens) for t in tiles]
    return all(any(contains_phrase(s, p) for s in seqs) for p in q.phrases) and not any(
        any(contains_phrase(s, p) for s in seqs) for p in q.excluded_phrases)


def best_tile(tiles: Sequence[TileTokens], terms: Sequence[str], idf: Callable[[str], float],
              avg_len: float) -> TileTokens | None:
    """The tile whose own text scores best for the matched terms (BM25); the smaller wins ties."""
    best, best_key = None, None
    floor = EPSILON * 0.1
    for tile in tiles:
        n = len(tile.tokens)
        score = 0.0
        for term in terms:
            tf = tile.tokens.count(term)
            if tf:
                score += max(idf(term), floor) * tf * (K1 + 1) / (
                    tf + K1 * (1 - B + B * n / max(avg_len, 1e-9)))
        area = (tile.box.x1 - tile.box.x0) * (tile.box.y1 - tile.box.y0) if tile.box else 1 << 62
        key = (score, -area)
        if score > 0 and (best_key is None or key > best_key):
            best, best_key = tile, key
    return best
