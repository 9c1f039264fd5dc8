"""The engine interface: build over token lists, then score documents for a query."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Protocol

from ..errors import MllmretError


class Engine(Protocol):
    """A BM25 engine over documents given as token lists."""

    name: str

    def build(self, docs: Sequence[list[str]]) -> None:
        """Index the documents; their positions are their ids."""
        ...

    def search(self, terms: Sequence[str], candidates: set[int] | None = None,
               ) -> list[tuple[int, float]]:
        """(doc, score) for every document holding at least one term, best first."""
        ...

    def idf(self, term: str) -> float:
        """The engine's idf for a term (0 when absent)."""
        ...


ENGINES: dict[str, str] = {
    "rank-bm25": "mllm_retrieval.index.rank_bm25_engine:RankBM25Engine",
}


def get_engine(name: str = "rank-bm25") -> Engine:
    """A new engine by name."""
    try:
        module, _, attr = ENGINES[name].partition(":")
    except KeyError:
        raise MllmretError(
            f"unknown engine {name!r}: use one of {', '.join(sorted(ENGINES))}"
        ) from None
    return getattr(importlib.import_module(module), attr)()
