"""What the API computes: search pages (plain and `like`), an image's detail, the file behind an image.

SQLite connections stay on the thread that opened them, so `Library` keeps one connection per worker
thread: searches run on the search thread (it owns the Searcher and its indexes), image lookups
(thumbnails, details, counts) on a reader thread of their own, so they never wait behind a search. While
`caption` writes the library, a search catches the keyword index up itself when little changed
(INLINE_CATCH_UP images); past that it answers from the index as it was (`stale`, with a `notice`) and a
catch-up thread reads and tokenises the new text on its own connection, then applies it on the search
thread in a moment (index.store_index: `prepare`, `apply`). New text to embed always goes to that thread
(semantic_index: `prepare`, `apply`); searches by meaning use the vectors as they were meanwhile."""

from __future__ import annotations

import asyncio
import logging
import shlex
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException

from .. import config
from ..composed.like import Composition, Reference, compose_like, library_reference, search_like
from ..errors import MllmretError
from ..library.details import card_info, image_detail, indexed_file
from ..library.embed import SEARCH_BACKLOG
from ..library.store import Store
from ..search.cutoff import MIN_RELATIVE, MIN_SIMILARITY
from ..search.embedding import EmbedderError, meaning_unavailable
from ..search.query import parse_query, why_empty
from ..search.searcher import DEFAULT_MODE, Searcher

MAX_RESULTS = 2000  # deepest a page of results can reach (offset + k)
INLINE_CATCH_UP = 256  # changed images a search indexes itself (tens of ms); more: in the background

log = logging.getLogger(__name__)


class Library:
    """The database, used from one worker thread; opened once it exists. One Searcher answers every mode
    (the mode is per query), so the BM25 index and the embedding model load once, not once per mode."""

    def __init__(self, path: Path, mode: str = DEFAULT_MODE, embedder=None) -> None:
        self.path = path
        self.mode, self.embedder = mode, embedder
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="mllmret-db")  # searches
        self.reader = ThreadPoolExecutor(1, thread_name_prefix="mllmret-read")  # image lookups
        self._local = threading.local()  # each thread's connection
        self.searcher = None
        self.catcher = Catcher(self)

    async def run(self, fn, *args) -> Any:
        """fn(self, *args) on the search thread."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, partial(fn, self, *args))

    async def read(self, fn, *args) -> Any:
        """fn(self, *args) on the reader thread (quick lookups that must not wait behind a search)."""
        return await asyncio.get_running_loop().run_in_executor(self.reader, partial(fn, self, *args))

    def open(self) -> Store | None:
        """This thread's connection to the database, once it exists."""
        store = getattr(self._local, "store", None)
        if store is None and self.path.exists():
            store = self._local.store = Store(self.path)
        return store

    def close(self) -> None:
        def _close(lib: Library) -> None:
            store = getattr(lib._local, "store", None)
            if store is not None:
                store.close()
        self.catcher.stop()
        for pool in (self.pool, self.reader):
            pool.submit(_close, self).result()
            pool.shutdown()

    def hint(self) -> str:
        db = "" if self.path == config.db_path() else f" --db {shlex.quote(str(self.path))}"
        return f"mllmret caption ~/Pictures{db}"


def search_page(lib: Library, q: str, k: int, offset: int, mode: str, like: int | None = None,
            more_meaning: bool = False) -> dict[str, Any]:
    page: dict[str, Any] = {"query": q, "mode": mode, "default_mode": lib.mode, "k": k, "offset": offset,
                            "results": [], "has_more": False, "more_meaning": more_meaning}
    store = lib.open()
    if store is None or not store.has_captions():
        where = "no database yet" if store is None else "no captions yet"
        return {**page, "empty": "no_database" if store is None else "no_captions",
                "message": f"{where} at {lib.path}: describe your photos first", "hint": lib.hint()}
    if like is not None:
        return _search_like(lib, store, page, like)
    if parse_query(q).empty:
        return {**page, "empty": "no_words", "message": why_empty(q)}
    searcher = _searcher(lib, store, mode, more_meaning)
    stale = _catch_up(lib, store, searcher, mode)
    results = searcher.search(q, min(offset + k + 1, MAX_RESULTS + 1), mode=mode)
    return _fill({**page, **_notice(searcher, stale), "hidden": searcher.hidden,
                  "suggested": list(searcher.suggested)}, store, results)


def _catch_up(lib: Library, store: Store, searcher: Searcher, mode: str) -> str | None:
    """Bring the keyword index up to date when that is quick; else leave it to the catch-up thread and
    return the note that says the results are from the index as it was. New text to embed is always left
    to that thread (embedding takes seconds): a search by meaning uses the vectors as they are meanwhile."""
    notes = [_catch_up_keyword(lib, store, searcher.index)]
    if mode != "keyword" and searcher.loaded_semantic is not None:
        notes.append(_catch_up_meaning(lib, store, searcher.loaded_semantic))
    return "; ".join(n for n in notes if n) or None


def _catch_up_keyword(lib: Library, store: Store, index) -> str | None:
    index.follow = False
    if index.engine is None:  # the first search loads it (or builds it, once)
        index.sync()
        return None
    head = store.change_head()
    if head == index.watermark:
        return None
    waiting = len(store.changed_images(index.watermark, head))
    if waiting <= INLINE_CATCH_UP and index.watermark >= store.changes_floor():
        index.sync()
        return None
    lib.catcher.kick()
    return (f"{waiting} images changed since the keyword index was last brought up to date are being "
            "indexed now: these results are from before them")


def _catch_up_meaning(lib: Library, store: Store, semantic) -> str | None:
    semantic.follow = False
    semantic.refresh()  # the saved index, or what another process (`mllmret embed`) saved since
    if not semantic.complete:  # nothing whole to serve yet: the search embeds a few itself or says why not
        semantic.follow = True
        return None
    head = store.change_head()
    waiting = 0 if head == semantic.watermark else len(store.changed_images(semantic.watermark, head))
    if not waiting:
        return None
    lib.catcher.kick()
    return (f"{waiting} images changed since the library was last embedded are being embedded now: "
            "their meaning is from before them")


def _notice(searcher: Searcher, stale: str | None) -> dict[str, Any]:
    notes = [n for n in (searcher.notice, stale) if n]
    return {"notice": "; ".join(notes) or None, "stale": stale is not None}


def _search_like(lib: Library, store: Store, page: dict[str, Any], image_id: int) -> dict[str, Any]:
    """The page for `like=image_id`: images like the reference, changed as `q` says; never the reference."""
    reference = _reference(store, image_id)
    modification, mode, k, offset = page["query"], page["mode"], page["k"], page["offset"]
    composition = compose_like(reference.text, modification)
    page["like"] = _like_info(store, image_id, modification, composition)
    if composition.query().empty:
        return {**page, "empty": "no_words", "message": "nothing left to search for: the modification "
                "removes every word of the reference and adds none"}
    searcher = _searcher(lib, store, mode, page["more_meaning"])
    stale = _catch_up(lib, store, searcher, mode)
    found = search_like(searcher, reference, modification, min(offset + k + 1, MAX_RESULTS + 1), mode)
    return _fill({**page, **_notice(searcher, stale), "hidden": searcher.hidden}, store, found.results)


def _reference(store: Store, image_id: int) -> Reference:
    """An image of the library as a reference; never a file path (the page has no uploads)."""
    if not store.image_exists(image_id):
        raise HTTPException(404, f"no such image in this database (like={image_id})")
    try:
        return library_reference(store, image_id)
    except MllmretError:
        raise HTTPException(422, f"image {image_id} has no tags or captions to start from") from None


def _like_info(store: Store, image_id: int, modification: str, c: Composition) -> dict[str, Any]:
    """The `like` object: the reference (as a card shows it) and the composition's words."""
    row = store.image_row(image_id)
    extra = card_info(store, [image_id]).get(image_id, {})
    return {"image_id": image_id, "path": row["path"], "external_id": row["external_id"],
            "width": row["width"], "height": row["height"],
            "thumbnail": f"/api/images/{image_id}/thumbnail" if extra.get("has_file") else None,
            "url": f"/api/images/{image_id}", "modification": modification, **c.words(),
            "composed": c.text}


def _searcher(lib: Library, store: Store, mode: str, more_meaning: bool = False) -> Searcher:
    """The library's one Searcher, made on first use, with the meaning cut-off of this request; the
    embedder loaded when `mode` needs it."""
    if lib.searcher is None:
        lib.searcher = Searcher(store, None, mode=lib.mode, embedder=lib.embedder, max_backlog=SEARCH_BACKLOG)
    cut = (None, None) if more_meaning else (MIN_SIMILARITY, MIN_RELATIVE)
    lib.searcher.min_similarity, lib.searcher.min_relative = cut
    if mode != "keyword" and meaning_unavailable(lib.embedder) is None:  # else: keyword, with a notice
        _load_embedder(lib.searcher)
    return lib.searcher


def _fill(page: dict[str, Any], store: Store, results: list) -> dict[str, Any]:
    """The page's slice of `results` (offset, k) as cards, and whether there are more."""
    k, offset = page["k"], page["offset"]
    shown = results[offset:offset + k]
    info = card_info(store, [r.image_id for r in shown])
    for r in shown:
        extra = info.get(r.image_id, {"width": None, "height": None, "has_file": False, "tags": []})
        page["results"].append({
            **r.to_dict(), "width": extra["width"], "height": extra["height"], "tags": extra["tags"],
            "thumbnail": f"/api/images/{r.image_id}/thumbnail" if extra["has_file"] else None,
            "url": f"/api/images/{r.image_id}",
        })
    page["has_more"] = len(results) > offset + k and offset + k < MAX_RESULTS
    return page


def _load_embedder(searcher) -> None:
    """Load the embedding model now, so that whatever goes wrong becomes one line (an EmbedderError); the
    numpy encoder when the model has one (no torch: the first answer comes in a second, not fifteen)."""
    try:
        embedder = searcher.semantic.embedder
        getattr(embedder, "light", None) or getattr(embedder, "model", None)
    except MllmretError:
        raise
    except Exception as e:  # a damaged model folder can fail in many ways
        first = (str(e).splitlines() or [""])[0][:300]
        raise EmbedderError(f"cannot load the embedder: {type(e).__name__}: {first}") from None


def detail(lib: Library, image_id: int) -> dict[str, Any] | None:
    store = lib.open()
    detail = image_detail(store, image_id) if store else None
    if detail is not None:
        has_file = indexed_file(store, image_id) is not None
        detail["file"] = f"/api/images/{image_id}/file" if has_file else None
        detail["thumbnail"] = f"/api/images/{image_id}/thumbnail" if has_file else None
    return detail


def file_of(lib: Library, image_id: int) -> tuple[Path | None, str | None]:
    store = lib.open()
    if store is None:
        return None, None
    sha = store.image_sha(image_id)
    return (None, None) if sha is None else (indexed_file(store, image_id), sha)


class Catcher:
    """Keyword index catch-ups on a thread of their own with its own connection: reading and tokenising
    thousands of new captions never holds up the search thread; only the quick apply (and the segment
    save) runs there, between searches."""

    def __init__(self, lib: Library) -> None:
        self.lib = lib
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.stopped = False
        self.lock = threading.Lock()

    def kick(self) -> None:
        """Catch up as soon as possible (started on first use)."""
        with self.lock:
            if self.stopped:
                return
            if self.thread is None:
                self.thread = threading.Thread(target=self._work, name="mllmret-catch-up", daemon=True)
                self.thread.start()
        self.wake.set()

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout=30)

    def _work(self) -> None:
        store = Store(self.lib.path)
        try:
            while self.wake.wait() and not self.stopped:
                self.wake.clear()
                for index in (self.lib.searcher.index, self.lib.searcher.loaded_semantic):
                    if index is None or index.follow or self.stopped:
                        continue
                    try:
                        catch = index.prepare(store)
                        if catch is not None and not self.stopped:
                            self.lib.pool.submit(index.apply, catch).result()
                    except Exception as e:  # searches go on from the index as it is; the next one kicks again
                        what = "keyword index" if index is self.lib.searcher.index else "embedding"
                        log.warning("%s catch-up failed: %s", what, " ".join(str(e).splitlines())[:300])
        finally:
            store.close()
