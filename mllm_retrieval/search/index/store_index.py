"""A keyword index over the store's text, kept in step with it through the change log.

The index remembers the last change-log sequence it has applied (its watermark). Before each
search it applies the changes since then (re-indexing only the images that changed), so it never
serves text the database no longer has; the sparse engine is saved next to the database
(atomically, with its watermark), so a restart loads it instead of rebuilding.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...library.identity import Stamp, derived_path, stamp
from ...library.store import Store
from ..documents import DOCUMENT_VERSION, keyword_documents
from .base import DEFAULT_ENGINE, Engine, get_engine
from .sparse_engine import SparseEngine

log = logging.getLogger(__name__)

FORMAT = 3  # the saved file's layout and the tokeniser (3: Snowball stems); what a document holds is
# documents.DOCUMENT_VERSION (both key the file)
REBUILD_FRACTION = 0.3  # more changed images than this share of the index: rebuild instead


class StoreIndex:
    """Image-level BM25 over a store, for all runs or a chosen set of runs."""

    def __init__(self, store: Store, run_ids: Sequence[int] | None = None,
                 engine: str = DEFAULT_ENGINE, persist: bool = True) -> None:
        self.store = store
        self.run_ids = sorted(run_ids) if run_ids is not None else None
        self.engine_name = engine
        self.engine: Engine | None = None
        self.doc_of: dict[int, int] = {}
        self.image_of: list[int] = []
        self.watermark = 0
        self.path = self._path() if persist else None

    def _path(self) -> Path | None:
        if self.store.path is None or self.engine_name != "sparse":
            return None
        runs = "all" if self.run_ids is None else ",".join(map(str, self.run_ids))
        key = hashlib.sha256(f"{FORMAT}:{DOCUMENT_VERSION}:{runs}".encode()).hexdigest()[:12]
        return derived_path(self.store, f"{self.store.path.name}.index-{key}.npz")

    def sync(self) -> int:
        """Apply what changed in the store since the last sync; returns images re-indexed."""
        head = self.store.change_head()
        if self.engine is None and not self._load(head):
            return self._rebuild(head)
        if head == self.watermark:
            return 0
        if self.watermark < self.store.changes_floor():  # the rows since the watermark were compacted
            return self._rebuild(head)
        changed = self.store.changed_images(self.watermark, head)
        if len(changed) > REBUILD_FRACTION * max(len(self.image_of), 1000):
            return self._rebuild(head)
        docs = keyword_documents(self.store.tile_texts(self.run_ids, changed))
        self.engine.remove(self.doc_of.pop(i) for i in changed if i in self.doc_of)
        self._add(docs)
        self.watermark = head
        self._save()
        return len(changed)

    def _rebuild(self, head: int) -> int:
        docs = keyword_documents(self.store.tile_texts(self.run_ids))
        self.engine, self.doc_of, self.image_of = get_engine(self.engine_name), {}, []
        self._add(docs)
        self.watermark = head
        self._save()
        return len(docs)

    def _add(self, docs: dict[int, list[str]]) -> None:
        ids = self.engine.add(list(docs.values()))  # ids continue from the last document
        self.image_of.extend(docs)
        self.doc_of.update(zip(docs, ids, strict=True))

    def _save(self) -> None:
        if self.path is None or not isinstance(self.engine, SparseEngine):
            return
        made = stamp(self.store, self.watermark)
        try:
            self.engine.save(self.path, extra={
                "image_of": np.asarray(self.image_of, dtype=np.int64),
                "watermark": np.asarray([self.watermark], dtype=np.int64),
                "format": np.asarray([FORMAT], dtype=np.int64),
                "library": np.frombuffer(made.library.encode(), dtype=np.uint8),
                "tail": np.asarray([made.tail], dtype=np.int64),
                "runs": np.asarray(self.run_ids or [], dtype=np.int64),  # none: all runs
            })
        except OSError as e:  # a read-only folder only costs a rebuild next time
            log.warning("could not save the search index to %s: %s", self.path, e)

    def _load(self, head: int) -> bool:
        if self.path is None or not self.path.exists():
            return False
        try:
            engine, extra = SparseEngine.load(self.path)
            made = Stamp(extra["library"].tobytes().decode(), int(extra["watermark"][0]),
                         int(extra["tail"][0]))
            image_of = extra["image_of"].tolist()
            if int(extra["format"][0]) != FORMAT or len(image_of) != len(engine.doc_len):
                raise ValueError("inconsistent contents")
        except Exception as e:  # a damaged, truncated or older file is rebuilt, never trusted
            log.warning("rebuilding the search index: %s is unreadable (%s)", self.path.name,
                        e or type(e).__name__)
            return False
        why = made.mismatch(self.store, head)
        if why is not None:
            log.warning("rebuilding the search index: %s was %s", self.path.name, why)
            return False
        watermark = made.watermark
        self.engine, self.image_of, self.watermark = engine, image_of, watermark
        self.doc_of = {img: d for d, img in enumerate(image_of) if engine.alive[d]}
        return True

    def search(self, terms: Sequence[str], k: int, must: Sequence[str] = (), exclude: Sequence[str] = (),
               weights: Sequence[float] | None = None) -> list[tuple[int, float]]:
        """Top-k (image_id, score) after catching up with the store; `weights`: one per term (default 1)."""
        self.sync()
        hits = self.engine.search(terms, k, must, exclude, weights)
        return [(self.image_of[d], s) for d, s in hits]

    def scores(self, terms: Sequence[str], must: Sequence[str] = (), exclude: Sequence[str] = (),
               weights: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(image ids, BM25 scores) of every image that matches, unordered, after catching up."""
        self.sync()
        if isinstance(self.engine, SparseEngine):
            docs, scores = self.engine.candidates(terms, must, exclude, weights)
        else:
            hits = self.engine.search(terms, len(self.image_of), must, exclude, weights)
            docs = np.asarray([d for d, _ in hits], dtype=np.int64)
            scores = np.asarray([s for _, s in hits], dtype=np.float64)
        return self._images()[docs], scores

    def images_with(self, terms: Sequence[str], every: bool = True) -> np.ndarray:
        """Image ids whose text holds every one (or, with every=False, any one) of the terms."""
        self.sync()
        found = None
        for term in dict.fromkeys(terms):
            docs = np.asarray(self.engine.docs_with(term), dtype=np.int64)
            found = docs if found is None else (np.intersect1d if every else np.union1d)(found, docs)
        if found is None:
            return np.zeros(0, dtype=np.int64)
        return self._images()[found]

    def _images(self) -> np.ndarray:
        """image_of as an array (cached until it changes: it only grows, or is replaced)."""
        cached = getattr(self, "_image_cache", None)
        if cached is None or cached[0] is not self.image_of or len(cached[1]) != len(self.image_of):
            cached = self._image_cache = (self.image_of, np.asarray(self.image_of, dtype=np.int64))
        return cached[1]

    def idf(self, term: str) -> float:
        """The engine's idf for a term."""
        return self.engine.idf(term) if self.engine else 0.0
