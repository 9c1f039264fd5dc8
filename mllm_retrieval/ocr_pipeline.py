"""The OCR stage: images -> text lines -> store, with the caption pipeline's scan, resume and dedupe.

It reads whole images (the tile "full"); each batch of images commits on its own, so an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from tqdm import tqdm

from .errors import ImageError
from .images import Skipped, open_image
from .ocr import KIND, OcrEngine, lines_raw, searchable_text
from .parsing import Parsed
from .pipeline import Summary, _scan
from .store import Store

BATCH = 8  # images per transaction


def ocr_paths(store: Store, paths: Iterable[str | os.PathLike], engine: OcrEngine, force: bool = False,
              progress: bool = True, max_pixels: int | None = None) -> Summary:
    """Read the text in every image under `paths` that this OCR run has not read yet."""
    start = time.perf_counter()
    run = store.get_or_create_run(engine.backend, engine.model_id, engine.params(), kind=KIND)
    summary = Summary(run_id=run.id)
    jobs = _scan(store, list(paths), summary, force, progress, max_pixels)
    pending = []
    with store.atomic():
        for job in jobs:
            [(tile_id, _)] = store.ensure_tiles(job.image_id, [None], job.width, job.height)
            if force or not store.captioned_tiles(run.id, [tile_id]):
                pending.append((job, tile_id))
            else:
                summary.already_done += 1
    rows: list[tuple[int, str, Parsed, float]] = []

    def flush() -> None:
        with store.atomic():
            store.add_captions(run.id, rows, replace=force)
        summary.captioned_images += len(rows)
        summary.captioned_tiles += len(rows)
        rows.clear()

    for job, tile_id in tqdm(pending, desc="reading text", unit="img", disable=not progress):
        try:
            image = open_image(job.path, max_pixels)
        except ImageError as e:
            summary.failed.append(Skipped(job.path, str(e)))
            continue
        t0 = time.perf_counter()
        lines = engine.read(image)
        rows.append((tile_id, lines_raw(lines), Parsed((), searchable_text(lines)), time.perf_counter() - t0))
        if len(rows) >= BATCH:
            flush()
    if rows:
        flush()
    store.finish_run(run.id)
    summary.seconds = time.perf_counter() - start
    return summary
