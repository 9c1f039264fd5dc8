"""Embedding a library's text when it is stored (caption, import, `search --like FILE --add`, `mllmret embed`,
`serve` in the background), so that a search by meaning never waits for it.

The vectors go into the same semantic index files that search reads (index.semantic_index, all runs), and
the work resumes like captioning: rows are saved every CHUNK images and reused by text hash.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from .store import Store

log = logging.getLogger(__name__)

SEARCH_BACKLOG = 64  # a search embeds at most this many images itself (seconds); more: keyword + a note


@dataclass(frozen=True)
class EmbedSummary:
    """What an embedding pass did."""

    embedded: int
    images: int
    embedder: str


def embed_library(store: Store, embedder=None, run_ids: list[int] | None = None,
                  progress: bool = False, embed: bool = True) -> EmbedSummary | None:
    """Embed every image whose text has no vector yet (or a changed one) with `embedder` (None: default).

    The keyword index is brought up to date and saved first (seconds), so that the first search after
    ingest answers at once; `embed=False` does only that (and returns None)."""
    from ..search.index.store_index import StoreIndex

    StoreIndex(store, run_ids).sync()
    summary = _embed(store, embedder, run_ids, progress) if embed else None
    _housekeeping(store)
    return summary


def _embed(store: Store, embedder, run_ids: list[int] | None, progress: bool) -> EmbedSummary | None:
    """The semantic index brought up to date; None (and one line) on a keyword-only install."""
    from ..search.embedding import meaning_unavailable

    reason = meaning_unavailable(embedder)
    if reason is not None:  # nothing to embed with, and keyword search works
        log.warning("not embedding: %s", reason)
        return None
    from ..search.index.semantic_index import SemanticIndex

    index = SemanticIndex(store, run_ids, embedder, progress=progress)
    index.progress_from = 0
    embedded = index.sync()
    return EmbedSummary(embedded, len(index), index.embedder.name)


def _housekeeping(store: Store) -> None:
    """After ingest, once the indexes are up to date: a change log grown past its bound is compacted, and
    derived files no index can use (older formats, deleted runs, killed saves) are removed."""
    from .housekeeping import compact_change_log, remove_unusable, survey_derived

    if store.read_only or store.path is None:
        return
    compact_change_log(store)
    for path in remove_unusable(survey_derived(store)):
        log.info("removed %s: no index can use it", path.name)


def backlog_note(pending: int) -> str:
    """The one line that says a search by meaning fell back to keywords, and what fixes it."""
    return (f"answered by keyword only: {pending} images have no embedding yet; run `mllmret embed` "
            "(or keep `mllmret serve` running) to search by meaning")


def embed_in_background(db_path: Path, embedder=None) -> threading.Thread:
    """`serve`: embed what is missing on a thread of its own (its own connection), logging what it did."""

    def work() -> None:
        try:
            if not db_path.exists():
                return
            with Store(db_path) as store:
                if store.has_captions():
                    s = embed_library(store, embedder)
                    if s.embedded:
                        log.warning("embedded %d images with %s: search by meaning is ready", s.embedded,
                                    s.embedder)
        except Exception as e:  # the page keeps answering by keyword; say why once
            log.warning("could not embed the library in the background: %s", str(e).splitlines()[0][:300])

    thread = threading.Thread(target=work, name="mllmret-embed", daemon=True)
    thread.start()
    return thread
