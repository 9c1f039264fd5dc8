"""Libraries on read-only media (a DVD, a read-only share, a folder without write permission).

Such a database is opened through a read-only connection (immutable when no WAL file is beside it), is
searched as usual, and its derived files (search indexes) go to a cache folder instead of beside it
(`identity.derived_path`), so that a search loads them instead of rebuilding on every call.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ..errors import MllmretError


def writable(path: Path) -> bool:
    """Whether this process may create files in `path` (a folder) or change it (a file)."""
    return os.access(path, os.W_OK)


def read_only_library(path: Path) -> bool:
    """An existing database that cannot be written, or whose folder cannot take its -wal/-shm files."""
    return path.exists() and not (writable(path) and writable(path.parent))


def open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection; a WAL database with no -wal file beside it is read as immutable."""
    with path.open("rb") as f:
        head = f.read(100)
    wal = len(head) > 18 and head[18] == 2
    mode = "ro" if not wal or Path(f"{path}-wal").exists() else "ro&immutable=1"
    return sqlite3.connect(f"{path.absolute().as_uri()}?mode={mode}", uri=True)


def needs_upgrade(path: Path) -> MllmretError:
    """The error for a read-only library made by an older version (its schema cannot be brought up)."""
    return MllmretError(f"{str(path)!r} was made by an older mllmret and cannot be written here (read-only): "
                        "open it once where it can be written, or copy it to a writable folder")
