"""Search: BM25 over each image's text (all tiles), plus the tile that matched best."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .index import get_engine
from .query import Query, contains_phrase, parse_query
from .store import Store, TileText
from .text import tokenize
from .tiling import Box

K1, B = 1.5, 0.75


@dataclass(frozen=True)
class Result:
    """One ranked image."""

    rank: int
    image_id: int
    score: float
    path: str | None
    matched: tuple[str, ...]
    tile_key: str | None
    tile: Box | None
    external_id: str | None = None

    def to_dict(self) -> dict:
        """JSON-friendly form."""
        return {
            "rank": self.rank, "image_id": self.image_id, "score": round(self.score, 4),
            "path": self.path, "external_id": self.external_id, "matched": list(self.matched),
            "tile": self.tile_key, "box": self.tile.as_list() if self.tile else None,
        }


@dataclass
class _Tile:
    key: str
    box: Box | None
    tokens: list[str] = field(default_factory=list)


@dataclass
class _Corpus:
    image_ids: list[int]
    docs: list[list[str]]
    tiles: list[dict[int, _Tile]]


class Searcher:
    """Keeps an index over the store's text and rebuilds it whenever the store changes."""

    def __init__(self, store: Store, run_ids: list[int] | None = None,
                 engine: str = "rank-bm25") -> None:
        self.store = store
        self.run_ids = run_ids
        self.engine_name = engine
        self._version: tuple[int, int] | None = None
        self._engine = None
        self._corpus: _Corpus | None = None

    def _ensure_index(self) -> None:
        version = self.store.version()
        if version == self._version and self._engine is not None:
            return
        corpus = build_corpus(self.store.tile_texts(self.run_ids))
        engine = get_engine(self.engine_name)
        engine.build(corpus.docs)
        self._engine, self._corpus, self._version = engine, corpus, version

    def search(self, query: str | Query, k: int = 10) -> list[Result]:
        """The top-k images for a query string (see `query.parse_query` for the syntax)."""
        q = parse_query(query) if isinstance(query, str) else query
        if q.empty or k <= 0:
            return []
        self._ensure_index()
        corpus, engine = self._corpus, self._engine
        candidates = _filter(corpus, q)
        hits = engine.search(q.ranking_terms, candidates)[:k]
        avg_tile = _avg_tile_len(corpus)
        results = []
        for rank, (doc, score) in enumerate(hits, 1):
            image = self.store.image_row(corpus.image_ids[doc])
            doc_terms = set(corpus.docs[doc])
            matched = tuple(t for t in q.ranking_terms if t in doc_terms)
            tile = best_tile(corpus.tiles[doc], matched, engine.idf, avg_tile)
            results.append(Result(
                rank=rank, image_id=image["id"], score=score, path=image["path"],
                matched=matched, tile_key=tile.key if tile else None,
                tile=tile.box if tile else None, external_id=image["external_id"],
            ))
        return results


def search(store: Store, query: str, k: int = 10, run_ids: list[int] | None = None,
           engine: str = "rank-bm25") -> list[Result]:
    """One-shot search (builds the index; use Searcher for many queries)."""
    return Searcher(store, run_ids, engine).search(query, k)


def build_corpus(texts) -> _Corpus:
    """Group tile texts into one document per image, keeping each tile's tokens."""
    corpus = _Corpus([], [], [])
    for t in texts:
        if not corpus.image_ids or corpus.image_ids[-1] != t.image_id:
            corpus.image_ids.append(t.image_id)
            corpus.docs.append([])
            corpus.tiles.append({})
        tokens = tile_tokens(t)
        corpus.docs[-1].extend(tokens)
        tile = corpus.tiles[-1].setdefault(t.tile_id, _Tile(t.tile_key, t.box))
        tile.tokens.extend(tokens)
    return corpus


def tile_tokens(t: TileText) -> list[str]:
    """The tokens a tile's caption contributes: its tags, then its caption."""
    return tokenize(" , ".join(t.tags)) + tokenize(t.caption)


def _filter(corpus: _Corpus, q: Query) -> set[int] | None:
    """Documents that satisfy +must, -exclude and phrases (None when nothing filters)."""
    if not (q.must or q.exclude or q.phrases or q.excluded_phrases):
        return None
    keep = set()
    for i, doc in enumerate(corpus.docs):
        terms = set(doc)
        if any(t not in terms for t in q.must) or any(t in terms for t in q.exclude):
            continue
        tiles = [tile.tokens for tile in corpus.tiles[i].values()]
        if not all(any(contains_phrase(tt, p) for tt in tiles) for p in q.phrases):
            continue
        if any(any(contains_phrase(tt, p) for tt in tiles) for p in q.excluded_phrases):
            continue
        keep.add(i)
    return keep


def _avg_tile_len(corpus: _Corpus) -> float:
    lengths = [len(t.tokens) for tiles in corpus.tiles for t in tiles.values()]
    return sum(lengths) / len(lengths) if lengths else 1.0


def best_tile(tiles: dict[int, _Tile], terms: Sequence[str], idf, avg_len: float) -> _Tile | None:
    """The tile whose own text scores best for the matched terms (BM25); smaller wins ties."""
    best, best_key = None, None
    for tile in tiles.values():
        n = len(tile.tokens)
        score = 0.0
        for term in terms:
            tf = tile.tokens.count(term)
            if tf:
                score += max(idf(term), 0.01) * tf * (K1 + 1) / (
                    tf + K1 * (1 - B + B * n / max(avg_len, 1e-9)))
        area = (tile.box.x1 - tile.box.x0) * (tile.box.y1 - tile.box.y0) if tile.box else 1 << 62
        key = (score, -area)
        if score > 0 and (best_key is None or key > best_key):
            best, best_key = tile, key
    return best
