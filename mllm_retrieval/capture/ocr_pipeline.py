"""The OCR stage: images -> text lines -> store, with the caption pipeline's scan, resume and dedupe.

It reads whole images (the tile "full"), and with grid="2x2" their tiles as well: on the hand-labelled COCO
photos that found 72% of the words instead of 66%, at 4.3x the time (bench/ocr_tiles.py). Each batch of
images commits on its own, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from tqdm import tqdm

from ..errors import ImageError
from ..library.store import Store
from .images import Skipped, open_image, require_paths
from .ocr import KIND, Line, OcrEngine, lines_raw, searchable_text
from .parsing import Parsed
from .pipeline import Summary, plan, scan
from .tiling import crop, grid_boxes

BATCH = 8  # tiles per transaction


def ocr_paths(store: Store, paths: Iterable[str | os.PathLike], engine: OcrEngine, force: bool = False,
              progress: bool = True, max_pixels: int | None = None, grid: str = "none") -> Summary:
    """Read the text in every image (and, with a grid, every tile) under `paths` not read by this run yet.

    Each tile's lines are stored with boxes in the whole image's pixels, so they draw where they are."""
    start = time.perf_counter()
    grid_boxes(64, 64, grid)  # validate before any work
    paths = list(paths)
    require_paths(paths)
    run = store.get_or_create_run(engine.backend, engine.model_id, engine.params(), kind=KIND)
    summary = Summary(run_id=run.id)
    jobs = scan(store, paths, summary, force, progress, max_pixels)
    pending = plan(store, run.id, jobs, grid, 0.0, force, summary)
    rows: list[tuple[int, str, Parsed, float]] = []

    def flush() -> None:
        with store.atomic():
            store.add_captions(run.id, rows, replace=force)
        rows.clear()

    for job, todo in tqdm(pending, desc="reading text", unit="img", disable=not progress):
        try:
            image = open_image(job.path, max_pixels)
        except ImageError as e:
            summary.failed.append(Skipped(job.path, str(e)))
            continue
        for tile_id, box in todo:
            t0 = time.perf_counter()
            lines = engine.read(crop(image, box))
            lines = [shifted(line, box.x0, box.y0) for line in lines]
            rows.append((tile_id, lines_raw(lines), Parsed((), searchable_text(lines)),
                         time.perf_counter() - t0))
        summary.captioned_images += 1
        summary.captioned_tiles += len(todo)
        if len(rows) >= BATCH:
            flush()
    if rows:
        flush()
    store.finish_run(run.id)
    summary.seconds = time.perf_counter() - start
    return summary


def shifted(line: Line, dx: int, dy: int) -> Line:
    """A line read in a tile, its box moved into the whole image's pixels."""
    return Line(line.text, tuple((x + dx, y + dy) for x, y in line.box), line.confidence)
