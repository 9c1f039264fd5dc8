"""Read-only views of the library for the web page: one image's tiles and captions, tags, counts."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..capture.ocr import KIND as OCR
from ..capture.ocr import MIN_CONFIDENCE, parse_lines
from ..search.text import surface_words
from .store import MAX_DIMENSION, SEARCHABLE, Store, as_int, as_side, as_tags, as_text

MAX_TAGS = 12
# Caption words too vague to refine by, when an image has no tags to show.
VAGUE = frozenset("one two three four five several various many some other left right side front back "
                  "feature featuring placed positioned located seems overall scene view can".split())


def library_summary(store: Store) -> dict[str, Any]:
    """How many searchable images and captions there are, and how many runs made them."""
    q = store.db.execute
    marks = ",".join("?" * len(SEARCHABLE))
    return {
        "database": str(store.path) if store.path else ":memory:",
        "images": q(f"SELECT count(*) FROM images WHERE status IN ({marks})", SEARCHABLE).fetchone()[0],
        "captions": q("SELECT count(*) FROM captions").fetchone()[0],
        "runs": q("SELECT count(*) FROM runs").fetchone()[0],
    }


def indexed_file(store: Store, image_id: int) -> Path | None:
    """A file that was indexed for this image and is unchanged since (same size and mtime)."""
    image = store.db.execute("SELECT status FROM images WHERE id = ?", [image_id]).fetchone()
    if image is None or image[0] != "ok":
        return None
    rows = store.db.execute(
        "SELECT path, bytes, mtime FROM files WHERE image_id = ? AND status = 'ok' ORDER BY seen_at DESC",
        [image_id],
    ).fetchall()
    for path, nbytes, mtime in rows:
        path = as_text(path)
        if not path or type(mtime) not in (int, float, type(None)):
            continue
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            continue
        if st.st_size == nbytes and (mtime is None or abs(st.st_mtime - mtime) < 1e-3):
            return Path(path)
    return None


def card_info(store: Store, image_ids: Iterable[int], run_ids: list[int] | None = None
              ) -> dict[int, dict[str, Any]]:
    """Per image: size, whether it has a file, and its most frequent tags (caption words if none)."""
    ids = json.dumps(sorted(set(image_ids)))
    info: dict[int, dict[str, Any]] = {}
    for image_id, width, height, status, sha in store.db.execute(
        "SELECT id, width, height, status, sha256 FROM images WHERE id IN (SELECT value FROM json_each(?))",
        [ids],
    ):
        info[image_id] = {"width": as_side(width), "height": as_side(height),
                          "has_file": status == "ok" and bool(sha)}
    tags: dict[int, Counter] = {i: Counter() for i in info}
    words: dict[int, Counter] = {i: Counter() for i in info}
    sql = ("SELECT t.image_id, c.tags, c.caption FROM captions c JOIN tiles t ON t.id = c.tile_id "
           "WHERE t.image_id IN (SELECT value FROM json_each(?))")
    args: list[Any] = [ids]
    if run_ids is not None:
        sql += " AND c.run_id IN (SELECT value FROM json_each(?))"
        args.append(json.dumps(run_ids))
    sql += " ORDER BY t.key != 'full', t.id, c.run_id"  # ties go to the whole image's tags
    for image_id, tag_json, caption in store.db.execute(sql, args):
        tags[image_id].update(clean_tag(t) for t in as_tags(tag_json) if clean_tag(t))
        words[image_id].update(w for w in surface_words(as_text(caption) or "").values()  # as written
                               if w not in VAGUE and not w.isdigit())
    for image_id, item in info.items():
        ranked = tags[image_id] or words[image_id]
        item["tags"] = [t for t, _ in ranked.most_common(MAX_TAGS)]
    return info


def clean_tag(tag: str) -> str:
    """A tag as a chip shows it and a query can hold it: lowercase, one line, no double quotes."""
    return " ".join(str(tag).replace('"', " ").lower().split())[:60]


def ocr_lines(raw: str) -> list[dict[str, Any]]:
    """Lines read in a photo for the page: text, box (x0, y0, x1, y1 around its corners), confidence."""
    return [{"text": line.text, "confidence": round(line.confidence, 3),
             "searchable": line.confidence >= MIN_CONFIDENCE,
             "box": [min(x for x, _ in line.box), min(y for _, y in line.box),
                     max(x for x, _ in line.box), max(y for _, y in line.box)]}
            for line in parse_lines(raw) if line.box]


def image_detail(store: Store, image_id: int) -> dict[str, Any] | None:
    """One image with every tile (box) and each tile's tags, caption and raw text per run."""
    rows = list(store.db.query("SELECT * FROM images WHERE id = ?", [image_id]))
    if not rows:
        return None
    image = rows[0]
    tiles: dict[int, dict[str, Any]] = {}
    for r in store.db.execute(
        "SELECT t.id, t.key, t.x0, t.y0, t.x1, t.y1, c.run_id, r.model, r.backend, r.prompt_name, "
        "c.tags, c.caption, c.raw, r.kind FROM tiles t JOIN captions c ON c.tile_id = t.id "
        "JOIN runs r ON r.id = c.run_id WHERE t.image_id = ? "
        "ORDER BY t.key != 'full', t.y0, t.x0, t.id, c.run_id", [image_id],
    ):
        box = [as_int(v, 0, MAX_DIMENSION) for v in r[2:6]]
        tile = tiles.setdefault(r[0], {
            "key": as_text(r[1]), "box": box if None not in box else None, "captions": [],
        })
        tile["captions"].append({
            "run": r[6], "model": as_text(r[7]), "backend": as_text(r[8]), "prompt": as_text(r[9]),
            "tags": list(as_tags(r[10])), "caption": as_text(r[11]) or "", "raw": as_text(r[12]) or "",
            "kind": as_text(r[13]) or "caption",
            **({"lines": ocr_lines(as_text(r[12]) or "")} if r[13] == OCR else {}),
        })
    return {
        "id": image["id"], "path": as_text(image["path"]), "external_id": as_text(image["external_id"]),
        "width": as_side(image["width"]), "height": as_side(image["height"]),
        "status": as_text(image["status"]), "searchable": image["status"] in SEARCHABLE,
        "tiles": list(tiles.values()),
    }
