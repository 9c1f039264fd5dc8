"""Writers on one library: write transactions take the write lock up front and wait for it a while.

A deferred transaction that reads first and writes later cannot wait for the lock in WAL mode once
another writer has committed in between (SQLite answers "database is locked" at once); BEGIN IMMEDIATE
takes the lock before the first read, so a second writer queues behind the first (up to the busy
timeout) and both make progress, one short transaction at a time.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator

from .sqlite import Database

BUSY_SECONDS = 30.0  # how long a writer waits for another's transaction to end (MLLMRET_BUSY_TIMEOUT)


def busy_timeout_ms() -> int:
    """Milliseconds to wait for a lock: $MLLMRET_BUSY_TIMEOUT seconds, else BUSY_SECONDS."""
    try:
        seconds = float(os.environ.get("MLLMRET_BUSY_TIMEOUT", BUSY_SECONDS))
    except ValueError:
        seconds = BUSY_SECONDS
    return max(0, int(seconds * 1000))


@contextlib.contextmanager
def immediate(db: Database) -> Iterator[Database]:
    """A transaction that holds the write lock from its start (nested: a savepoint)."""
    if db.conn.in_transaction:
        with db.atomic():
            yield db
        return
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.conn.rollback()
        raise
    try:
        db.conn.execute("COMMIT")
    except BaseException:
        db.conn.rollback()
        raise


def is_busy(error: sqlite3.Error) -> bool:
    """Whether an SQLite error means another process holds the lock."""
    text = str(error).lower()
    return isinstance(error, sqlite3.OperationalError) and any(
        w in text for w in ("database is locked", "database is busy", "database table is locked"))


def user_message(error: sqlite3.Error) -> str:
    """One line for an SQLite error that reached the command line, saying what to do."""
    if is_busy(error):
        return ("the library is busy: another mllmret process (a caption, import or embed run) is writing "
                "to it; wait for it to finish, or stop it, then run this again (finished work is kept)")
    if "readonly" in str(error).lower() or "read-only" in str(error).lower():
        return ("the library is read-only here: searching works, adding to it does not; copy it to a "
                "writable folder to change it")
    if isinstance(error, sqlite3.DatabaseError) and "disk" in str(error).lower():
        return f"the library could not be written ({error}): free some disk space, then run this again"
    return f"database error: {error} (the library file may be damaged; a copy of it is worth keeping)"
