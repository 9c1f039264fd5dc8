"""Which library, and which state of it, a derived file (keyword or semantic index) was made from.

Every derived file records a `Stamp`: the library's UUID (migration m004), the change-log watermark it
reflects, and a fingerprint of the last changes up to that watermark (each change row has a random
nonce). A file whose stamp does not match the database it sits beside (another library's, a database
deleted and made again, a backup restored and changed since) is rebuilt, never used. Files are written by
`write_atomic`: a temporary file, fsync, then os.replace and an fsync of the folder, so a kill -9 at any
moment leaves either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import data_dir
from .readonly import writable
from .store import Store

log = logging.getLogger(__name__)

TAIL = 8  # change-log rows fingerprinted at the watermark
FOREIGN = "made for another library"


@dataclass(frozen=True)
class Stamp:
    """A derived file's claim: made from library `library` at change-log `watermark` (with `tail`)."""

    library: str
    watermark: int
    tail: int

    def mismatch(self, store: Store, head: int) -> str | None:
        """Why this stamp does not describe the store's database now, or None when it does."""
        if self.library != library_id(store):
            return FOREIGN
        if self.watermark < changes_floor(store):
            return "older than the compacted change log"
        if self.watermark > head:
            return "newer than the database (a restored backup?)"
        if self.tail != change_tail(store, self.watermark):
            return "made from another history of this library"
        return None


def library_id(store: Store) -> str:
    """The library's UUID (cached on the store: it never changes)."""
    cached = getattr(store, "_library_id", None)
    if cached is None:
        row = store.db.execute("SELECT value FROM library WHERE key = 'uuid'").fetchone()
        cached = store._library_id = str(row[0])
    return cached


def changes_floor(store: Store) -> int:
    """The last change-log sequence that compaction removed (0: none): a file older than it is stale."""
    return store.changes_floor()


def change_tail(store: Store, watermark: int) -> int:
    """A 64-bit fingerprint of the last TAIL change-log rows up to `watermark`, random nonces included
    (0 for none): the same sequence numbers reached by other changes give another fingerprint."""
    rows = store.db.execute(
        "SELECT seq, image_id, nonce FROM text_changes WHERE seq <= ? ORDER BY seq DESC LIMIT ?",
        [watermark, TAIL],
    ).fetchall()
    if not rows:
        return 0
    digest = hashlib.blake2b(repr(rows).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def derived_path(store: Store, name: str) -> Path | None:
    """Where a derived file named `name` lives: beside the database, or, when $MLLMRET_CACHE_DIR is set or
    the database's folder is read-only, in a cache folder of this library (by its UUID)."""
    if store.path is None:
        return None
    cache = os.environ.get("MLLMRET_CACHE_DIR")
    if not cache and not store.read_only and writable(store.path.parent):
        return store.path.with_name(name)
    folder = (Path(cache) if cache else data_dir() / "cache") / library_id(store)
    if not cache and not folder.exists():  # said once, when the cache is made
        log.warning("%s is read-only: its search indexes are kept in %s", store.path.parent, folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def stamp(store: Store, watermark: int) -> Stamp:
    """The stamp a derived file made at `watermark` records."""
    return Stamp(library_id(store), watermark, change_tail(store, watermark))


def write_atomic(path: Path, write: Callable[[Path], None], suffix: str = ".tmp") -> None:
    """Write a file through `write(tmp)`, fsync it, then replace `path` with it (and fsync the folder)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}{suffix}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened, as on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive lock beside the index files, so two processes (search and serve) never interleave."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; the stamp check in _save still avoids most clashes
        yield
        return
    with path.with_name(f"{path.name}.lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def file_stamp(path: Path) -> tuple[int, int] | None:
    """What the sidecar file looks like now (None: absent), to notice another process's writes."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size
