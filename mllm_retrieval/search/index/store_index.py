"""A keyword index over the store's text, kept in step with it through the change log.

The index remembers the last change-log sequence it has applied (its watermark). Before each
search it applies the changes since then (re-indexing only the images that changed), so it never
serves text the database no longer has; the sparse engine is saved next to the database, so a restart
loads it instead of rebuilding.

On disk (the Lucene way): a base file `<db>.index-<key>.npz` holding the whole index, and segment files
`<db>.index-<key>.seg<N>.npz` each holding what one catch-up changed (new terms, new documents'
postings, tombstones), so saving after a catch-up costs what changed, not the library. Every file is
written atomically and records the library's identity and the change-log state it reflects (its
`Stamp`); each has a random token and names its parent's (the base, or segment N-1), so a load replays
the chain of segments that continue the base and stops at the first foreign, stale, damaged or
orphaned one (a one-line notice), then catches up from the change log. A kill at any moment leaves the
base and a prefix of the chain: a usable index. Segments are merged FANOUT at a time into one of the
next level (each posting is rewritten about log_FANOUT(catch-ups) times), and into a new base once they
hold BASE_FRACTION of the base's postings or tombstones are over PURGE_FRACTION (purged then).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...library.identity import Stamp, derived_path, file_stamp, locked, stamp, write_atomic
from ...library.store import Store
from ..documents import DOCUMENT_VERSION, keyword_documents
from .base import DEFAULT_ENGINE, Engine, get_engine
from .sparse_engine import SparseEngine

log = logging.getLogger(__name__)

FORMAT = 4  # the saved files' layout and the tokeniser (3: Snowball stems, 4: segments); what a document
# holds is documents.DOCUMENT_VERSION (both key the file)
REBUILD_FRACTION = 0.3  # more changed images than this share of the index: rebuild instead
FANOUT = 8  # segments of one level merged into one of the next
BASE_FRACTION = 0.25  # segments holding this share of the base's postings: a new base
PURGE_FRACTION = 0.2  # tombstoned documents over this share: a new base without them


@dataclass(frozen=True)
class CatchUp:
    """The store's changes between two watermarks, read and tokenised (`StoreIndex.prepare`)."""

    since: int
    head: int
    changed: set[int] | None  # None: every image (a rebuild)
    docs: dict[int, list[str]]


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
        self._chain: list[tuple[int, int, int]] = []  # (token, level, postings): the base, then segments
        self._disk: tuple[int, int] | None = None  # the last file of the chain as this process left it
        self._saved_watermark = 0  # the watermark the chain on disk reflects
        self.follow = True  # catch up before every search; False: the owner does (serve, in the background)

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
            return self.apply(CatchUp(self.watermark, head, None,
                                      keyword_documents(self.store.tile_texts(self.run_ids))))
        return self.apply(self.prepare(head=head))

    def prepare(self, store: Store | None = None, head: int | None = None) -> CatchUp | None:
        """What changed since the watermark, read and tokenised (the slow part of a catch-up) without
        touching the index: `store` may be another connection, on another thread; None: no change."""
        store = store or self.store
        head = store.change_head() if head is None else head
        since = self.watermark
        if head == since:
            return None
        changed = None  # None: everything (the rows since the watermark were compacted, or too many changed)
        if since >= store.changes_floor():
            changed = store.changed_images(since, head)
            if len(changed) > REBUILD_FRACTION * max(len(self.image_of), 1000):
                changed = None
        return CatchUp(since, head, changed, keyword_documents(store.tile_texts(self.run_ids, changed)))

    def apply(self, catch: CatchUp | None) -> int:
        """Bring the index to what `prepare` read (quick), then save; returns images re-indexed (0 when the
        index moved on meanwhile: the catch-up was for another state)."""
        if catch is None or catch.since != self.watermark:
            return 0
        if catch.changed is None:
            self.engine, self.doc_of, self.image_of = get_engine(self.engine_name), {}, []
            self._chain = []  # a new base, never a segment of the old one
        else:
            self.engine.remove(self.doc_of.pop(i) for i in catch.changed if i in self.doc_of)
        self._add(catch.docs)
        self.watermark = catch.head
        self._save()
        return len(catch.docs) if catch.changed is None else len(catch.changed)

    def _add(self, docs: dict[int, list[str]]) -> None:
        ids = self.engine.add(list(docs.values()))  # ids continue from the last document
        self.image_of.extend(docs)
        self.doc_of.update(zip(docs, ids, strict=True))

    def _save(self) -> None:
        """Persist what changed since the last save: a segment, or a new base when that pays."""
        engine = self.engine
        if not isinstance(engine, SparseEngine):
            return
        if self.path is None:
            engine.mark_saved()
            return
        try:
            with locked(self.path):
                if not self._chain or self._disk != file_stamp(self._last_file()) or self._base_pays():
                    self._write_base()  # first save, another process wrote since, or it pays
                elif engine.unsaved() or self.watermark != self._saved_watermark:
                    self._write_segment()
        except OSError as e:  # a read-only folder only costs a rebuild next time
            log.warning("could not save the search index to %s: %s", self.path, e)

    def _base_pays(self) -> bool:
        base = max(self._chain[0][2], 1)
        segments = sum(p for _, _, p in self._chain[1:]) + self.engine.unsaved()
        return segments > BASE_FRACTION * base or self.engine.dead() > PURGE_FRACTION * len(self.image_of)

    def _stamp_arrays(self, token: int, first_doc: int = 0) -> dict[str, np.ndarray]:
        """The file's stamp, and the images of its documents from `first_doc` on."""
        made = stamp(self.store, self.watermark)
        return {
            "image_of": np.asarray(self.image_of[first_doc:], dtype=np.int64),
            "watermark": np.asarray([self.watermark], dtype=np.int64),
            "format": np.asarray([FORMAT], dtype=np.int64),
            "library": np.frombuffer(made.library.encode(), dtype=np.uint8),
            "tail": np.asarray([made.tail], dtype=np.int64),
            "runs": np.asarray(self.run_ids or [], dtype=np.int64),  # none: all runs
            "token": np.asarray([token], dtype=np.int64),
        }

    def _write_base(self) -> None:
        """The whole index in one file (tombstones purged when they are many); segments deleted."""
        if self.engine.dead() > PURGE_FRACTION * len(self.image_of):
            self._purge()
        token = _token()
        self.engine.save(self.path, extra=self._stamp_arrays(token))
        self._chain, self._saved_watermark = [(token, 0, len(self.engine.post_docs))], self.watermark
        self._disk = file_stamp(self.path)
        for old in self.path.parent.glob(f"{self.path.stem}.seg*.npz"):
            old.unlink(missing_ok=True)

    def _purge(self) -> None:
        new_id = self.engine.purge()
        self.image_of = np.asarray(self.image_of, dtype=np.int64)[new_id >= 0].tolist()
        self.doc_of = {img: d for d, img in enumerate(self.image_of)}

    def _write_segment(self) -> None:
        """What changed since the last save as segment N+1, then the trailing segments merged by level."""
        seg = self.engine.segment()
        postings = len(seg["keys"]) + len(seg["removed"])
        n, token = len(self._chain), _token()
        arrays = {**seg, **self._stamp_arrays(token, int(seg["span"][0])),
                  "parent": np.asarray([self._chain[-1][0]], np.int64), "level": np.asarray([0], np.int64)}
        _write(self._segment_path(n), arrays)
        self._segment_path(n + 1).unlink(missing_ok=True)  # a stale chain's next segment, if any
        self.engine.mark_saved()
        self._chain.append((token, 0, postings))
        self._saved_watermark = self.watermark
        level = 0
        while len(self._chain) > FANOUT and all(lv == level for _, lv, _ in self._chain[-FANOUT:]):
            try:
                self._merge_segments(len(self._chain) - FANOUT, level + 1)
            except (ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # a segment went bad on disk
                log.warning("search index: segments unreadable (%s); writing the whole index", e)
                self._write_base()
                return
            level += 1
        self._disk = file_stamp(self._last_file())

    def _merge_segments(self, first: int, level: int) -> None:
        """Segments first.. (all to the end) into one segment `first` of `level`, then the rest deleted."""
        parts = [_read(self._segment_path(i)) for i in range(first, len(self._chain))]
        token = _token()
        merged = combine(parts)
        merged.update(token=np.asarray([token], np.int64), level=np.asarray([level], np.int64),
                      parent=parts[0]["parent"])
        _write(self._segment_path(first), merged)
        for i in range(first + 1, len(self._chain)):
            self._segment_path(i).unlink(missing_ok=True)
        self._chain[first:] = [(token, level, sum(p for _, _, p in self._chain[first:]))]

    def _segment_path(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.stem}.seg{n}.npz")

    def _last_file(self) -> Path:
        return self._segment_path(len(self._chain) - 1) if len(self._chain) > 1 else self.path

    def _load(self, head: int) -> bool:
        if self.path is None or not self.path.exists():
            return False
        try:
            with locked(self.path):
                return self._load_chain(head)
        except OSError as e:
            log.warning("rebuilding the search index: %s is unreadable (%s)", self.path.name, e)
            return False

    def _load_chain(self, head: int) -> bool:
        """The base, then every segment that continues it; False when the base cannot be used."""
        try:
            engine, extra = SparseEngine.load(self.path)
            made = _made(extra)
            image_of = extra["image_of"].tolist()
            if int(extra["format"][0]) != FORMAT or len(image_of) != len(engine.doc_len):
                raise ValueError("inconsistent contents")
            chain = [(int(extra["token"][0]), 0, len(engine.post_docs))]
        except Exception as e:  # a damaged, truncated or older file is rebuilt, never trusted
            log.warning("rebuilding the search index: %s is unreadable (%s)", self.path.name,
                        e or type(e).__name__)
            return False
        library = made.library
        while (seg_path := self._segment_path(len(chain))).exists():
            try:
                seg = _read(seg_path)
                seg_made = _made(seg)
                if seg_made.library != library:
                    raise ValueError("made for another library")
                if int(seg["parent"][0]) != chain[-1][0] or int(seg["format"][0]) != FORMAT \
                        or seg_made.watermark < made.watermark:
                    raise ValueError("it does not continue the index before it")
                if len(seg["image_of"]) != len(seg["doc_len"]):
                    raise ValueError("inconsistent contents")
                engine.apply_segment(seg)
            except Exception as e:  # never used: the change log brings the index up from here
                log.warning("search index: not using %s (%s); catching up from the database", seg_path.name,
                            e or type(e).__name__)
                break
            image_of += seg["image_of"].tolist()
            made = seg_made
            chain.append((int(seg["token"][0]), int(seg["level"][0]), len(seg["keys"]) + len(seg["removed"])))
        why = made.mismatch(self.store, head)
        if why is not None:
            log.warning("rebuilding the search index: %s was %s", self.path.name, why)
            return False
        self.engine, self.image_of, self.watermark = engine, image_of, made.watermark
        self.doc_of = {img: d for d, img in enumerate(image_of) if engine.alive[d]}
        self._chain, self._saved_watermark = chain, made.watermark
        self._disk = file_stamp(self._last_file())
        return True

    def search(self, terms: Sequence[str], k: int, must: Sequence[str] = (), exclude: Sequence[str] = (),
               weights: Sequence[float] | None = None) -> list[tuple[int, float]]:
        """Top-k (image_id, score) after catching up with the store; `weights`: one per term (default 1)."""
        self._ready()
        hits = self.engine.search(terms, k, must, exclude, weights)
        return [(self.image_of[d], s) for d, s in hits]

    def scores(self, terms: Sequence[str], must: Sequence[str] = (), exclude: Sequence[str] = (),
               weights: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(image ids, BM25 scores) of every image that matches, unordered, after catching up."""
        self._ready()
        if isinstance(self.engine, SparseEngine):
            docs, scores = self.engine.candidates(terms, must, exclude, weights)
        else:
            hits = self.engine.search(terms, len(self.image_of), must, exclude, weights)
            docs = np.asarray([d for d, _ in hits], dtype=np.int64)
            scores = np.asarray([s for _, s in hits], dtype=np.float64)
        return self._images()[docs], scores

    def images_with(self, terms: Sequence[str], every: bool = True) -> np.ndarray:
        """Image ids whose text holds every one (or, with every=False, any one) of the terms."""
        self._ready()
        found = None
        for term in dict.fromkeys(terms):
            docs = np.asarray(self.engine.docs_with(term), dtype=np.int64)
            found = docs if found is None else (np.intersect1d if every else np.union1d)(found, docs)
        if found is None:
            return np.zeros(0, dtype=np.int64)
        return self._images()[found]

    def _ready(self) -> None:
        """Caught up with the store (or, when not following it, at least loaded)."""
        if self.follow or self.engine is None:
            self.sync()

    def _images(self) -> np.ndarray:
        """image_of as an array (cached until it changes: it only grows, or is replaced)."""
        cached = getattr(self, "_image_cache", None)
        if cached is None or cached[0] is not self.image_of or len(cached[1]) > len(self.image_of):
            cached = self._image_cache = (self.image_of, np.asarray(self.image_of, dtype=np.int64))
        elif len(cached[1]) < len(self.image_of):  # grown by a catch-up: convert only the new tail
            tail = np.asarray(self.image_of[len(cached[1]):], dtype=np.int64)
            cached = self._image_cache = (self.image_of, np.concatenate([cached[1], tail]))
        return cached[1]

    def idf(self, term: str) -> float:
        """The engine's idf for a term."""
        return self.engine.idf(term) if self.engine is not None else 0.0  # not len(): a pass over it


def combine(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Consecutive segments as one (the last one's stamp): spans joined, arrays concatenated."""
    import json

    first, last = parts[0]["span"], parts[-1]["span"]
    terms = [t for p in parts for t in json.loads(p["terms"].tobytes().decode())]
    joined = ("doc_len", "keys", "tfs", "removed", "image_of")
    out = {k: np.concatenate([p[k] for p in parts]) for k in joined}
    keep = ("watermark", "format", "library", "tail", "runs")
    return {**out, **{k: parts[-1][k] for k in keep},
            "span": np.asarray([first[0], last[1], first[2], last[3]], dtype=np.int64),
            "terms": np.frombuffer(json.dumps(terms).encode(), dtype=np.uint8)}


def chained_segments(base: Path) -> list[Path]:
    """The segment files that continue a base file, in order (what a load would try to replay)."""
    try:
        with np.load(base) as data:
            token = int(data["x_token"][0])
    except Exception:
        return []
    found = []
    while (seg := base.with_name(f"{base.stem}.seg{len(found) + 1}.npz")).exists():
        try:
            with np.load(seg) as data:
                parent, nxt = int(data["parent"][0]), int(data["token"][0])
        except Exception:
            break
        if parent != token:
            break
        found.append(seg)
        token = nxt
    return found


def _token() -> int:
    return secrets.randbits(63)


def _made(arrays: dict[str, np.ndarray]) -> Stamp:
    return Stamp(arrays["library"].tobytes().decode(), int(arrays["watermark"][0]), int(arrays["tail"][0]))


def _read(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    write_atomic(path, lambda tmp: np.savez(tmp, **arrays), suffix=".tmp.npz")
