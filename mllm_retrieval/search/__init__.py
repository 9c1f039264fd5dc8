"""Search: text to tokens, queries, keyword and semantic indexes over the library, fusion, the searcher."""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    "Searcher": "searcher", "Result": "searcher", "search": "searcher", "Query": "query",
    "parse_query": "query", "Embedder": "embedding", "get_embedder": "embedding", "fuse": "fusion",
    "tokenize": "text",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
