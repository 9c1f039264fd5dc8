"""The SQLite store (sqlite-utils): images, files, tiles, runs, captions; WAL, one commit per batch."""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..capture.parsing import Parsed
from ..capture.tiling import Box
from ..config import db_path
from ..errors import MllmretError
from .locking import busy_timeout_ms, immediate, is_busy, user_message
from .migrations import migrations
from .queries import LibraryQueries
from .readonly import needs_upgrade, open_read_only, read_only_library
from .rows import (  # noqa: F401  (re-exported: the store's values and rows)
    MAX_DIMENSION,
    RUN_FIELDS,
    SEARCHABLE,
    SQLITE_HEADER,
    Run,
    TileText,
    as_int,
    as_json,
    as_side,
    as_tags,
    as_text,
    now,
    run_key,
    tile_key,
)
from .sqlite import Database


def check_library(path: Path) -> None:
    """Refuse, before anything is written (a pragma included), a file that is not an mllmret library.

    A missing or empty file, or an SQLite database without tables, becomes a new library; a database
    whose migrations are mllmret's is one; anything else (another application's SQLite file, one with
    an `images` table of its own, a file that is not SQLite) is left exactly as it is. The check reads
    through a read-only connection; a WAL database with no -wal file is read as immutable, so that
    not even -wal/-shm files appear beside it."""
    try:
        with path.open("rb") as f:
            head = f.read(100)
    except FileNotFoundError:
        return
    except OSError as e:
        raise MllmretError(f"cannot open database {str(path)!r}: {e.strerror or e}") from e
    if not head:
        return
    refuse = f"{str(path)!r} is not an mllmret database"
    if not head.startswith(SQLITE_HEADER):
        raise MllmretError(f"{refuse} (file is not a database): pass another --db; nothing was changed")
    wal = len(head) > 18 and head[18] == 2
    mode = "ro" if not wal or path.with_name(path.name + "-wal").exists() else "ro&immutable=1"
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode={mode}", uri=True)
    except sqlite3.Error as e:
        raise MllmretError(f"cannot open database {str(path)!r}: {e}") from e
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        ours = "_sqlite_migrations" in tables and conn.execute(
            "SELECT count(*) FROM _sqlite_migrations WHERE migration_set = ?", [migrations.name]
        ).fetchone()[0]
    except sqlite3.Error as e:
        raise MllmretError(f"{refuse} ({e}): pass another --db; nothing was changed") from e
    finally:
        conn.close()
    if tables and not ours:
        shown = ", ".join(tables[:5]) + (", …" if len(tables) > 5 else "")
        raise MllmretError(f"{refuse} (an SQLite database of another application, with tables {shown}): "
                           "pass another --db; nothing was changed")


class Store(LibraryQueries):
    """All reads and writes of the database go through here."""

    def __init__(self, path: str | os.PathLike | None = None, *, memory: bool = False) -> None:
        if memory:
            self.db = Database(memory=True)
            self.path, self.read_only = None, False
        else:
            self.path = Path(path) if path else db_path()
            check_library(self.path)
            self.read_only = read_only_library(self.path)  # searched as is; indexes go to a cache folder
            try:
                if self.read_only:
                    self.db = Database(open_read_only(self.path))
                else:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self.db = Database(self.path)
                    self.db.execute(f"PRAGMA busy_timeout = {busy_timeout_ms()}")
                    self.db.enable_wal()
            except (OSError, sqlite3.DatabaseError) as e:
                raise MllmretError(f"cannot open database {str(self.path)!r}: {e}") from e
        self.db.execute("PRAGMA foreign_keys = ON")
        try:
            if self.read_only and migrations.pending(self.db):
                raise needs_upgrade(self.path)
            if migrations.pending(self.db):  # read first: a library already up to date takes no write lock
                with immediate(self.db):  # two processes opening a new library: the second waits here
                    migrations.apply(self.db)
        except sqlite3.DatabaseError as e:
            if is_busy(e):
                raise MllmretError(user_message(e)) from e
            raise MllmretError(f"{str(self.path)!r} is not an mllmret database: {e}") from e

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def atomic(self):
        """A write transaction: everything inside commits together or not at all (see locking.py)."""
        return immediate(self.db)

    # runs
    def get_or_create_run(
        self, backend: str, model: str, params: dict[str, Any],
        prompt_name: str | None = None, prompt_text: str | None = None, kind: str = "caption",
    ) -> Run:
        """The run for this configuration; the same configuration resumes the same run."""
        key, prompt_sha = run_key(backend, model, params, prompt_text, kind)
        with self.atomic():
            self.db.execute(
                "INSERT OR IGNORE INTO runs (key, backend, model, prompt_name, prompt_sha256, "
                "prompt, params, started_at, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [key, backend, model, prompt_name, prompt_sha, prompt_text,
                 json.dumps(params, sort_keys=True), now(), kind],
            )
        row = self.db.execute("SELECT id FROM runs WHERE key = ?", [key]).fetchone()
        return self.run(row[0])

    def find_run(
        self, backend: str, model: str, params: dict[str, Any], prompt_text: str | None = None
    ) -> Run | None:
        """The run for this configuration if it exists (nothing is written)."""
        row = self.db.execute(
            "SELECT id FROM runs WHERE key = ?", [run_key(backend, model, params, prompt_text)[0]]
        ).fetchone()
        return self.run(row[0]) if row else None

    def finish_run(self, run_id: int) -> None:
        """Stamp the run's finish time."""
        with self.atomic():
            self.db.execute("UPDATE runs SET finished_at = ? WHERE id = ?", [now(), run_id])

    # files and images
    def file_row(self, path: str) -> dict[str, Any] | None:
        """The stored record of a file path, if any."""
        rows = list(self.db.query("SELECT * FROM files WHERE path = ?", [path]))
        return rows[0] if rows else None

    def image_row(self, image_id: int) -> dict[str, Any]:
        """One image's record, each value of its column's type (an odd stored value reads as None)."""
        row = next(self.db.query("SELECT * FROM images WHERE id = ?", [image_id]), None)
        if row is None:
            raise MllmretError(f"no image with id {image_id} in {self.path or 'this library'}")
        texts = {k: as_text(row[k]) for k in ("sha256", "external_id", "path", "status", "added_at")}
        return {**row, **texts, "width": as_side(row["width"]), "height": as_side(row["height"]),
                "bytes": as_int(row["bytes"])}

    def add_image(
        self, sha256: str | None, path: str | None, width: int | None, height: int | None,
        nbytes: int | None = None, external_id: str | None = None, status: str | None = None,
    ) -> int:
        """Insert an image by content (or external id), or update where it was last seen.

        status "external" is an image known only from what an import line says (its sha256 claimed,
        not computed): such a claim finds an image already stored but never changes one that was
        indexed from a file (path, size, id); it only fills in other external images."""
        status = status or ("ok" if sha256 else "external")
        if sha256 is None and external_id is None:
            raise MllmretError("an image needs a sha256 or an external id")
        for name, value, lo, hi in (("width", width, 1, MAX_DIMENSION), ("height", height, 1, MAX_DIMENSION),
                                    ("bytes", nbytes, 0, (1 << 63) - 1)):
            if value is not None and as_int(value, lo, hi) is None:
                raise MllmretError(f"image {name} must be a whole number from {lo} to {hi:,}, not {value!r}")
        row = None
        if sha256:
            row = self.db.execute("SELECT id, status FROM images WHERE sha256 = ?", [sha256]).fetchone()
        if row is None and external_id is not None:
            row = self.db.execute(
                "SELECT id, status FROM images WHERE external_id = ?", [external_id]
            ).fetchone()
        if row and status == "external" and row[1] != "external":
            return row[0]  # a claim never rewrites an image indexed from a file
        if row:
            self.db.execute(
                "UPDATE images SET path = coalesce(?, path), width = coalesce(?, width), "
                "height = coalesce(?, height), sha256 = coalesce(sha256, ?), "
                "status = CASE WHEN ? = 'ok' OR status = 'ok' THEN 'ok' ELSE ? END WHERE id = ?",
                [path, width, height, sha256, status, status, row[0]],
            )
            if external_id is not None:
                self.db.execute(
                    "UPDATE images SET external_id = ? WHERE id = ? AND external_id IS NULL "
                    "AND NOT EXISTS (SELECT 1 FROM images WHERE external_id = ?)",
                    [external_id, row[0], external_id],
                )
            return row[0]
        cur = self.db.execute(
            "INSERT INTO images (sha256, external_id, path, width, height, bytes, status, added_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [sha256, external_id, path, width, height, nbytes, status, now()],
        )
        return cur.lastrowid

    def record_file(
        self, path: str, image_id: int | None, nbytes: int | None, mtime: float | None,
        error: str | None = None,
    ) -> None:
        """Remember a file path: which image it holds, or why it failed."""
        old = self.file_row(path)
        self.db.execute(
            "INSERT OR REPLACE INTO files (path, image_id, bytes, mtime, status, error, seen_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [path, image_id, nbytes, mtime, "failed" if error else "ok", error, now()],
        )
        if old and old["image_id"] and old["image_id"] != image_id:
            self._retire_if_orphan(old["image_id"], "replaced")

    def rewrote_file(self, image_id: int, path: str, sha256: str, nbytes: int, mtime: float) -> None:
        """The file of an image was rewritten by us with its pixels unchanged (keywords embedded): it keeps
        its id and text under its new content hash, so it is not taken for a changed photo."""
        with self.atomic():
            self.db.execute("UPDATE images SET sha256 = ?, bytes = ? WHERE id = ?",
                            [sha256, nbytes, image_id])
            self.record_file(path, image_id, nbytes, mtime)

    def forget_missing(self, root: str, seen: set[str]) -> list[str]:
        """Drop file records under `root` not seen in this walk; hide images left with no file.

        Returns the paths dropped."""
        prefix = root.rstrip(os.sep) + os.sep
        rows = self.db.execute(
            "SELECT path, image_id FROM files WHERE substr(path, 1, ?) = ?", [len(prefix), prefix]
        ).fetchall()
        gone = [(p, i) for p, i in rows if p not in seen]
        for path, image_id in gone:
            self.db.execute("DELETE FROM files WHERE path = ?", [path])
            if image_id:
                self._retire_if_orphan(image_id, "missing")
        return sorted(p for p, _ in gone)

    def _retire_if_orphan(self, image_id: int, status: str) -> None:
        left = self.db.execute(
            "SELECT count(*) FROM files WHERE image_id = ? AND status = 'ok'", [image_id]
        ).fetchone()[0]
        if not left:
            self.db.execute(
                "UPDATE images SET status = ? WHERE id = ? AND status = 'ok'", [status, image_id]
            )

    # tiles and captions
    def ensure_tiles(
        self, image_id: int, boxes: Iterable[Box | None], width: int | None, height: int | None
    ) -> list[tuple[int, Box | None]]:
        """Tile ids for these boxes of an image, created where missing."""
        out = []
        for box in boxes:
            key = tile_key(box, width, height)
            coords = box.as_list() if box else [None] * 4
            self.db.execute(
                "INSERT OR IGNORE INTO tiles (image_id, key, x0, y0, x1, y1) VALUES (?,?,?,?,?,?)",
                [image_id, key, *coords],
            )
            tid = self.db.execute(
                "SELECT id FROM tiles WHERE image_id = ? AND key = ?", [image_id, key]
            ).fetchone()[0]
            out.append((tid, box))
        return out

    def add_captions(
        self, run_id: int, rows: Iterable[tuple[int, str, Parsed, float | None]],
        replace: bool = False,
    ) -> int:
        """Store (tile_id, raw, parsed, seconds) rows; existing ones are kept unless replace."""
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        n = 0
        for tile_id, raw, parsed, seconds in rows:
            if not (isinstance(raw, str) and isinstance(parsed.caption, str)
                    and all(isinstance(t, str) for t in parsed.tags)):
                raise MllmretError("a caption's raw text, tags and caption must be text")
            if seconds is not None and not (type(seconds) in (int, float) and math.isfinite(seconds)):
                seconds = None
            cur = self.db.execute(
                f"{verb} INTO captions (tile_id, run_id, raw, tags, caption, seconds, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [tile_id, run_id, raw, json.dumps(list(parsed.tags)), parsed.caption, seconds,
                 now()],
            )
            n += cur.rowcount
        return n

    def stats(self) -> dict[str, Any]:
        """Counts of images, files, tiles and captions per run."""
        q = self.db.execute
        runs = [
            dict(zip(RUN_FIELDS, r, strict=True))
            for r in q(
                "SELECT r.id, r.backend, r.model, r.prompt_name, count(DISTINCT t.image_id), "
                "count(c.id), r.started_at, r.finished_at, r.kind FROM runs r "
                "LEFT JOIN captions c ON c.run_id = r.id LEFT JOIN tiles t ON t.id = c.tile_id "
                "GROUP BY r.id ORDER BY r.id"
            ).fetchall()
        ]
        status = dict(q("SELECT status, count(*) FROM images GROUP BY status").fetchall())
        failed = q("SELECT count(*) FROM files WHERE status = 'failed'").fetchone()[0]
        return {
            "database": str(self.path) if self.path else ":memory:",
            "images": status,
            "files": q("SELECT count(*) FROM files WHERE status = 'ok'").fetchone()[0],
            "failed_files": failed,
            "tiles": q("SELECT count(*) FROM tiles").fetchone()[0],
            "captions": q("SELECT count(*) FROM captions").fetchone()[0],
            "runs": runs,
        }

    def failures(self) -> list[tuple[str, str]]:
        """(path, reason) of every file that could not be indexed."""
        return self.db.execute(
            "SELECT path, error FROM files WHERE status = 'failed' ORDER BY path"
        ).fetchall()

    # added for housekeeping (issue #16)
    def images_with_text(self) -> set[int]:
        """Ids of searchable images that have at least one caption."""
        return {r[0] for r in self.db.execute(
            "SELECT DISTINCT t.image_id FROM captions c JOIN tiles t ON t.id = c.tile_id "
            f"JOIN images i ON i.id = t.image_id WHERE i.status IN {SEARCHABLE!r}")}

    def compact_changes(self, upto: int) -> int:
        """Delete change-log rows up to `upto` and record it as the floor; returns the rows deleted."""
        with self.atomic():
            n = self.db.execute("DELETE FROM text_changes WHERE seq <= ?", [upto]).rowcount
            self.db.execute("INSERT OR REPLACE INTO library (key, value) VALUES ('changes_floor', ?)",
                            [str(max(upto, self.changes_floor()))])
        return n

    def changes_floor(self) -> int:
        """The last change-log sequence that compaction removed (0: none)."""
        row = self.db.execute("SELECT value FROM library WHERE key = 'changes_floor'").fetchone()
        return int(row[0]) if row else 0

    def indexed_file_stats(self) -> list[tuple[str, int | None, float | None]]:
        """(path, bytes, mtime) of every file indexed without error, as last seen."""
        return self.db.execute(
            "SELECT path, bytes, mtime FROM files WHERE status = 'ok' ORDER BY path").fetchall()
