"""Query expansion by pseudo-relevance feedback (PRF): the first results refine the query.

The first PRF_DOCS results of the plain BM25 query are taken as relevant; their words are weighted by
sum over those documents of (tf / length) x idf, the query's own words are dropped, and the best
PRF_TERMS are added to the query with weight PRF_WEIGHT each (the query's words keep weight 1). The
curated synonym expansion for class names is `evaluation.datasets.SYNONYMS` (`class_queries(...,
expand=True)`); no WordNet is used, because no well-kept PyPI package ships WordNet's data for offline
use (nltk and wn download it at run time). Both are evaluation conditions reported beside plain BM25
(`mllmret eval --expand --prf`); their constants were chosen on ../shared/data (eval/README.md).

Hybrid search's feedback (`Feedback`, on by default in `mllmret search`): the first FEEDBACK_DOCS images
of the fused ranking (at most one in FEEDBACK_SHARE of the images ranked) are taken as relevant; their
words expand the keyword query as above (PRF_TERMS, at FEEDBACK_WEIGHT) and the mean of their embeddings moves
the semantic query towards them (Rocchio: query + ROCCHIO_BETA x mean, made unit length); the two new
rankings are fused again. Chosen on the dev sets (COCO human captions, HALC LLaVA-1.5-7B) with
bench/fusion_compare.py; eval/RESULTS.md has the table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

PRF_DOCS = 20
PRF_TERMS = 10
PRF_WEIGHT = 0.1
FEEDBACK_DOCS = 30
FEEDBACK_WEIGHT = 0.05  # of each word feedback adds to a hybrid search's BM25 query
FEEDBACK_SHARE = 16  # at most one in this many of the ranked images is taken as relevant
ROCCHIO_BETA = 2.0


@dataclass(frozen=True)
class Feedback:
    """Hybrid feedback: how many first results count as relevant, how many of their words join the keyword
    query and at what weight, and how far the semantic query moves towards their mean embedding."""

    docs: int = FEEDBACK_DOCS
    terms: int = PRF_TERMS
    weight: float = FEEDBACK_WEIGHT
    beta: float = ROCCHIO_BETA

    def first(self, ranked: int) -> int:
        """How many first results count as relevant when `ranked` images are ranked: `docs`, but at most one
        in FEEDBACK_SHARE, so that in a small library (or a narrow filter) feedback is not the whole of it."""
        return min(self.docs, ranked // FEEDBACK_SHARE)


def prf_terms(feedback: Sequence[Sequence[str]], query: Sequence[str], idf: Callable[[str], float],
              n_terms: int = PRF_TERMS) -> list[str]:
    """The n_terms words that best characterise the feedback documents, the query's words left out."""
    weight: Counter[str] = Counter()
    idfs: dict[str, float] = {}  # idf once per distinct word (an index's idf may cost a pass over it)
    for doc in feedback:
        for term, tf in Counter(doc).items():
            if term not in idfs:
                idfs[term] = idf(term)
            weight[term] += tf / len(doc) * idfs[term]
    for term in query:
        weight.pop(term, None)
    best = sorted(((w, t) for t, w in weight.items() if w > 0), key=lambda x: (-x[0], x[1]))
    return [t for _, t in best[:n_terms]]


def expanded_query(query: Sequence[str], extra: Sequence[str], weight: float = PRF_WEIGHT
                   ) -> tuple[list[str], list[float]]:
    """(terms, weights) of a query with expansion words added at `weight`."""
    terms = list(dict.fromkeys(query))
    added = [t for t in dict.fromkeys(extra) if t not in terms]
    return terms + added, [1.0] * len(terms) + [weight] * len(added)


def rocchio(query: np.ndarray, feedback: np.ndarray, beta: float = ROCCHIO_BETA) -> np.ndarray:
    """The query vector moved towards the mean of the feedback vectors (rows), at unit length (float32)."""
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    if not len(feedback) or beta == 0:
        return q
    moved = q + np.float32(beta) * np.asarray(feedback, dtype=np.float32).mean(axis=0)
    norm = float(np.linalg.norm(moved))
    return (moved / norm).astype(np.float32) if norm > 0 else q
