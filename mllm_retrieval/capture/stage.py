"""A reading stage beside captioning (OCR, photo metadata): the caption pipeline's scan, plan, resume and
dedupe, then one `read` per image that returns the rows to store for its pending tiles; each batch of rows
commits on its own, so an interrupted run resumes where it stopped."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

from tqdm import tqdm

from ..errors import ImageError
from ..library.store import Run, Store
from .images import Skipped, require_paths
from .parsing import Parsed
from .pipeline import Summary, plan, scan
from .tiling import Box, grid_boxes

BATCH = 8  # tiles per transaction
Row = tuple[int, str, Parsed, float | None]  # tile id, raw, parsed, seconds
Reader = Callable[[str, list[tuple[int, Box]]], list[Row]]  # (image path, pending tiles) -> rows


def run_stage(store: Store, new_run: Callable[[], Run], paths: Iterable[str | os.PathLike], read: Reader,
              desc: str, grid: str = "none", force: bool = False, progress: bool = True,
              max_pixels: int | None = None) -> Summary:
    """Store `read`'s rows for every image (and, with a grid, every tile) the run has not read yet; an
    image `read` cannot open (ImageError) is reported and skipped. The run (`new_run()`) is made only once
    the paths exist and the grid is valid, so a typo leaves no empty run behind."""
    start = time.perf_counter()
    paths = list(paths)
    require_paths(paths)
    grid_boxes(64, 64, grid)  # validate before any work
    run = new_run()
    summary = Summary(run_id=run.id)
    jobs = scan(store, paths, summary, force, progress, max_pixels)
    pending = plan(store, run.id, jobs, grid, 0.0, force, summary)
    rows: list[Row] = []

    def flush() -> None:
        with store.atomic():
            store.add_captions(run.id, rows, replace=force)
        rows.clear()

    for job, todo in tqdm(pending, desc=desc, unit="img", disable=not progress):
        try:
            rows.extend(read(job.path, todo))
        except ImageError as e:
            summary.failed.append(Skipped(job.path, str(e)))
            continue
        summary.captioned_images += 1
        summary.captioned_tiles += len(todo)
        if len(rows) >= BATCH:
            flush()
    if rows:
        flush()
    store.finish_run(run.id)
    summary.seconds = time.perf_counter() - start
    return summary
