"""The default engine: BM25Okapi on numpy postings, exact to rank-bm25, incremental, saveable.

Postings are a compressed base (CSR by term) plus a small delta for documents added since the
last merge; removals are tombstones. Scores are computed at query time from the live corpus
(idf with rank-bm25's epsilon floor, doc lengths, avgdl), so adding or removing documents never
needs a rebuild, and only the postings of the query's terms are touched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .base import EPSILON, K1, B

MERGE_AT = 262_144  # delta postings before they are merged into the base


class SparseEngine:
    """Inverted index in numpy arrays; query cost grows with the postings of the query's terms."""

    name = "sparse"

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.terms: list[str] = []
        self.doc_len = np.zeros(0, dtype=np.float64)
        self.alive = np.zeros(0, dtype=bool)
        self.indptr = np.zeros(1, dtype=np.int64)
        self.post_docs = np.zeros(0, dtype=np.int32)
        self.post_tfs = np.zeros(0, dtype=np.float32)
        self._delta: dict[int, tuple[list[int], list[int]]] = {}
        self._delta_size = 0
        self._idf: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.alive.sum())

    # building
    def add(self, docs: Sequence[list[str]]) -> list[int]:
        """Index documents; large batches go straight to the base, small ones to the delta."""
        start = len(self.doc_len)
        ids = list(range(start, start + len(docs)))
        if not docs:
            return ids
        term_ids, doc_ids = self._encode(docs, start)
        self.doc_len = np.concatenate([self.doc_len, [len(d) for d in docs]])
        self.alive = np.concatenate([self.alive, np.ones(len(docs), dtype=bool)])
        keys = term_ids.astype(np.int64) << 32 | doc_ids
        keys, tfs = np.unique(keys, return_counts=True)
        if self._delta_size + len(keys) > MERGE_AT or len(self.post_docs) == 0:
            self._merge(keys, tfs)
        else:
            for key, tf in zip(keys.tolist(), tfs.tolist(), strict=True):
                docs_, tfs_ = self._delta.setdefault(key >> 32, ([], []))
                docs_.append(key & 0xFFFFFFFF)
                tfs_.append(tf)
            self._delta_size += len(keys)
        self._idf = None
        return ids

    def _encode(self, docs: Sequence[list[str]], start: int) -> tuple[np.ndarray, np.ndarray]:
        vocab, terms = self.vocab, self.terms
        flat: list[int] = []
        for doc in docs:
            for token in doc:
                tid = vocab.get(token)
                if tid is None:
                    tid = vocab[token] = len(terms)
                    terms.append(token)
                flat.append(tid)
        lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
        doc_ids = np.repeat(np.arange(start, start + len(docs), dtype=np.int64), lengths)
        return np.asarray(flat, dtype=np.int64), doc_ids

    def _merge(self, keys: np.ndarray, tfs: np.ndarray) -> None:
        """Fold the delta and new (term<<32|doc, tf) pairs into the CSR base."""
        parts_k, parts_t = [keys], [tfs.astype(np.float32)]
        if len(self.post_docs):
            base_terms = np.repeat(np.arange(len(self.indptr) - 1, dtype=np.int64), np.diff(self.indptr))
            parts_k.append(base_terms << 32 | self.post_docs.astype(np.int64))
            parts_t.append(self.post_tfs)
        for tid, (docs_, tfs_) in self._delta.items():
            parts_k.append(np.int64(tid) << 32 | np.asarray(docs_, dtype=np.int64))
            parts_t.append(np.asarray(tfs_, dtype=np.float32))
        all_k, all_t = np.concatenate(parts_k), np.concatenate(parts_t)
        order = np.argsort(all_k, kind="stable")
        all_k, all_t = all_k[order], all_t[order]
        term_of = all_k >> 32
        self.indptr = np.zeros(len(self.terms) + 1, dtype=np.int64)
        np.cumsum(np.bincount(term_of, minlength=len(self.terms)), out=self.indptr[1:])
        self.post_docs = (all_k & 0xFFFFFFFF).astype(np.int32)
        self.post_tfs = all_t
        self._delta, self._delta_size = {}, 0

    def remove(self, doc_ids: Iterable[int]) -> None:
        """Tombstone documents: they leave results and corpus statistics at once."""
        ids = np.fromiter(doc_ids, dtype=np.int64)
        if len(ids):
            self.alive[ids] = False
            self._idf = None

    # querying
    def _postings(self, tid: int) -> tuple[np.ndarray, np.ndarray]:
        docs, tfs = np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
        if tid < len(self.indptr) - 1:
            lo, hi = self.indptr[tid], self.indptr[tid + 1]
            docs, tfs = self.post_docs[lo:hi], self.post_tfs[lo:hi]
        if tid in self._delta:
            d, t = self._delta[tid]
            docs = np.concatenate([docs, np.asarray(d, dtype=np.int32)])
            tfs = np.concatenate([tfs, np.asarray(t, dtype=np.float32)])
        keep = self.alive[docs]
        return docs[keep], tfs[keep]

    def _idfs(self) -> np.ndarray:
        """rank-bm25's idf for every term of the live corpus (epsilon floor for negative ones)."""
        if self._idf is not None:
            return self._idf
        n_terms = len(self.terms)
        base_terms = np.repeat(np.arange(len(self.indptr) - 1), np.diff(self.indptr))
        df = np.bincount(base_terms[self.alive[self.post_docs]], minlength=n_terms).astype(np.float64)
        for tid, (docs_, _) in self._delta.items():
            df[tid] += np.count_nonzero(self.alive[np.asarray(docs_, dtype=np.int64)])
        n = float(self.alive.sum())
        present = df > 0
        idf = np.zeros(n_terms, dtype=np.float64)
        idf[present] = np.log(n - df[present] + 0.5) - np.log(df[present] + 0.5)
        if present.any():
            eps = EPSILON * idf[present].mean()
            idf[present & (idf < 0)] = eps
        self._idf = idf
        return idf

    def docs_with(self, term: str) -> np.ndarray:
        """Live documents that hold a term."""
        tid = self.vocab.get(term)
        return np.zeros(0, dtype=np.int32) if tid is None else self._postings(tid)[0]

    def idf(self, term: str) -> float:
        """The idf used for a term (0 when absent)."""
        tid = self.vocab.get(term)
        return float(self._idfs()[tid]) if tid is not None else 0.0

    def score_all(self, terms: Sequence[str], weights: Sequence[float] | None = None) -> np.ndarray:
        """BM25 score of every document (by id); -inf where no term matches or the doc was removed.

        `weights` scale each term's contribution (query expansion); default 1."""
        scores, hit = self._accumulate(terms, weights)
        scores[~hit] = -np.inf
        return scores

    def _accumulate(self, terms: Sequence[str], weights: Sequence[float] | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        idf = self._idfs()
        live = self.alive
        avgdl = float(self.doc_len[live].sum() / live.sum()) if live.any() else 1.0
        scores = np.zeros(len(self.doc_len), dtype=np.float64)
        hit = np.zeros(len(self.doc_len), dtype=bool)
        for n, term in enumerate(terms):
            tid = self.vocab.get(term)
            if tid is None:
                continue
            docs, tfs = self._postings(tid)
            norm = K1 * (1 - B + B * self.doc_len[docs] / (avgdl or 1.0))
            w = 1.0 if weights is None else weights[n]
            scores[docs] += w * idf[tid] * (tfs * (K1 + 1) / (tfs + norm))
            hit[docs] = True
        return scores, hit

    def candidates(self, terms: Sequence[str], must: Sequence[str] = (), exclude: Sequence[str] = (),
                   weights: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(doc ids, BM25 scores) of every live doc holding a term, all `must` and no `exclude` terms;
        `weights` (one per term, default 1) scale each term's contribution."""
        if not self.alive.any():
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        scores, hit = self._accumulate(terms, weights)
        for term in must:
            tid = self.vocab.get(term)
            allowed = np.zeros_like(hit)
            if tid is not None:
                allowed[self._postings(tid)[0]] = True
            hit &= allowed
        for term in exclude:
            tid = self.vocab.get(term)
            if tid is not None:
                hit[self._postings(tid)[0]] = False
        cand = np.flatnonzero(hit)
        return cand, scores[cand]

    def search(self, terms: Sequence[str], k: int, must: Sequence[str] = (), exclude: Sequence[str] = (),
               weights: Sequence[float] | None = None) -> list[tuple[int, float]]:
        """Top-k by (weighted) BM25Okapi among live docs holding a term, all `must` and no `exclude` terms."""
        if k <= 0:
            return []
        cand, s = self.candidates(terms, must, exclude, weights)
        if len(cand) > k:
            kth = np.partition(-s, k - 1)[k - 1]
            keep = -s <= kth  # keeps every doc tied with the k-th score
            cand, s = cand[keep], s[keep]
        order = np.lexsort((cand, -s))[:k]
        return [(int(d), float(x)) for d, x in zip(cand[order], s[order], strict=True)]

    # persistence
    def save(self, path: str | os.PathLike, extra: dict[str, np.ndarray] | None = None) -> None:
        """Write the index (and caller's arrays) to one .npz file atomically (temp file, fsync, rename)."""
        from ...library.identity import write_atomic

        if self._delta:
            self._merge(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
        terms = np.frombuffer(json.dumps(self.terms).encode(), dtype=np.uint8)
        arrays = {f"x_{k}": v for k, v in (extra or {}).items()}
        write_atomic(Path(path), lambda tmp: np.savez(
            tmp, doc_len=self.doc_len, alive=self.alive, indptr=self.indptr, post_docs=self.post_docs,
            post_tfs=self.post_tfs, terms=terms, idf=self._idfs(), **arrays), suffix=".tmp.npz")

    @classmethod
    def load(cls, path: str | os.PathLike) -> tuple[SparseEngine, dict[str, np.ndarray]]:
        """Read an index written by save(), with the caller's extra arrays."""
        engine = cls()
        with np.load(path) as data:
            engine.doc_len, engine.alive = data["doc_len"], data["alive"].copy()
            engine.indptr, engine.post_docs, engine.post_tfs = (
                data["indptr"], data["post_docs"], data["post_tfs"])
            engine.terms = json.loads(data["terms"].tobytes().decode())
            if "idf" in data.files:  # saved with the state it was computed from: a cold search skips it
                engine._idf = data["idf"]
            extra = {k[2:]: data[k] for k in data.files if k.startswith("x_")}
        engine.vocab = {t: i for i, t in enumerate(engine.terms)}
        return engine, extra
