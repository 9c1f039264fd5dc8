"""Hybrid ranking: the keyword (BM25) and the semantic (cosine) ranking fused into one.

Two methods (FUSIONS):
- rrf: reciprocal rank fusion, sum over rankings of weight / (RRF_K + rank), rank 1 being the best; an
  image a ranking does not hold adds nothing. Tied scores share the best rank of their block, so the fused
  order never depends on input order.
- combmnz: CombMNZ over min-max normalised scores: each ranking's scores are scaled to [0, 1] over the
  images it holds (1 when they are all equal; 0 for an image it does not hold), summed, and multiplied by
  the number of rankings that hold the image. An image both rankings hold thus scores at least twice its
  semantic part, so the only keyword match of a query is never pushed below meaning-only results by a
  weak similarity alone.
Hybrid search (DEFAULT_FUSION, with feedback: expansion.Feedback) fuses by combmnz, which measured best on
the dev sets with feedback (z-scores instead of min-max: within 0.001, but an only keyword match gets
z = 0 and can sink); without feedback no fusion beats RRF by more than 0.003 (bench/fusion_compare.py,
eval/RESULTS.md). Composed (`--like`) search keeps rrf, as composed evaluation measured.

Filters (+word, -word, "phrase") are not fusion's business: each ranking only ever holds images that pass
them (see search.Searcher), so every mode keeps keyword semantics exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .modes import DEFAULT_FUSION, MODES  # noqa: F401  (where the searcher and evaluation look them up)

RRF_K = 60
WEIGHTS = (1.0, 1.0)  # keyword, semantic
FUSIONS = {"rrf": f"RRF k={RRF_K}", "combmnz": "CombMNZ min-max"}  # name: how a table labels it


@dataclass(frozen=True)
class Fused:
    """One image of a fused ranking, with what each ranking said about it."""

    image_id: int
    score: float
    bm25: float | None
    similarity: float | None

    @property
    def via(self) -> str:
        """keyword | meaning | both: which ranking(s) hold the image."""
        if self.bm25 is not None and self.similarity is not None:
            return "both"
        return "keyword" if self.bm25 is not None else "meaning"


def competition_ranks(scores: np.ndarray) -> np.ndarray:
    """1 + the number of strictly higher scores ("1224" ranking); 0 where the score is -inf or nan."""
    scores = np.asarray(scores, dtype=np.float64)
    ranked = np.isfinite(scores)
    out = np.zeros(len(scores), dtype=np.int64)
    desc = -np.sort(scores[ranked])[::-1]  # ascending negated scores
    out[ranked] = 1 + np.searchsorted(desc, -scores[ranked], side="left")
    return out


def fused_scores(keyword: np.ndarray, semantic: np.ndarray, k: float = RRF_K,
                 weights: Sequence[float] = WEIGHTS, method: str = "rrf") -> np.ndarray:
    """`fuse` over two dense score vectors (-inf: not in that ranking) as a dense vector (-inf: in neither).

    Evaluation ranks every image of a set with it, through the very function `mllmret search` fuses with."""
    keyword, semantic = np.asarray(keyword, dtype=np.float64), np.asarray(semantic, dtype=np.float64)
    positions = np.arange(len(keyword), dtype=np.int64)
    kw, sem = np.isfinite(keyword), np.isfinite(semantic)
    out = np.full(len(keyword), -np.inf)
    for f in fuse((positions[kw], keyword[kw]), (positions[sem], semantic[sem]), k=k, weights=weights,
                  method=method):
        out[f.image_id] = f.score
    return out


def fuse(keyword: tuple[np.ndarray, np.ndarray], semantic: tuple[np.ndarray, np.ndarray],
         limit: int | None = None, k: float = RRF_K, weights: Sequence[float] = WEIGHTS,
         min_meaning: float = -np.inf, method: str = "rrf") -> list[Fused]:
    """Two whole rankings fused (`method`: rrf or combmnz), each given as (image ids, scores) in any order;
    best first, ties by id. `k` and `weights` are RRF's.

    Each ranking holds every image that passes the query's filters (not a top-n), so the fused order is
    exactly the one evaluation gets from `fused_scores`. Only the images that can reach the top `limit` are
    scored: every keyword match, and the best `limit` of the images only the semantic ranking holds
    (their fused score falls with their semantic rank). Images only the semantic ranking holds are left out
    below similarity `min_meaning`; every rank is still counted in the whole ranking."""
    if method not in FUSIONS:
        raise ValueError(f"unknown fusion {method!r}: use one of {', '.join(FUSIONS)}")
    kw_ids, kw_s = np.asarray(keyword[0], dtype=np.int64), np.asarray(keyword[1], dtype=np.float64)
    sem_ids, sem_s = np.asarray(semantic[0], dtype=np.int64), np.asarray(semantic[1])
    if method == "combmnz":
        return _combmnz(kw_ids, kw_s, sem_ids, sem_s, limit, min_meaning)
    w_kw, w_sem = weights
    neg_sorted = np.sort(-sem_s)

    def sem_rank(values: np.ndarray) -> np.ndarray:  # 1 + how many semantic scores are higher
        return 1 + np.searchsorted(neg_sorted, -values, side="left")

    pos = positions(sem_ids, kw_ids)
    found = pos >= 0
    kw_score = w_kw / (k + competition_ranks(kw_s))
    kw_score[found] += w_sem / (k + sem_rank(sem_s[pos[found]]))
    others = np.ones(len(sem_ids), dtype=bool)
    others[pos[found]] = False
    others &= sem_s >= min_meaning
    cand = np.flatnonzero(others)
    if limit is not None and len(cand) > limit:
        s = sem_s[cand]
        kth = np.partition(-s, limit - 1)[limit - 1]
        cand = cand[-s <= kth]  # every image tied with the limit-th one: ties go by id below
    ids = np.concatenate([kw_ids, sem_ids[cand]])
    scores = np.concatenate([kw_score, w_sem / (k + sem_rank(sem_s[cand]))])
    sims = np.concatenate([np.where(found, sem_s[np.maximum(pos, 0)] if len(sem_s) else 0.0, np.nan),
                           sem_s[cand]])
    return _results(ids, scores, kw_s, sims, limit)


def _combmnz(kw_ids: np.ndarray, kw_s: np.ndarray, sem_ids: np.ndarray, sem_s: np.ndarray,
             limit: int | None, min_meaning: float) -> list[Fused]:
    """CombMNZ over min-max scores (see the module's docstring); meaning-only images below min_meaning out."""
    n_kw, n_sem = _minmax(kw_s), _minmax(np.asarray(sem_s, dtype=np.float64))
    pos = positions(sem_ids, kw_ids)
    found = pos >= 0
    kw_score = (n_kw + np.where(found, n_sem[np.maximum(pos, 0)] if len(n_sem) else 0.0, 0.0)) * (1 + found)
    others = np.ones(len(sem_ids), dtype=bool)
    others[pos[found]] = False
    others &= sem_s >= min_meaning
    cand = np.flatnonzero(others)
    ids = np.concatenate([kw_ids, sem_ids[cand]])
    scores = np.concatenate([kw_score, n_sem[cand]])
    sims = np.concatenate([np.where(found, sem_s[np.maximum(pos, 0)] if len(sem_s) else 0.0, np.nan),
                           sem_s[cand]])
    return _results(ids, scores, kw_s, sims, limit)


def _results(ids: np.ndarray, scores: np.ndarray, kw_s: np.ndarray, sims: np.ndarray,
             limit: int | None) -> list[Fused]:
    """The best `limit` of the fused candidates (keyword matches first in `ids`, then meaning-only ones)."""
    out = []
    for t in _best(scores, ids, limit):
        bm25 = float(kw_s[t]) if t < len(kw_s) else None
        sim = None if np.isnan(sims[t]) else float(sims[t])
        out.append(Fused(int(ids[t]), float(scores[t]), bm25, sim))
    return out


def _minmax(s: np.ndarray) -> np.ndarray:
    """One ranking's scores scaled to [0, 1] (all 1 when they are equal)."""
    if not len(s) or s.max() == s.min():
        return np.ones(len(s))
    return (s - s.min()) / (s.max() - s.min())


def contenders(keyword: tuple[np.ndarray, np.ndarray], semantic: tuple[np.ndarray, np.ndarray], error: float,
               limit: int, method: str = "combmnz") -> np.ndarray:
    """Ids of the keyword matches that could be among the first `limit` fused results if their similarity
    were off by up to `error` (the semantic ranking's best and lowest similarities being exact): those whose
    similarity must be exact for the first `limit` to be. rrf: every keyword match (its semantic ranks
    count every similarity)."""
    kw_ids, kw_s = np.asarray(keyword[0], dtype=np.int64), np.asarray(keyword[1], dtype=np.float64)
    sem_ids, sem_s = np.asarray(semantic[0], dtype=np.int64), np.asarray(semantic[1], dtype=np.float64)
    if method != "combmnz" or len(kw_ids) <= limit or not len(sem_s) or sem_s.max() == sem_s.min():
        return kw_ids
    pos = positions(sem_ids, kw_ids)
    found = pos >= 0
    low_s, span = sem_s.min(), sem_s.max() - sem_s.min()
    sims = sem_s[pos[found]]
    n_kw = _minmax(kw_s)
    low, high = n_kw.copy(), n_kw.copy()  # CombMNZ of an image the semantic ranking does not hold
    low[found] = 2 * (n_kw[found] + np.clip((sims - error - low_s) / span, 0.0, 1.0))
    high[found] = 2 * (n_kw[found] + np.clip((sims + error - low_s) / span, 0.0, 1.0))
    bar = np.partition(low, len(low) - limit)[len(low) - limit]  # the limit-th best is at least this
    return kw_ids[found & (high >= bar)]


def held(keyword: tuple[np.ndarray, np.ndarray], semantic: tuple[np.ndarray, np.ndarray]) -> int:
    """How many images either ranking holds (each ranking's ids unique)."""
    return len(semantic[0]) + int((positions(np.asarray(semantic[0], dtype=np.int64),
                                              np.asarray(keyword[0], dtype=np.int64)) < 0).sum())


def positions(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Index in `ids` (unique) of each wanted id; -1 where absent."""
    if not len(ids) or not len(wanted):
        return np.full(len(wanted), -1, dtype=np.int64)
    low, top = int(min(ids.min(), wanted.min())), int(max(ids.max(), wanted.max()))
    if low >= 0 and top < 8 * (len(ids) + len(wanted)) + 4096:  # database ids are dense: a lookup table
        table = np.full(top + 1, -1, dtype=np.int64)
        table[ids] = np.arange(len(ids))
        return table[wanted]
    order = np.argsort(ids, kind="stable")
    at = np.minimum(np.searchsorted(ids[order], wanted), len(ids) - 1)
    return np.where(ids[order][at] == wanted, order[at], -1)


def _best(scores: np.ndarray, ids: np.ndarray, limit: int | None) -> np.ndarray:
    """Positions of the `limit` best scores (all when None), best first, ties by smaller id."""
    cand = np.arange(len(scores))
    if limit is not None and limit < len(scores):
        kth = np.partition(-scores, limit - 1)[limit - 1]
        cand = cand[-scores <= kth]
    return cand[np.lexsort((ids[cand], -scores[cand]))][:limit]
