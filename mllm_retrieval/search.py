"""Search: BM25 over each image's text (all tiles), plus the matched words and the best tile."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .index.base import DEFAULT_ENGINE, EPSILON, K1, B
from .index.store_index import StoreIndex, tile_tokens
from .query import Query, contains_phrase, parse_query
from .store import Store
from .tiling import Box


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


@dataclass(frozen=True)
class TileTokens:
    """One tile's tokens (all selected runs), for matched words, phrases and the best tile."""

    key: str
    box: Box | None
    tokens: tuple[str, ...]


class Searcher:
    """Answers queries from an index that follows the store (see index.store_index)."""

    def __init__(self, store: Store, run_ids: list[int] | None = None,
                 engine: str = DEFAULT_ENGINE, persist: bool = True) -> None:
        self.store = store
        self.run_ids = run_ids
        self.index = StoreIndex(store, run_ids, engine, persist=persist)

    def search(self, query: str | Query, k: int = 10) -> list[Result]:
        """The top-k images for a query (see `query.parse_query` for the syntax)."""
        q = parse_query(query) if isinstance(query, str) else query
        if q.empty or k <= 0:
            return []
        must = tuple(dict.fromkeys([*q.must, *(t for p in q.phrases for t in p)]))
        want = k if not (q.phrases or q.excluded_phrases) else k * 4
        while True:
            hits = self.index.search(q.ranking_terms, want, must, q.exclude)
            tiles = self._tiles([i for i, _ in hits])
            kept = [(i, s) for i, s in hits if _phrases_ok(tiles.get(i, []), q)]
            if len(kept) >= k or len(hits) < want:
                break
            want *= 4
        return [self._result(rank, image_id, score, tiles.get(image_id, []), q)
                for rank, (image_id, score) in enumerate(kept[:k], 1)]

    def _tiles(self, image_ids: list[int]) -> dict[int, list[TileTokens]]:
        by_tile: dict[tuple[int, int], tuple[str, Box | None, list[str]]] = {}
        for t in self.store.tile_texts(self.run_ids, image_ids):
            by_tile.setdefault((t.image_id, t.tile_id), (t.tile_key, t.box, []))[2].extend(tile_tokens(t))
        out: dict[int, list[TileTokens]] = {}
        for (image_id, _), (key, box, tokens) in by_tile.items():
            out.setdefault(image_id, []).append(TileTokens(key, box, tuple(tokens)))
        return out

    def _result(self, rank: int, image_id: int, score: float, tiles: list[TileTokens], q: Query) -> Result:
        image = self.store.image_row(image_id)
        present = {t for tile in tiles for t in tile.tokens}
        matched = tuple(t for t in q.ranking_terms if t in present)
        avg = sum(len(t.tokens) for t in tiles) / max(len(tiles), 1)
        tile = best_tile(tiles, matched, self.index.idf, avg)
        return Result(rank=rank, image_id=image_id, score=score, path=image["path"], matched=matched,
                      tile_key=tile.key if tile else None, tile=tile.box if tile else None,
                      external_id=image["external_id"])


def search(store: Store, query: str, k: int = 10, run_ids: list[int] | None = None,
           engine: str = DEFAULT_ENGINE) -> list[Result]:
    """One-shot search."""
    return Searcher(store, run_ids, engine).search(query, k)


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
