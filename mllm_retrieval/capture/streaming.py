"""Requests in flight independent of batches, for captioners that answer one image at a time.

A server backend (`describe_one`) keeps `concurrency` requests going at all times across photos: a new
request starts as soon as one returns, so a slow answer holds up nothing but itself. Answers are
committed as they arrive, in transactions of `batch_size` tiles (or every COMMIT_SECONDS), so a killed
run loses at most the requests in flight and the answers not yet committed, and a rerun resumes."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Protocol

from PIL import Image
from tqdm import tqdm

from ..errors import ImageError
from ..library.store import Store
from .images import Skipped
from .parsing import parse_output
from .prompts import Prompt

COMMIT_SECONDS = 2.0  # answers wait at most this long for a commit when batches fill slowly


class OneAtATime(Protocol):
    """A captioner that answers one image per call, safely from many threads."""

    concurrency: int

    def describe_one(self, image: Image.Image, prompt: str) -> str:
        """The model's raw answer for one image."""
        ...


def streams(captioner: Any) -> bool:
    """Whether the captioner can be driven one request at a time (a server backend)."""
    return callable(getattr(captioner, "describe_one", None))


class _Committer:
    """Collects (image_id, tile_id, raw, seconds) answers; commits them in batches."""

    def __init__(self, store: Store, run_id: int, batch_size: int, force: bool, summary: Any,
                 on_image: Callable[[], None]) -> None:
        self.store, self.run_id, self.batch_size, self.force = store, run_id, batch_size, force
        self.summary, self.on_image = summary, on_image
        self.rows: list[tuple[int, int, str, float]] = []
        self.remaining: dict[int, int] = {}
        self.last = time.monotonic()

    def add(self, row: tuple[int, int, str, float]) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.batch_size or time.monotonic() - self.last >= COMMIT_SECONDS:
            self.commit()

    def commit(self) -> None:
        self.last = time.monotonic()
        if not self.rows:
            return
        with self.store.atomic():
            self.store.add_captions(
                self.run_id, [(tid, raw, parse_output(raw), sec) for _, tid, raw, sec in self.rows],
                replace=self.force)
        self.summary.captioned_tiles += len(self.rows)
        for image_id, *_ in self.rows:
            self.remaining[image_id] -= 1
            if self.remaining[image_id] == 0:
                self.summary.captioned_images += 1
                self.on_image()
        self.rows.clear()


def _timed(captioner: OneAtATime, image: Image.Image, prompt: str, image_id: int,
           tile_id: int) -> tuple[int, int, str, float]:
    t0 = time.perf_counter()
    raw = captioner.describe_one(image, prompt)
    return image_id, tile_id, raw, time.perf_counter() - t0


def caption_streamed(store: Store, run_id: int, pending: list, captioner: OneAtATime, prompt: Prompt,
                     batch_size: int, force: bool, progress: bool, summary: Any,
                     max_pixels: int | None) -> None:
    """Caption the pending tiles with `concurrency` requests always in flight, committing as they return."""
    bar = tqdm(total=len(pending), desc="captioning", unit="img", disable=not progress)
    sink = _Committer(store, run_id, batch_size, force, summary, lambda: bar.update(1))

    def started(job: Any, tiles: int) -> None:
        sink.remaining[job.image_id] = tiles

    def failed(job: Any, error: ImageError) -> None:
        summary.failed.append(Skipped(job.path, str(error)))
        bar.update(1)

    try:
        stream_answers(pending, captioner, prompt.text, max_pixels, sink.add, started, failed)
    finally:
        sink.commit()
        bar.close()


def stream_answers(pending: list, captioner: OneAtATime, prompt: str, max_pixels: int | None,
                   answered: Callable[[tuple[int, int, str, float]], None],
                   started: Callable[[Any, int], None], failed: Callable[[Any, ImageError], None]) -> None:
    """Send every pending tile with `concurrency` requests in flight; `answered((image_id, tile_id, raw,
    seconds))` is called in this thread as each returns, `started(job, tiles)` before a photo's first
    request, `failed(job, error)` for a photo that cannot be decoded. A request that fails for good
    raises, after the answers already back (even those that arrive while stopping) are handed over."""
    from .pipeline import _prefetched

    limit = max(1, int(getattr(captioner, "concurrency", 1)))
    in_flight: set[Future] = set()

    def collect(block: bool) -> None:
        done, _ = wait(in_flight, timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for future in done:
            in_flight.discard(future)
            answered(future.result())

    pool = ThreadPoolExecutor(limit, thread_name_prefix="mllmret-request")
    try:
        for job, todo, crops in _prefetched(pending, max_pixels, ahead=max(2, limit // 4)):
            if isinstance(crops, ImageError):
                failed(job, crops)
                continue
            started(job, len(todo))
            for (tile_id, _), image in zip(todo, crops, strict=True):
                while len(in_flight) >= limit:
                    collect(block=True)
                in_flight.add(pool.submit(_timed, captioner, image, prompt, job.image_id, tile_id))
            if in_flight:
                collect(block=False)
        while in_flight:
            collect(block=True)
    finally:
        for future in in_flight:
            future.cancel()
        pool.shutdown(wait=True)
        for future in in_flight:  # answers that arrived while the run was stopping are kept too
            if future.done() and not future.cancelled() and future.exception() is None:
                answered(future.result())
        close = getattr(captioner, "close", None)
        if close is not None:
            close()
