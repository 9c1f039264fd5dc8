"""Images -> tiles -> captioner -> store, resumable: each batch commits on its own."""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from ..defaults import CAPTION_BATCH
from ..errors import ImageError
from ..library.store import Store
from .captioners.base import Captioner
from .images import Skipped, image_size, open_image, require_paths, sha256_file, walk
from .parsing import parse_output
from .prompts import Prompt
from .streaming import caption_streamed, streams
from .tiling import Box, crop, grid_boxes

log = logging.getLogger(__name__)

MIN_TILE = 16
SCAN_CHUNK = 200
PREFETCH = 2  # images decoded ahead of the model


@dataclass
class Summary:
    """What a caption run did."""

    run_id: int
    files: int = 0
    images: int = 0
    captioned_images: int = 0
    captioned_tiles: int = 0
    already_done: int = 0
    duplicates: int = 0
    removed: list[str] = field(default_factory=list)  # files that left a captioned folder
    failed: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        """Captioned images per second of wall time."""
        return self.captioned_images / self.seconds if self.seconds else 0.0


@dataclass
class _Job:
    image_id: int
    path: str
    width: int
    height: int


@dataclass(frozen=True)
class CaptionSettings:
    """How a run cuts and batches its work: the tiles, tiles per model call, whether to caption again
    what the run has, and the largest image (pixels) that is decoded."""

    grid: str = "2x2"
    overlap: float = 0.0
    batch_size: int = CAPTION_BATCH
    force: bool = False
    max_pixels: int | None = None


def caption_paths(
    store: Store,
    paths: Iterable[str | os.PathLike],
    captioner: Captioner,
    prompt: Prompt,
    settings: CaptionSettings | None = None,
    progress: bool = True,
) -> Summary:
    """Caption every image and tile under `paths` that this run has not captioned yet."""
    start = time.perf_counter()
    s = settings or CaptionSettings()
    grid_boxes(64, 64, s.grid, s.overlap)  # validate before any work
    paths = list(paths)
    require_paths(paths)
    check = getattr(captioner, "check", None)
    if check is not None:
        check()
    run = store.get_or_create_run(
        captioner.backend, captioner.model_id, captioner.params(), prompt.name, prompt.text
    )
    summary = Summary(run_id=run.id)
    jobs = scan(store, paths, summary, s.force, progress, s.max_pixels)
    pending = plan(store, run.id, jobs, s.grid, s.overlap, s.force, summary)
    caption = caption_streamed if streams(captioner) else _caption
    caption(store, run.id, pending, captioner, prompt, s.batch_size, s.force, progress, summary, s.max_pixels)
    store.finish_run(run.id)
    summary.seconds = time.perf_counter() - start
    return summary


def scan(store: Store, paths: list, summary: Summary, force: bool, progress: bool,
          max_pixels: int | None) -> list[_Job]:
    """Hash new or changed files, register images; unchanged files are not re-read.

    Each chunk of files is read and hashed first, outside any transaction; only then are its records
    written, in one short transaction, so another writer never waits on hashing."""
    skipped: list[Skipped] = []
    files = list(walk(paths, skipped))
    summary.failed.extend(skipped)
    summary.files = len(files)
    seen_images: dict[int, _Job] = {}
    seen_paths: set[str] = set()
    bar = tqdm(total=len(files), desc="scanning", unit="file", disable=not progress, leave=False)
    for i in range(0, len(files), SCAN_CHUNK):
        chunk = files[i : i + SCAN_CHUNK]
        found = []
        for path in chunk:
            found.append(_inspect(store, path, force, max_pixels))
            bar.update(1)
        with store.atomic():
            jobs = [_register(store, f, summary) for f in found]
        seen_paths.update(str(p) for p in chunk)
        for job in jobs:
            if job is None:
                continue
            if job.image_id in seen_images:
                summary.duplicates += 1
                continue
            seen_images[job.image_id] = job
    bar.close()
    with store.atomic():
        for root in paths:
            if Path(root).is_dir():
                summary.removed += store.forget_missing(str(Path(root).absolute()), seen_paths)
    summary.images = len(seen_images)
    return list(seen_images.values())


@dataclass
class _Found:
    """What reading one file found (before anything is written): a known image, a new one, or an error."""

    path: str
    known: _Job | None = None
    sha: str | None = None
    size: tuple[int, int] | None = None
    stat: tuple[int, float] | None = None
    error: str | None = None
    unreadable: bool = False


def _inspect(store: Store, path: Path, force: bool, max_pixels: int | None) -> _Found:
    """Stat, and hash and measure a new or changed file; reads only (no transaction needed)."""
    key = str(path)
    try:
        st = path.stat()
    except OSError as e:
        return _Found(key, error=f"unreadable ({e.strerror})", unreadable=True)
    row = store.file_row(key)
    if (row and row["status"] == "ok" and row["bytes"] == st.st_size
            and row["mtime"] == st.st_mtime and not force):
        image = store.image_row(row["image_id"])
        return _Found(key, known=_Job(image["id"], key, image["width"], image["height"]))
    stat = (st.st_size, st.st_mtime)
    try:
        sha = sha256_file(path)
        known = store.image_with_sha(sha, external=False)
        size = (known[1], known[2]) if known and known[1] else image_size(path, max_pixels)
    except ImageError as e:
        return _Found(key, stat=stat, error=str(e))
    return _Found(key, sha=sha, size=size, stat=stat)


def _register(store: Store, found: _Found, summary: Summary) -> _Job | None:
    """Write what `_inspect` found: the file's record and its image; failures are recorded."""
    if found.known is not None:
        return found.known
    if found.error is not None:
        summary.failed.append(Skipped(found.path, found.error))
        if not found.unreadable:
            store.record_file(found.path, None, *found.stat, error=found.error)
        return None
    width, height = found.size
    image_id = store.add_image(found.sha, found.path, width, height, found.stat[0])
    store.record_file(found.path, image_id, *found.stat)
    return _Job(image_id, found.path, width, height)


def tile_boxes(width: int, height: int, grid: str, overlap: float) -> list[Box | None]:
    """The full image and the grid's tiles that are large enough to caption."""
    return [
        b for i, b in enumerate(grid_boxes(width, height, grid, overlap))
        if i == 0 or min(b.x1 - b.x0, b.y1 - b.y0) >= MIN_TILE
    ]


def plan(store: Store, run_id: int, jobs: list[_Job], grid: str, overlap: float, force: bool,
          summary: Summary) -> list[tuple[_Job, list[tuple[int, Box]]]]:
    """For each image, the tiles this run still has to caption."""
    pending = []
    with store.atomic():
        for job in jobs:
            boxes = tile_boxes(job.width, job.height, grid, overlap)
            tiles = store.ensure_tiles(job.image_id, boxes, job.width, job.height)
            done = set() if force else store.captioned_tiles(run_id, [t for t, _ in tiles])
            todo = [(t, b) for t, b in tiles if t not in done]
            if todo:
                pending.append((job, todo))
            else:
                summary.already_done += 1
    return pending


def _caption(store: Store, run_id: int, pending: list, captioner: Captioner, prompt: Prompt,
             batch_size: int, force: bool, progress: bool, summary: Summary,
             max_pixels: int | None) -> None:
    """Run the model over pending tiles in batches; each batch is one transaction."""
    bar = tqdm(total=len(pending), desc="captioning", unit="img", disable=not progress)
    remaining = {job.image_id: len(todo) for job, todo in pending}

    def failed(job: _Job, error: ImageError) -> None:
        summary.failed.append(Skipped(job.path, str(error)))
        bar.update(1)

    try:
        for answers in answer_batches(pending, captioner, prompt.text, batch_size, max_pixels, failed):
            with store.atomic():
                store.add_captions(run_id, [(tile, raw, parse_output(raw), seconds)
                                            for _, tile, raw, seconds in answers], replace=force)
            summary.captioned_tiles += len(answers)
            for job, _, _, _ in answers:
                remaining[job.image_id] -= 1
                if remaining[job.image_id] == 0:
                    summary.captioned_images += 1
                    bar.update(1)
    finally:
        bar.close()


def answer_batches(pending: list, captioner: Captioner, prompt_text: str, batch_size: int,
                   max_pixels: int | None, failed: Callable[[_Job, ImageError], None]):
    """The model's answers to the pending tiles, a list of (job, tile, raw answer, seconds per tile) per
    batch of at most `batch_size` tiles, in order, while a thread decodes the next images; an image that
    cannot be decoded goes to `failed(job, error)` instead. `pending`: (job, [(tile, box), ...]) pairs."""
    batch: list[tuple[_Job, Any, Image.Image]] = []

    def answer() -> list[tuple[_Job, Any, str, float]]:
        t0 = time.perf_counter()
        raws = captioner.describe([im for _, _, im in batch], prompt_text)
        per_item = (time.perf_counter() - t0) / len(batch)
        return [(job, tile, raw, per_item) for (job, tile, _), raw in zip(batch, raws, strict=True)]

    for job, todo, crops in _prefetched(pending, max_pixels):
        if isinstance(crops, ImageError):
            failed(job, crops)
            continue
        for (tile, _), image in zip(todo, crops, strict=True):
            batch.append((job, tile, image))
            if len(batch) >= batch_size:
                yield answer()
                batch = []
    if batch:
        yield answer()


def _crops(job: _Job, todo: list[tuple[int, Box]], max_pixels: int | None) -> list[Image.Image] | ImageError:
    """Decode one image and cut its pending tiles (the full image for a tile without a box)."""
    try:
        image = open_image(job.path, max_pixels)
    except ImageError as e:
        return e
    return [crop(image, b) for _, b in todo]


def _prefetched(pending: list, max_pixels: int | None, ahead: int = PREFETCH):
    """Yield (job, todo, crops) in order while a thread decodes and crops the next images, so the
    model does not wait for JPEG decoding, EXIF rotation and cropping."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mllmret-decode") as pool:
        queue: deque = deque()
        items = iter(pending)
        for job, todo in items:
            queue.append((job, todo, pool.submit(_crops, job, todo, max_pixels)))
            if len(queue) > ahead:
                head = queue.popleft()
                yield head[0], head[1], head[2].result()
        while queue:
            job, todo, future = queue.popleft()
            yield job, todo, future.result()
