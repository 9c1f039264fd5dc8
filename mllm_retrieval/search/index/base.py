"""The engine interface: add and remove token-list documents, then rank them for a query."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from typing import Protocol

from ...errors import MllmretError

K1, B, EPSILON = 1.5, 0.75, 0.25  # rank-bm25's BM25Okapi defaults, shared by every engine


class Engine(Protocol):
    """A BM25 engine over documents given as token lists; document ids are positions."""

    name: str

    def add(self, docs: Sequence[list[str]]) -> list[int]:
        """Index more documents; returns their ids."""
        ...

    def remove(self, doc_ids: Iterable[int]) -> None:
        """Drop documents from results and from corpus statistics."""
        ...

    def search(self, terms: Sequence[str], k: int, must: Sequence[str] = (), exclude: Sequence[str] = (),
               weights: Sequence[float] | None = None) -> list[tuple[int, float]]:
        """Top-k (doc, score), best first, ties by doc id, among docs holding a term and all `must`
        terms and no `exclude` term; `weights` (one per term, default 1) scale each term's BM25 part."""
        ...

    def docs_with(self, term: str) -> Sequence[int]:
        """Live documents that hold a term (for filters outside BM25, e.g. semantic search)."""
        ...

    def idf(self, term: str) -> float:
        """The idf the engine uses for a term (0 when absent)."""
        ...

    def __len__(self) -> int:
        """Number of live documents."""
        ...


ENGINES: dict[str, str] = {
    "sparse": "mllm_retrieval.search.index.sparse_engine:SparseEngine",
    "rank-bm25": "mllm_retrieval.search.index.rank_bm25_engine:RankBM25Engine",
}
DEFAULT_ENGINE = "sparse"


def get_engine(name: str = DEFAULT_ENGINE) -> Engine:
    """A new, empty engine by name."""
    try:
        module, _, attr = ENGINES[name].partition(":")
    except KeyError:
        raise MllmretError(f"unknown engine {name!r}: use one of {', '.join(sorted(ENGINES))}") from None
    return getattr(importlib.import_module(module), attr)()


def top_k(pairs: list[tuple[int, float]], k: int) -> list[tuple[int, float]]:
    """Best k by score, ties broken by smaller doc id."""
    return sorted(pairs, key=lambda x: (-x[1], x[0]))[:k]
