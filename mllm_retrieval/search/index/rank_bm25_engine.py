"""The reference engine: rank-bm25's BM25Okapi, rebuilt from scratch on every change."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rank_bm25 import BM25Okapi

from .base import EPSILON, K1, B, top_k


class RankBM25Engine:
    """Pure-Python BM25 from rank-bm25; scores every document per query."""

    name = "rank-bm25"

    def __init__(self) -> None:
        self._docs: list[list[str] | None] = []
        self._bm25: BM25Okapi | None = None
        self._live: list[int] = []
        self._postings: dict[str, set[int]] = {}

    def add(self, docs: Sequence[list[str]]) -> list[int]:
        """Append documents and rebuild."""
        start = len(self._docs)
        self._docs.extend(list(d) for d in docs)
        self._rebuild()
        return list(range(start, len(self._docs)))

    def remove(self, doc_ids: Iterable[int]) -> None:
        """Forget documents and rebuild."""
        for i in doc_ids:
            self._docs[i] = None
        self._rebuild()

    def _rebuild(self) -> None:
        self._live = [i for i, d in enumerate(self._docs) if d is not None]
        self._postings = {}
        for pos, i in enumerate(self._live):
            for term in set(self._docs[i]):
                self._postings.setdefault(term, set()).add(pos)
        # rank-bm25 divides by the corpus size, so an empty corpus gets no model at all.
        docs = [self._docs[i] for i in self._live]
        self._bm25 = BM25Okapi(docs, k1=K1, b=B, epsilon=EPSILON) if docs else None

    def search(self, terms: Sequence[str], k: int, must: Sequence[str] = (), exclude: Sequence[str] = (),
               weights: Sequence[float] | None = None) -> list[tuple[int, float]]:
        """Score every document with rank-bm25 (term by term when weighted), then filter and sort."""
        if self._bm25 is None or k <= 0:
            return []
        hits: set[int] = set()
        for term in terms:
            hits |= self._postings.get(term, set())
        for term in must:
            hits &= self._postings.get(term, set())
        for term in exclude:
            hits -= self._postings.get(term, set())
        if not hits:
            return []
        if weights is None:
            scores = self._bm25.get_scores(list(terms))
        else:
            scores = sum(w * self._bm25.get_scores([t]) for t, w in zip(terms, weights, strict=True))
        return top_k([(self._live[p], float(scores[p])) for p in hits], k)

    def docs_with(self, term: str) -> list[int]:
        """Live documents that hold a term."""
        return sorted(self._live[p] for p in self._postings.get(term, ()))

    def idf(self, term: str) -> float:
        """rank-bm25's idf for a term."""
        return float(self._bm25.idf.get(term, 0.0)) if self._bm25 else 0.0

    def __len__(self) -> int:
        return len(self._live)
