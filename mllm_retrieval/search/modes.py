"""The search modes, defined once for the searcher, the CLI, the web API and evaluation (no imports: the CLI
reads them at start-up)."""

from __future__ import annotations

from enum import Enum


class SearchMode(str, Enum):
    """keyword ranks by BM25, semantic by the cosine of sentence embeddings, hybrid fuses both (RRF)."""

    keyword = "keyword"
    semantic = "semantic"
    hybrid = "hybrid"


MODES = tuple(m.value for m in SearchMode)
