"""The OCR stage: images -> text lines -> store, with the caption pipeline's scan, resume and dedupe.

It reads whole images (the tile "full"), and with grid="2x2" their tiles as well: on the hand-labelled COCO
photos that found 76% of the words instead of 70%, at 3.3x the time (bench/ocr_tiles.py). Scan, resume and
batches: stage.run_stage.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from ..library.store import Store
from .images import open_image
from .ocr import KIND, Line, OcrEngine, lines_raw, searchable_text
from .parsing import Parsed
from .pipeline import Summary
from .stage import Row, run_stage
from .tiling import Box, crop


def ocr_paths(store: Store, paths: Iterable[str | os.PathLike], engine: OcrEngine, force: bool = False,
              progress: bool = True, max_pixels: int | None = None, grid: str = "none") -> Summary:
    """Read the text in every image (and, with a grid, every tile) under `paths` not read by this run yet.

    Each tile's lines are stored with boxes in the whole image's pixels, so they draw where they are."""
    def read(path: str, todo: list[tuple[int, Box]]) -> list[Row]:
        image = open_image(path, max_pixels)
        rows = []
        for tile_id, box in todo:
            t0 = time.perf_counter()
            lines = [shifted(line, box.x0, box.y0) for line in engine.read(crop(image, box))]
            seconds = time.perf_counter() - t0
            rows.append((tile_id, lines_raw(lines), Parsed((), searchable_text(lines)), seconds))
        return rows

    def new_run():
        return store.get_or_create_run(engine.backend, engine.model_id, engine.params(), kind=KIND)

    return run_stage(store, new_run, paths, read, "reading text", grid, force, progress, max_pixels)


def shifted(line: Line, dx: int, dy: int) -> Line:
    """A line read in a tile, its box moved into the whole image's pixels."""
    return Line(line.text, tuple((x + dx, y + dy) for x, y in line.box), line.confidence)
