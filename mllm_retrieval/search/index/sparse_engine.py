"""The default engine: BM25Okapi on numpy postings, exact to rank-bm25, incremental, saveable.

Postings are a compressed base (CSR by term) plus a small delta for documents added since the
last merge; removals are tombstones. Scores are computed at query time from the live corpus
(idf with rank-bm25's epsilon floor, doc lengths, avgdl), so adding or removing documents never
needs a rebuild, and only the postings of the query's terms are touched.

Document ids only grow, so new postings always belong at the end of their term's run: a merge inserts
them there (one copy of the base, no sort), and the delta may grow with the base (MERGE_FRACTION), which
keeps the merge cost per new document independent of the index size. On disk an index is a whole file
(`save`) plus segments (`segment`/`apply_segment`): what was added and removed since the last save, so
that saving after a catch-up costs what changed, not the index; `purge` drops tombstoned documents.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .base import EPSILON, K1, B

MERGE_AT = 262_144  # delta postings before they are merged into the base (at least)
MERGE_FRACTION = 0.125  # or this share of the base's postings, if more
MAX_CHUNKS = 16  # delta chunks (one per add) searched before they are merged into the base


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
        self._delta: list[tuple[np.ndarray, np.ndarray]] = []  # sorted (term<<32|doc, tf) chunks, newer docs
        self._delta_size = 0
        self._df: np.ndarray | None = None  # live documents per term, kept up to date through adds
        self._idf: np.ndarray | None = None
        self._saved = (0, 0)  # (documents, terms) already on disk: a segment holds what came after
        self._unsaved: list[tuple[np.ndarray, np.ndarray]] = []  # (keys, tfs) of documents since then
        self._removed: list[np.ndarray] = []  # documents tombstoned since then

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
        self._unsaved.append((keys, tfs))
        self._put(keys, tfs)
        self._idf = None
        return ids

    def _put(self, keys: np.ndarray, tfs: np.ndarray) -> None:
        """Sorted (term<<32|doc, tf) pairs of new documents into the delta, or merged into the base."""
        if self._df is not None:
            self._df = _grown(self._df, len(self.terms))
            self._df += np.bincount(keys >> 32, minlength=len(self.terms))
        if len(keys):
            self._delta.append((keys, tfs.astype(np.float32)))
            self._delta_size += len(keys)
        if self._delta_size > max(MERGE_AT, MERGE_FRACTION * len(self.post_docs)) or \
                len(self._delta) > MAX_CHUNKS or len(self.post_docs) == 0:
            self._flush()

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

    def _flush(self) -> None:
        """Fold the delta into the CSR base. Its documents are newer than the base's, so each posting goes
        at the end of its term's run: an insert (one copy of the base), not a sort of it."""
        if not self._delta:
            return
        new_k = np.concatenate([k for k, _ in self._delta])
        new_t = np.concatenate([t for _, t in self._delta])
        order = np.argsort(new_k, kind="stable")  # the delta only (the base is already in order)
        new_k, new_t = new_k[order], new_t[order]
        term_of = new_k >> 32
        n_terms = len(self.terms)
        old_ptr = _grown(self.indptr, n_terms + 1, self.indptr[-1])
        at = old_ptr[term_of + 1]  # after the term's last posting in the base
        self.post_docs = np.insert(self.post_docs, at, (new_k & 0xFFFFFFFF).astype(np.int32))
        self.post_tfs = np.insert(self.post_tfs, at, new_t)
        added = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(np.bincount(term_of, minlength=n_terms), out=added[1:])
        self.indptr = old_ptr + added
        self._delta, self._delta_size = [], 0

    def remove(self, doc_ids: Iterable[int]) -> None:
        """Tombstone documents: they leave results and corpus statistics at once."""
        ids = np.fromiter(doc_ids, dtype=np.int64)
        if len(ids):
            self.alive[ids] = False
            self._removed.append(ids)
            self._df = self._idf = None  # their terms are not at hand: counted again when next needed

    def dead(self) -> int:
        """Tombstoned documents still held."""
        return len(self.alive) - len(self)

    def purge(self) -> np.ndarray:
        """Drop tombstoned documents for good; returns each old id's new id (-1: purged)."""
        self._flush()
        keep = self.alive
        new_id = np.full(len(keep), -1, dtype=np.int64)
        new_id[keep] = np.arange(int(keep.sum()))
        live = keep[self.post_docs]
        before = np.concatenate([[0], np.cumsum(live, dtype=np.int64)])  # live postings before each one
        self.indptr = before[self.indptr]
        self.post_docs = new_id[self.post_docs[live]].astype(np.int32)
        self.post_tfs = self.post_tfs[live]
        self.doc_len, self.alive = self.doc_len[keep], np.ones(int(keep.sum()), dtype=bool)
        self._idf = None
        return new_id

    # querying
    def _postings(self, tid: int) -> tuple[np.ndarray, np.ndarray]:
        docs, tfs = [np.zeros(0, dtype=np.int32)], [np.zeros(0, dtype=np.float32)]
        if tid < len(self.indptr) - 1:
            lo, hi = self.indptr[tid], self.indptr[tid + 1]
            docs[0], tfs[0] = self.post_docs[lo:hi], self.post_tfs[lo:hi]
        for keys, chunk_tfs in self._delta:
            lo, hi = np.searchsorted(keys, [tid << 32, (tid + 1) << 32])
            if hi > lo:
                docs.append((keys[lo:hi] & 0xFFFFFFFF).astype(np.int32))
                tfs.append(chunk_tfs[lo:hi])
        docs, tfs = (docs[0], tfs[0]) if len(docs) == 1 else (np.concatenate(docs), np.concatenate(tfs))
        keep = self.alive[docs]
        return docs[keep], tfs[keep]

    def _idfs(self) -> np.ndarray:
        """rank-bm25's idf for every term of the live corpus (epsilon floor for negative ones)."""
        if self._idf is not None:
            return self._idf
        n_terms = len(self.terms)
        if self._df is None:
            live = np.concatenate([[0], np.cumsum(self.alive[self.post_docs], dtype=np.int64)])
            df = _grown(live[self.indptr[1:]] - live[self.indptr[:-1]], n_terms)
            for keys, _ in self._delta:
                df += np.bincount(keys[self.alive[keys & 0xFFFFFFFF]] >> 32, minlength=n_terms)
            self._df = df
        df = self._df.astype(np.float64)
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

        self._flush()
        terms = np.frombuffer(json.dumps(self.terms).encode(), dtype=np.uint8)
        arrays = {f"x_{k}": v for k, v in (extra or {}).items()}
        write_atomic(Path(path), lambda tmp: np.savez(
            tmp, doc_len=self.doc_len, alive=self.alive, indptr=self.indptr, post_docs=self.post_docs,
            post_tfs=self.post_tfs, terms=terms, idf=self._idfs(), **arrays), suffix=".tmp.npz")
        self.mark_saved()

    def mark_saved(self) -> None:
        """Everything so far is on disk (or need not be): the next segment starts here."""
        self._saved = (len(self.doc_len), len(self.terms))
        self._unsaved, self._removed = [], []

    def unsaved(self) -> int:
        """Postings and tombstones a segment would hold now."""
        return sum(len(k) for k, _ in self._unsaved) + sum(len(r) for r in self._removed)

    def segment(self) -> dict[str, np.ndarray]:
        """What changed since the last save (new terms, new documents' postings, tombstones) as arrays."""
        docs, terms = self._saved
        keys = [k for k, _ in self._unsaved]
        return {
            "span": np.asarray([docs, len(self.doc_len), terms, len(self.terms)], dtype=np.int64),
            "terms": np.frombuffer(json.dumps(self.terms[terms:]).encode(), dtype=np.uint8),
            "doc_len": self.doc_len[docs:],
            "keys": np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64),
            "tfs": np.concatenate([t for _, t in self._unsaved]).astype(np.float32) if keys
            else np.zeros(0, dtype=np.float32),
            "removed": np.concatenate(self._removed) if self._removed else np.zeros(0, dtype=np.int64),
        }

    def apply_segment(self, seg: dict[str, np.ndarray]) -> None:
        """Replay a segment() on the index it was taken from; ValueError if it does not continue this one."""
        docs, docs_end, terms, terms_end = (int(v) for v in seg["span"])
        new_terms = json.loads(seg["terms"].tobytes().decode())
        keys, tfs, removed, doc_len = seg["keys"], seg["tfs"], seg["removed"], seg["doc_len"]
        if (docs, terms) != (len(self.doc_len), len(self.terms)) or len(new_terms) != terms_end - terms \
                or len(doc_len) != docs_end - docs or len(keys) != len(tfs):
            raise ValueError("a segment that does not continue the index")
        order = np.argsort(keys, kind="stable")
        keys, tfs = keys[order], tfs[order]
        doc_of, term_of = keys & 0xFFFFFFFF, keys >> 32
        if len(keys) and (doc_of.min() < docs or doc_of.max() >= docs_end or term_of.min() < 0
                          or term_of.max() >= terms_end or np.any(np.diff(keys) == 0)) \
                or len(removed) and (removed.min() < 0 or removed.max() >= docs_end):
            raise ValueError("a segment with postings out of range")
        self.terms.extend(new_terms)
        self.vocab.update((t, terms + i) for i, t in enumerate(new_terms))
        self.doc_len = np.concatenate([self.doc_len, doc_len.astype(np.float64)])
        self.alive = np.concatenate([self.alive, np.ones(len(doc_len), dtype=bool)])
        self._put(keys, tfs)
        if len(removed):
            self.alive[removed] = False
            self._df = None
        self._idf = None
        self.mark_saved()

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
        engine.mark_saved()
        return engine, extra


def _grown(a: np.ndarray, n: int, fill: int = 0) -> np.ndarray:
    """`a` extended to length n with `fill` (new terms: no postings yet)."""
    return a if len(a) >= n else np.concatenate([a, np.full(n - len(a), fill, dtype=a.dtype)])
