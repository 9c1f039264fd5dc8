"""The reference engine: rank-bm25's BM25Okapi (k1=1.5, b=0.75, epsilon-floored idf)."""

from __future__ import annotations

from collections.abc import Sequence

from rank_bm25 import BM25Okapi


class RankBM25Engine:
    """Pure-Python BM25 from rank-bm25; scores every document per query."""

    name = "rank-bm25"

    def __init__(self) -> None:
        self._bm25: BM25Okapi | None = None
        self._postings: dict[str, set[int]] = {}

    def build(self, docs: Sequence[list[str]]) -> None:
        """Index the documents (an empty corpus is allowed)."""
        self._postings = {}
        for i, doc in enumerate(docs):
            for term in set(doc):
                self._postings.setdefault(term, set()).add(i)
        # rank-bm25 divides by the corpus size, so an empty corpus gets no model at all.
        self._bm25 = BM25Okapi([d or [""] for d in docs]) if docs else None

    def search(self, terms: Sequence[str], candidates: set[int] | None = None,
               ) -> list[tuple[int, float]]:
        """Documents holding at least one term, by BM25 score, ties by document order."""
        if self._bm25 is None:
            return []
        hits: set[int] = set()
        for term in terms:
            hits |= self._postings.get(term, set())
        if candidates is not None:
            hits &= candidates
        if not hits:
            return []
        scores = self._bm25.get_scores(list(terms))
        return sorted(((i, float(scores[i])) for i in hits), key=lambda x: (-x[1], x[0]))

    def idf(self, term: str) -> float:
        """rank-bm25's idf for a term."""
        return float(self._bm25.idf.get(term, 0.0)) if self._bm25 else 0.0
