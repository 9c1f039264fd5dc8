"""A semantic index over the store's text: one sentence embedding per image, kept in step with the store.

It follows the same change log as the keyword index (`store_index.StoreIndex`): it remembers the last
change-log sequence it has applied, and before each search re-embeds only the images whose text changed
since then — and of those only the ones whose embedding text really differs, since every row carries a
hash of the text it was embedded from. Images whose text is gone (deleted, replaced, missing) leave.

Search is cosine: the vectors are unit length, so one matrix-vector product scores every image (100k
images x 384 dims: a few ms, see bench/semantic_bench.py). Up to APPROX_FROM live images the scan is exact
float32, as evaluation's; above it an int8 copy of the rows is scanned (quantized.py, simsimd) and every
similarity that could (within the int8 error) be among the best EXACT_TOP, or the lowest, is re-scored
exactly, so the best results and the min-max span fusion normalises by are those of the exact scan (the
searcher re-scores the keyword matches fusion may need the same way). Without simsimd the scan stays
exact float32. Past a few million images, or with a larger model, an HNSW index pays (usearch, hnswlib,
faiss; see the README's semantic scale paragraph).

On disk (semantic_files.py): the rows and a sidecar next to the database. A first build saves every CHUNK
images: killed, it resumes where it was.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ...library.identity import file_stamp
from ...library.store import Store
from ..documents import embedding_texts
from . import quantized
from .quantized import Int8Rows, Similarities
from .semantic_files import FORMAT, SemanticFiles  # noqa: F401  (FORMAT: read by housekeeping)

log = logging.getLogger(__name__)

CHUNK = 2048  # images embedded between saves during a long sync
COMPACT_FRACTION = 0.5  # dead rows above this share (and above COMPACT_MIN) trigger a rewrite
COMPACT_MIN = 1024
REBUILD_FRACTION = 0.3  # more changed images than this share: one pass over all text (rows reused by hash)
APPROX_FROM = 200_000  # live images above which the scan is int8 + exact re-scoring (evaluation sets: <= 5k)
EXACT_TOP = 256  # at least this many best similarities of an approximate scan are exact


@dataclass
class CatchUp:
    """What `prepare` read and embedded (from the watermark `start` up to `head`), for `apply`."""

    start: int
    head: int
    texts: dict[int, str]
    gone: set[int]
    image_ids: list[int]
    vectors: np.ndarray
    hashes: list[int]


def text_hash(text: str) -> int:
    """64-bit hash of an embedding text (signed, to fit an int64 array)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little", signed=True)


class SemanticIndex(SemanticFiles):
    """Image-level sentence embeddings of a store's text, for all runs or a chosen set of runs."""

    def __init__(self, store: Store, run_ids: Sequence[int] | None = None, embedder=None,
                 persist: bool = True, progress: bool = False) -> None:
        from ..embedding import get_embedder  # numpy only; the model itself loads on first encode

        self.store = store
        self.run_ids = sorted(run_ids) if run_ids is not None else None
        self.embedder = get_embedder(embedder)
        self.progress = progress
        self.progress_from = CHUNK // 8  # a bar only for syncs longer than this many images
        self.dim = 0
        self._buf = np.zeros((0, 0), dtype=np.float32)
        self.n = 0
        self.image_of = np.zeros(0, dtype=np.int64)
        self.hashes = np.zeros(0, dtype=np.int64)
        self.alive = np.zeros(0, dtype=bool)
        self.row_of: dict[int, int] = {}
        self._dead: dict[int, int] = {}  # image -> its last dead row, revived if the same text comes back
        self.watermark = 0
        self.complete = False  # True once every image up to the watermark has its row
        self._loaded = False
        self._gen, self._saved_rows, self._crc = 0, 0, 0  # rows saved in the .f32 file, and their CRC-32
        self._stamp: tuple[int, int] | None = None  # the sidecar as this process last saw it
        self._lookup: tuple[np.ndarray, np.ndarray] | None = None
        self._int8: Int8Rows | None = None  # the rows in int8, above APPROX_FROM (made on first scan)
        self.path = self._path() if persist else None
        self.follow = True  # each search catches up first; False (serve): `prepare`/`apply` on another thread

    @property
    def vectors(self) -> np.ndarray:
        """(rows, dim) float32, dead rows included (see `alive`)."""
        return self._buf[: self.n]

    def __len__(self) -> int:
        return len(self.row_of)

    # keeping in step
    def backlog(self) -> int:
        """How many images may need embedding before a search by meaning (at most; 0: none), read from
        the saved index and the change log without loading the model."""
        head = self._open()
        if self.complete and head == self.watermark:
            return 0
        if not self.complete:  # the change log may be compacted: count images with text and no row
            return len(self.store.images_with_text() - self.row_of.keys())
        return len(self.store.changed_images(self.watermark, head))

    def _open(self) -> int:
        """The change-log head, after loading the saved index once."""
        head = self.store.change_head()
        if not self._loaded:
            self._loaded = True
            if not self._load(head):
                self._reset()
        elif self.path is not None and file_stamp(self.path) not in (self._stamp, None):
            self._load(head)  # another process (serve's embedding thread, `mllmret embed`) saved since
        return head

    def sync(self) -> int:
        """Apply what changed in the store since the last sync; returns the images (re-)embedded."""
        head = self._open()
        if self.complete and head == self.watermark:
            return 0
        texts, gone = self._changes(self.store, head)
        self._kill(gone)
        self._revive(texts)
        todo = self._todo(texts)
        if todo:
            log.info("embedding %d image texts with %s", len(todo), self.embedder.name)
        bar = self._bar(len(todo))
        for start in range(0, len(todo), CHUNK):
            part = todo[start : start + CHUNK]
            self._put([i for i, _, _ in part], self.embedder.encode([s for _, s, _ in part]),
                      [h for _, _, h in part])
            bar.update(len(part))
            if start + CHUNK < len(todo):
                self._save()  # the old watermark stays: a crash resumes from here, rows reused by hash
        bar.close()
        self.watermark, self.complete = head, True
        self._save()
        return len(todo)

    def refresh(self) -> None:
        """Before a search: catch up (`follow`), else only load what another process saved."""
        if self.follow:
            self.sync()
        else:
            self._open()

    def prepare(self, store: Store) -> CatchUp | None:
        """Read and embed what changed since the watermark through `store` (another thread's connection),
        the index left as it is; `apply` puts it in (serve: searches go on meanwhile). None: nothing to do,
        or no complete index loaded (`mllmret embed` builds one)."""
        if not self._loaded or not self.complete:
            return None
        start, head = self.watermark, store.change_head()
        if head == start:
            return None
        texts, gone = self._changes(store, head)
        back = self._revivable(texts)
        todo = [t for t in self._todo(texts) if t[0] not in back]
        texts_todo = [s for _, s, _ in todo]
        parts = [self.embedder.encode(texts_todo[at : at + CHUNK]) for at in range(0, len(todo), CHUNK)]
        vectors = np.concatenate(parts) if parts else np.zeros((0, self.dim), dtype=np.float32)
        return CatchUp(start, head, texts, gone, [i for i, _, _ in todo], vectors, [h for _, _, h in todo])

    def apply(self, c: CatchUp) -> bool:
        """Put a prepared catch-up in and save; False (nothing done) if the index moved since `prepare`."""
        if c.start != self.watermark or not self.complete:
            return False
        self._kill(c.gone)
        self._revive(c.texts)
        self._put(c.image_ids, c.vectors, c.hashes)
        self.watermark = c.head
        self._save()
        return True

    def _changes(self, store: Store, head: int) -> tuple[dict[int, str], set[int]]:
        """(embedding text of each image changed up to `head`, images whose text is gone)."""
        changed: set[int] | None = None
        if self.complete and self.watermark >= store.changes_floor():  # else: rows compacted, check all
            changed = store.changed_images(self.watermark, head)
            if len(changed) > REBUILD_FRACTION * max(len(self.row_of), 1000):
                changed = None
        wanted = None if changed is None else sorted(changed)
        texts = embedding_texts(store.tile_texts(self.run_ids, wanted))
        return texts, (set(self.row_of) if changed is None else changed) - texts.keys()

    def _todo(self, texts: dict[int, str]) -> list[tuple[int, str, int]]:
        """(image, text, hash) of the texts without a live row of the same hash: what needs embedding."""
        return [(i, s, h) for i, s in texts.items()
                for h in [text_hash(s)] if i not in self.row_of or self.hashes[self.row_of[i]] != h]

    def _bar(self, total: int):
        from tqdm import tqdm

        return tqdm(total=total, desc="embedding image texts", unit="image", leave=False,
                    disable=None if self.progress and total > self.progress_from else True)

    def _reset(self) -> None:
        self.n, self._buf = 0, np.zeros((0, 0), dtype=np.float32)
        self.image_of, self.hashes = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        self.alive, self.row_of, self._lookup, self._dead = np.zeros(0, dtype=bool), {}, None, {}
        self.watermark, self.complete, self._saved_rows, self._crc = 0, False, 0, 0
        self._int8 = None

    def _kill(self, image_ids: Iterable[int]) -> None:
        rows = {i: self.row_of.pop(i) for i in image_ids if i in self.row_of}
        if rows:
            self.alive[list(rows.values())] = False
            self._dead.update(rows)
            self._lookup = None

    def _revive(self, texts: dict[int, str]) -> None:
        """Images back with the text they had (a folder unmounted, then back): their old rows live again."""
        back = self._revivable(texts)
        if back:
            self.alive[list(back.values())] = True
            self.row_of.update(back)
            for i in back:
                del self._dead[i]
            self._lookup = None

    def _revivable(self, texts: dict[int, str]) -> dict[int, int]:
        """Dead rows of these images that hold their text as it is now."""
        return {i: r for i, r in self._dead.items()
                if i in texts and i not in self.row_of and self.hashes[r] == text_hash(texts[i])}

    def _put(self, image_ids: list[int], vecs: np.ndarray, hashes: list[int]) -> None:
        """Append rows for these images (their old rows die)."""
        if not image_ids:
            return
        if self.dim == 0:
            self.dim = vecs.shape[1]
        if vecs.shape[1] != self.dim:
            raise ValueError(f"embedder gives {vecs.shape[1]} dims, the index has {self.dim}")
        self._kill(image_ids)
        need = self.n + len(image_ids)
        if need > len(self._buf):
            buf = np.zeros((max(need, 2 * len(self._buf), 256), self.dim), dtype=np.float32)
            if self.n:
                buf[: self.n] = self._buf[: self.n]
            self._buf = buf
        self._buf[self.n : need] = vecs
        ids = np.asarray(image_ids, dtype=np.int64)
        self.image_of = np.concatenate([self.image_of, ids])
        self.hashes = np.concatenate([self.hashes, np.asarray(hashes, dtype=np.int64)])
        self.alive = np.concatenate([self.alive, np.ones(len(ids), dtype=bool)])
        self.row_of.update(zip(image_ids, range(self.n, need), strict=True))
        self.n = need

    def _compact_if_due(self) -> None:
        dead = self.n - len(self.row_of)
        if dead > COMPACT_MIN and dead > COMPACT_FRACTION * self.n:
            self._compact()

    def _int8_for(self, live: int, dim: int) -> Int8Rows | None:
        """An int8 copy to fill when `live` images are scanned that way (else None: rows read into memory)."""
        return Int8Rows(dim) if _approximate(live) else None

    def _compact(self) -> None:
        keep = np.flatnonzero(self.alive)
        self._buf = np.ascontiguousarray(self.vectors[keep])
        self.image_of, self.hashes = self.image_of[keep], self.hashes[keep]
        self.alive = np.ones(len(keep), dtype=bool)
        self.n = len(keep)
        self.row_of = {int(i): r for r, i in enumerate(self.image_of.tolist())}
        self._lookup, self._saved_rows, self._crc, self._dead = None, 0, 0, {}
        self._gen += 1
        self._int8 = None

    # querying
    def rows_of(self, image_ids: np.ndarray) -> np.ndarray:
        """Live rows of these image ids (ids without a row are skipped)."""
        if self._lookup is None:
            rows = np.flatnonzero(self.alive)
            order = np.argsort(self.image_of[rows], kind="stable")
            self._lookup = (self.image_of[rows][order], rows[order])
        ids_sorted, rows_sorted = self._lookup
        ids = np.asarray(image_ids, dtype=np.int64)
        if not len(ids_sorted) or not len(ids):
            return np.zeros(0, dtype=np.int64)
        pos = np.minimum(np.searchsorted(ids_sorted, ids), len(ids_sorted) - 1)
        return rows_sorted[pos[ids_sorted[pos] == ids]]

    def scores(self, query: np.ndarray, include: np.ndarray | None = None, exclude: np.ndarray | None = None,
               min_similarity: float = -1.0) -> tuple[np.ndarray, np.ndarray]:
        """(image ids, cosine) of each image allowed by `include`/`exclude` (image ids), after catching up;
        above APPROX_FROM images only the best EXACT_TOP and the lowest are sure to be exact."""
        return self.similarities(query, include, exclude, min_similarity).pair

    def similarities(self, query: np.ndarray, include: np.ndarray | None = None,
                     exclude: np.ndarray | None = None, min_similarity: float = -1.0) -> Similarities:
        """`scores` with what it takes to make more of them exact (quantized.Similarities)."""
        self.refresh()
        q = np.asarray(query, dtype=np.float32)
        if not self.row_of:
            none = np.zeros(0, dtype=np.int64)
            return Similarities(none, np.zeros(0, dtype=np.float32), none, self.vectors, q)
        int8 = self._quantised()
        sims, error = int8.scores(q) if int8 is not None else (scan(self.vectors, q), 0.0)
        ok = self.alive & (sims >= min_similarity - 2 * error)
        if include is not None:
            allowed = np.zeros(self.n, dtype=bool)
            allowed[self.rows_of(include)] = True
            ok &= allowed
        if exclude is not None:
            ok[self.rows_of(exclude)] = False
        rows = np.flatnonzero(ok)
        found = Similarities(self.image_of[rows], sims[rows], rows, self.vectors, q, error)
        if error:
            found.settle(EXACT_TOP, min_similarity)
            if min_similarity > -1.0:
                keep = found.sims >= min_similarity
                found.ids, found.sims, found.rows = found.ids[keep], found.sims[keep], found.rows[keep]
        return found

    def _quantised(self) -> Int8Rows | None:
        """The rows in int8, caught up with the float32 ones; None (scan exactly) up to APPROX_FROM live
        images or without simsimd."""
        if not _approximate(len(self.row_of)):
            return None
        if self._int8 is None:
            self._int8 = Int8Rows(self.dim)
        if len(self._int8) < self.n:
            self._int8.extend(self.vectors[len(self._int8) :])
        return self._int8

    def search(self, query: np.ndarray, k: int, include: np.ndarray | None = None,
               exclude: np.ndarray | None = None, min_similarity: float = -1.0) -> list[tuple[int, float]]:
        """Top-k (image_id, cosine), best first, ties by image id (see `scores`)."""
        ids, sims = self.scores(query, include, exclude, min_similarity)
        top = _top(sims, np.ones(len(ids), dtype=bool), max(k, 0), ids)
        return [(int(ids[t]), float(sims[t])) for t in top]


def _approximate(live: int) -> bool:
    """Whether an index of `live` images scans int8 (with exact re-scoring) rather than float32."""
    return live > APPROX_FROM and quantized.available()


def scan(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """vectors @ query on one BLAS thread. The product is memory-bound (a second thread gains ~4 ms at
    100k x 384), and BLAS threads left spinning after it slow the next query's embedding down by far
    more; bench/semantic_bench.py measures both."""
    from ..blas import one_thread

    with one_thread():
        return vectors @ query


def _top(scores: np.ndarray, ok: np.ndarray, k: int, tiebreak: np.ndarray) -> np.ndarray:
    """Indices of the k best scores where ok, best first; ties by smaller `tiebreak`."""
    cand = np.flatnonzero(ok)
    if len(cand) > k:
        s = scores[cand]
        kth = np.partition(-s, k - 1)[k - 1]
        cand = cand[-s <= kth]
    order = np.lexsort((tiebreak[cand], -scores[cand]))[:k]
    return cand[order]
