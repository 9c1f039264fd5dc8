"""Read-only queries of the library, one method each, with typed results: everything outside this package
reads the database through these (the `Store` has them), never with SQL of its own."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ..capture.tiling import Box
from ..errors import MllmretError
from .rows import MAX_DIMENSION, SEARCHABLE, Run, TileText, as_int, as_json, as_side, as_tags, as_text
from .sqlite import Database


class LibraryQueries:
    """The read-only half of `Store` (see store.py for the writes)."""

    db: Database

    def run(self, run_id: int) -> Run:
        """A run by id."""
        r = self.db.execute(
            "SELECT id, backend, model, prompt_name, prompt_sha256, params, kind FROM runs WHERE id = ?",
            [run_id],
        ).fetchone()
        if r is None:
            raise MllmretError(f"no run with id {run_id}: see `mllmret stats`")
        return Run(r[0], as_text(r[1]) or "", as_text(r[2]) or "", as_text(r[3]), as_text(r[4]),
                   as_json(r[5], {}), as_text(r[6]) or "caption")

    def select_runs(self, run: int | None = None, model: str | None = None) -> list[int] | None:
        """Run ids matching --run/--model (None means all runs)."""
        if run is None and model is None:
            return None
        if run is not None and as_int(run) is None:
            raise MllmretError(f"no captions for run {run}: see `mllmret stats` for what is stored")
        sql, args = "SELECT id FROM runs WHERE 1", []
        if run is not None:
            sql, args = sql + " AND id = ?", [*args, run]
        if model is not None:
            sql, args = sql + " AND model = ?", [*args, model]
        ids = [r[0] for r in self.db.execute(sql, args).fetchall()]
        if not ids:
            what = f"run {run}" if run is not None else f"model {model!r}"
            raise MllmretError(f"no captions for {what}: see `mllmret stats` for what is stored")
        return ids

    def captioned_tiles(self, run_id: int, tile_ids: Iterable[int]) -> set[int]:
        """Which of these tiles already have a caption in this run."""
        ids = list(tile_ids)
        done: set[int] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            done.update(r[0] for r in self.db.execute(
                f"SELECT tile_id FROM captions WHERE run_id = ? AND tile_id IN ({marks})",
                [run_id, *chunk],
            ).fetchall())
        return done

    def captions_per_image(self, run_id: int) -> dict[int, int]:
        """How many tiles of each image this run has captioned."""
        return dict(self.db.execute(
            "SELECT t.image_id, COUNT(*) FROM captions c JOIN tiles t ON t.id = c.tile_id "
            "WHERE c.run_id = ? GROUP BY t.image_id", [run_id],
        ).fetchall())

    def tile_texts(
        self, run_ids: Sequence[int] | None = None, image_ids: Iterable[int] | None = None,
        searchable: bool = True,
    ) -> Iterator[TileText]:
        """Every caption of searchable images (all, or these; any status with searchable=False), ordered
        by image, tile, run."""
        status = f"i.status IN {SEARCHABLE!r}" if searchable else "1"
        sql = (
            "SELECT t.image_id, t.id, t.key, t.x0, t.y0, t.x1, t.y1, c.run_id, c.tags, c.caption, r.kind "
            "FROM captions c JOIN tiles t ON t.id = c.tile_id JOIN images i ON i.id = t.image_id "
            f"JOIN runs r ON r.id = c.run_id WHERE {status}"
        )
        args: list[Any] = []
        if run_ids is not None:
            sql += f" AND c.run_id IN ({','.join('?' * len(run_ids))})"
            args = list(run_ids)
        if image_ids is not None:
            ids = sorted(set(image_ids))
            sql += " AND t.image_id IN (SELECT value FROM json_each(?))"
            args.append(json.dumps(ids))
        sql += " ORDER BY t.image_id, t.id, c.run_id"
        for r in self.db.execute(sql, args):
            coords = [as_int(v, 0, MAX_DIMENSION) for v in r[3:7]]
            box = Box(*coords) if None not in coords else None
            yield TileText(r[0], r[1], as_text(r[2]) or "full", box, r[7], as_tags(r[8]), as_text(r[9]) or "",
                           as_text(r[10]) or "caption")

    def image_cards(self, image_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Per existing image: width, height and whether it has a file (what a result card needs)."""
        ids = json.dumps(sorted(set(image_ids)))
        return {image_id: {"width": as_side(width), "height": as_side(height),
                           "has_file": status == "ok" and bool(sha)}
                for image_id, width, height, status, sha in self.db.execute(
                    "SELECT id, width, height, status, sha256 FROM images "
                    "WHERE id IN (SELECT value FROM json_each(?))", [ids])}

    def has_captions(self) -> bool:
        """Whether any caption is stored (cheap: no counting)."""
        return bool(self.db.execute("SELECT EXISTS (SELECT 1 FROM captions)").fetchone()[0])

    def change_head(self) -> int:
        """The latest change-log sequence number (0 when nothing changed yet)."""
        return self.db.execute("SELECT coalesce(max(seq), 0) FROM text_changes").fetchone()[0]

    def changed_images(self, after: int, upto: int) -> set[int]:
        """Images whose searchable text changed in (after, upto]."""
        return {r[0] for r in self.db.execute(
            "SELECT DISTINCT image_id FROM text_changes WHERE seq > ? AND seq <= ?", [after, upto]
        )}


    # what other stages read
    def run_models(self) -> list[tuple[int, str, str]]:
        """(id, model, kind) of every run, oldest first."""
        return [(r[0], as_text(r[1]) or "", as_text(r[2]) or "caption")
                for r in self.db.execute("SELECT id, model, kind FROM runs ORDER BY id")]

    def latest_captioned_run(self, run_ids: Sequence[int] | None = None) -> Run | None:
        """The most recent caption run (not OCR, not a person's metadata) that has captions (among `run_ids`
        when given): the captioner a new `--like` photo is described with."""
        sql = ("SELECT r.id FROM runs r WHERE coalesce(r.kind, 'caption') = 'caption' "
               "AND EXISTS (SELECT 1 FROM captions c WHERE c.run_id = r.id)")
        args: list[Any] = []
        if run_ids is not None:
            sql += " AND r.id IN (SELECT value FROM json_each(?))"
            args.append(json.dumps(list(run_ids)))
        row = self.db.execute(sql + " ORDER BY r.id DESC LIMIT 1", args).fetchone()
        return self.run(row[0]) if row else None

    def run_prompt(self, run_id: int) -> str | None:
        """The prompt text a run was made with, if stored."""
        row = self.db.execute("SELECT prompt FROM runs WHERE id = ?", [run_id]).fetchone()
        return as_text(row[0]) if row else None

    def image_exists(self, image_id: int) -> bool:
        """Whether an image with this id is stored (any status)."""
        return self.db.execute("SELECT 1 FROM images WHERE id = ?", [image_id]).fetchone() is not None

    def image_sha(self, image_id: int) -> str | None:
        """An image's stored sha256 ("" when it has none, e.g. imported by id); None: no such image."""
        row = self.db.execute("SELECT sha256 FROM images WHERE id = ?", [image_id]).fetchone()
        return None if row is None else as_text(row[0]) or ""

    def image_with_sha(self, sha256: str, external: bool = True) -> tuple[int, int | None, int | None] | None:
        """(id, width, height) of the image with this content, if stored (`external`: imported ones too)."""
        sql = "SELECT id, width, height FROM images WHERE sha256 = ?" + ("" if external else
                                                                          " AND status != 'external'")
        row = self.db.execute(sql, [sha256]).fetchone()
        return (row[0], as_side(row[1]), as_side(row[2])) if row else None

    def searchable_images(self) -> list[tuple[int, str | None, str | None]]:
        """(id, external id, path) of every image search can return."""
        sql = f"SELECT id, external_id, path FROM images WHERE status IN {SEARCHABLE!r}"
        return [(r[0], as_text(r[1]), as_text(r[2])) for r in self.db.execute(sql)]

    def file_paths(self) -> dict[int, list[str]]:
        """Image id -> the paths of its indexed files."""
        out: dict[int, list[str]] = {}
        for image_id, path in self.db.execute("SELECT image_id, path FROM files WHERE status = 'ok'"):
            if as_text(path):
                out.setdefault(image_id, []).append(path)
        return out

    def indexed_files(self) -> list[tuple[str, int, str | None]]:
        """(path, image id, sha256) of every indexed file of an image on disk, by path."""
        rows = self.db.execute(
            "SELECT f.path, i.id, i.sha256 FROM files f JOIN images i ON i.id = f.image_id "
            "WHERE f.status = 'ok' AND i.status = 'ok' ORDER BY f.path")
        return [(as_text(p) or "", i, as_text(sha)) for p, i, sha in rows]

    def files_named(self, name: str) -> list[tuple[str, int]]:
        """(path, image id) of indexed files whose base name is `name`."""
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self.db.execute(
            "SELECT path, image_id FROM files WHERE status = 'ok' AND image_id IS NOT NULL AND "
            "(path = ? OR path LIKE ? ESCAPE '\\')", [name, "%/" + escaped])
        return [(p, i) for p, i in rows if as_text(p)]
