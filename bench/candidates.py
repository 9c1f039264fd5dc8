"""Engines considered for the default and measured by search_bench.py; not used by the product.

- fts5: SQLite FTS5 over the same tokens (joined by spaces), ranked with its bm25() (k1=1.2,
  b=0.75, idf floored at 1e-6: not rank-bm25's parameters). Incremental and transactional.
- bm25s: sparse-matrix BM25 (method "robertson", k1=1.5, b=0.75). Static: adding documents means
  indexing the whole corpus again, which is what add1k measures here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence


class FTS5Engine:
    """SQLite FTS5 in memory, one row per document."""

    name = "fts5"

    def __init__(self) -> None:
        self.db = sqlite3.connect(":memory:")
        self.db.execute(
            "CREATE VIRTUAL TABLE docs USING fts5(body, tokenize='unicode61 remove_diacritics 0')"
        )
        self.n = 0

    def add(self, docs: Sequence[list[str]]) -> list[int]:
        start = self.n
        with self.db:
            self.db.executemany("INSERT INTO docs (rowid, body) VALUES (?, ?)",
                                ((start + i, " ".join(d)) for i, d in enumerate(docs)))
        self.n += len(docs)
        return list(range(start, self.n))

    def remove(self, doc_ids: Iterable[int]) -> None:
        with self.db:
            self.db.executemany("DELETE FROM docs WHERE rowid = ?", ((i,) for i in doc_ids))

    def search(self, terms: Sequence[str], k: int, must=(), exclude=()) -> list[tuple[int, float]]:
        match = " OR ".join(f'"{t}"' for t in terms)
        rows = self.db.execute(
            "SELECT rowid, -bm25(docs) AS s FROM docs WHERE docs MATCH ? ORDER BY s DESC, rowid LIMIT ?",
            [match, k]).fetchall()
        return [(int(r), float(s)) for r, s in rows]


class BM25sEngine:
    """bm25s, re-indexed from scratch whenever documents are added."""

    name = "bm25s"

    def __init__(self) -> None:
        import bm25s

        self._bm25s = bm25s
        self.docs: list[list[str]] = []
        self.model = None

    def add(self, docs: Sequence[list[str]]) -> list[int]:
        start = len(self.docs)
        self.docs.extend(docs)
        self.model = self._bm25s.BM25(method="robertson", k1=1.5, b=0.75)
        self.model.index(self.docs, show_progress=False)
        return list(range(start, len(self.docs)))

    def search(self, terms: Sequence[str], k: int, must=(), exclude=()) -> list[tuple[int, float]]:
        known = [t for t in terms if t in self.model.vocab_dict]
        if not known:
            return []
        docs, scores = self.model.retrieve([known], k=k, show_progress=False, n_threads=1)
        return [(int(d), float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]
