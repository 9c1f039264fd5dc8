"""Query expansion by pseudo-relevance feedback (PRF): add the top words of the first results to the query.

The first PRF_DOCS results of the plain BM25 query are taken as relevant; their words are weighted by
sum over those documents of (tf / length) x idf, the query's own words are dropped, and the best
PRF_TERMS are added to the query with weight PRF_WEIGHT each (the query's words keep weight 1). The
curated synonym expansion for class names is `evaluation.datasets.SYNONYMS` (`class_queries(...,
expand=True)`); no WordNet is used, because no well-kept PyPI package ships WordNet's data for offline
use (nltk and wn download it at run time). Both are evaluation conditions reported beside plain BM25
(`mllmret eval --expand --prf`); their constants were chosen on ../shared/data (eval/README.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

PRF_DOCS = 20
PRF_TERMS = 10
PRF_WEIGHT = 0.1


def prf_terms(feedback: Sequence[Sequence[str]], query: Sequence[str], idf: Callable[[str], float],
              n_terms: int = PRF_TERMS) -> list[str]:
    """The n_terms words that best characterise the feedback documents, the query's words left out."""
    weight: Counter[str] = Counter()
    for doc in feedback:
        for term, tf in Counter(doc).items():
            weight[term] += tf / len(doc) * idf(term)
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
