"""Captioning on a Ray cluster: Ray Data spreads the photos over an actor pool, the driver writes SQLite.

The driver does what the local pipeline does first (`scan`: hash and dedupe; `plan`: the tiles this run
still needs), then hands one item per photo to `ray.data` with a class-based UDF, `CaptionerActor`: one
captioner (one model) per actor, which opens the photo, cuts its tiles and captions them. Answers stream
back through `iter_batches` and the driver alone stores them, one transaction per batch, so killing the
driver loses at most the batches in flight and a rerun resumes; an actor that dies is restarted by Ray
and its batch retried. A photo that cannot be opened, or whose captioning fails twice, comes back as an
error row and is reported in the summary with its reason, like a bad file; so is a photo whose batch
failed on every retry (it never comes back).

Photos are opened by path on the workers: on a cluster the paths must be readable there (shared storage).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import time
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

from ..errors import ImageError, MllmretError
from ..library.store import Store
from .captioners.base import factory, get_captioner
from .images import Skipped, open_image
from .parsing import parse_output
from .pipeline import CaptionSettings, Summary, plan, scan
from .prompts import Prompt
from .tiling import Box, crop, grid_boxes

log = logging.getLogger(__name__)

ATTEMPTS = 2  # tries per photo inside an actor before it is reported as failed
TASK_RETRIES = 2  # Ray retries of a batch whose actor died (on a restarted actor)
MAX_BLOCKS = 10_000  # dataset blocks; a block is about one actor call of photos, up to this many


def import_ray():
    """The `ray` module, or a one-line error naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MllmretError(
            '--ray needs Ray Data: pip install -e ".[ray]" (or pip install "ray[data]")') from None
    return ray


class CaptionerActor:
    """A Ray Data UDF holding one captioner: photos in (path, tiles), one row per tile out."""

    def __init__(self, entry: Any, options: dict[str, Any], prompt: str, max_pixels: int | None) -> None:
        make = entry  # the backend's registry entry ("module:attr" or a callable), sent by the driver
        if isinstance(make, str):
            module, _, attr = make.partition(":")
            make = getattr(importlib.import_module(module), attr)
        self.captioner = make(**options)
        self.prompt = prompt
        self.max_pixels = max_pixels

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        """Caption the tiles of a batch of photos in one call; fall back to one photo at a time."""
        out: dict[str, list] = {"image_id": [], "tile_id": [], "raw": [], "seconds": [], "error": [],
                                "path": []}
        photos = []
        for image_id, path, tiles in zip(batch["image_id"], batch["path"], batch["tiles"], strict=True):
            todo = [(int(t), Box(*b) if b else None) for t, b in json.loads(tiles)]
            try:
                image = open_image(str(path), self.max_pixels)
            except ImageError as e:
                _row(out, int(image_id), -1, "", 0.0, str(e), str(path))
                continue
            photos.append((int(image_id), str(path), todo, [crop(image, b) for _, b in todo]))
        if photos and not self._describe(photos, out):
            for photo in photos:
                self._one_photo(photo, out)
        return out

    def _describe(self, photos: list, out: dict[str, list]) -> bool:
        crops = [c for *_, cs in photos for c in cs]
        t0 = time.perf_counter()
        try:
            answers = self.captioner.describe(crops, self.prompt)
        except Exception as e:  # one photo may spoil a batch: the caller retries photo by photo
            log.warning("a batch of %d photos failed (%s); retrying them one by one", len(photos), e)
            return False
        per_item = (time.perf_counter() - t0) / max(1, len(crops))
        it = iter(answers)
        for image_id, path, todo, _ in photos:
            for tile_id, _ in todo:
                _row(out, image_id, tile_id, next(it), per_item, "", path)
        return True

    def _one_photo(self, photo: tuple, out: dict[str, list]) -> None:
        image_id, path, todo, crops = photo
        error = ""
        for _ in range(ATTEMPTS):
            t0 = time.perf_counter()
            try:
                answers = self.captioner.describe(crops, self.prompt)
            except Exception as e:
                error = f"captioning failed {ATTEMPTS} times: {type(e).__name__}: {e}"
                continue
            per_item = (time.perf_counter() - t0) / max(1, len(crops))
            for (tile_id, _), raw in zip(todo, answers, strict=True):
                _row(out, image_id, tile_id, raw, per_item, "", path)
            return
        _row(out, image_id, -1, "", 0.0, error, path)


def _row(out: dict[str, list], image_id: int, tile_id: int, raw: str, seconds: float, error: str,
         path: str) -> None:
    for key, value in (("image_id", image_id), ("tile_id", tile_id), ("raw", raw), ("seconds", seconds),
                       ("error", error), ("path", path)):
        out[key].append(value)


def caption_with_ray(
    store: Store,
    paths: Iterable[str | os.PathLike],
    backend: str,
    options: dict[str, Any],
    prompt: Prompt,
    settings: CaptionSettings | None = None,
    address: str | None = None,
    workers: int = 1,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    progress: bool = True,
) -> Summary:
    """Caption every image and tile under `paths` that this run has not captioned yet, on Ray actors.

    `address`: None or "local" starts a local Ray, "auto" joins the running cluster, else a cluster
    address; a Ray already initialised in this process is used as it is."""
    ray = import_ray()
    start = time.perf_counter()
    settings = settings or CaptionSettings()
    grid, overlap, batch_size, force, max_pixels = (settings.grid, settings.overlap, settings.batch_size,
                                                    settings.force, settings.max_pixels)
    grid_boxes(64, 64, grid, overlap)  # validate before any work
    get_captioner(backend, **options)  # options checked here, before anything starts
    summary = Summary(run_id=0)
    jobs = scan(store, list(paths), summary, force, progress, max_pixels)
    started = not ray.is_initialized()
    if started:
        _connect(ray, address)
    try:
        run = store.get_or_create_run(*_identity(ray, backend, options, cpus_per_worker, gpus_per_worker),
                                      prompt.name, prompt.text)
        summary.run_id = run.id
        pending = plan(store, run.id, jobs, grid, overlap, force, summary)
        if pending:
            _caption(ray, store, run.id, pending, backend, options, prompt, workers, cpus_per_worker,
                     gpus_per_worker, batch_size, force, progress, max_pixels, summary)
    finally:
        if started:
            ray.shutdown()
    store.finish_run(run.id)
    summary.seconds = time.perf_counter() - start
    return summary


def _connect(ray: Any, address: str | None) -> None:
    """Start a local Ray (None, "local") or join a cluster ("auto", an address); one line if it fails."""
    try:
        ray.init(address=None if address in (None, "local") else address, include_dashboard=False,
                 log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = "start a local Ray" if address in (None, "local") else f"join the Ray cluster at {address!r}"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MllmretError(
            f"cannot {where}: {first}; start one with `ray start --head`, or use --ray local") from None


def _identity(ray: Any, backend: str, options: dict[str, Any], cpus: float, gpus: float
              ) -> tuple[str, str, dict[str, Any]]:
    """(backend, model, params) as a worker sees them: settings such as dtype `auto` resolve where the
    model runs (a GPU worker's float16 is not the driver's float32)."""
    def identity(entry: Any) -> tuple[str, str, dict[str, Any]]:
        c = CaptionerActor(entry, options, "", None).captioner
        return c.backend, c.model_id, c.params()

    task = ray.remote(identity).options(num_cpus=cpus, num_gpus=gpus or None)
    return ray.get(task.remote(factory(backend)))


def _caption(ray: Any, store: Store, run_id: int, pending: list, backend: str, options: dict[str, Any],
             prompt: Prompt, workers: int, cpus: float, gpus: float, batch_size: int, force: bool,
             progress: bool, max_pixels: int | None, summary: Summary) -> None:
    """Two passes: the photos in batches, then whatever a dead batch took down, one photo per task, so
    only a photo that kills its worker every time is lost; it is reported, the run goes on."""
    tiles_per_photo = max(1, round(sum(len(todo) for _, todo in pending) / len(pending)))
    photos_per_call = max(1, batch_size // tiles_per_photo)
    context = ray.data.DataContext.get_current()
    errored, context.max_errored_blocks = context.max_errored_blocks, -1  # a dead batch must not end the run
    bar = tqdm(total=len(pending), desc="captioning (ray)", unit="img", disable=not progress)
    try:
        for per_call in (photos_per_call, 1):
            rows = _dataset(ray, pending, backend, options, prompt, workers, cpus, gpus, per_call, max_pixels)
            lost = _store_results(store, run_id, pending, rows, batch_size, force, summary, bar)
            pending = [(job, todo) for job, todo in pending if job.image_id in lost]
            if not pending:
                break
            log.warning("%d photos came back from no worker; trying them one by one", len(pending))
    finally:
        context.max_errored_blocks = errored
        bar.close()
    for job, _ in pending:
        summary.failed.append(Skipped(job.path, f"its worker died every time ({TASK_RETRIES + 1} tries, "
                                                "alone and in a batch)"))


def _dataset(ray: Any, pending: list, backend: str, options: dict[str, Any], prompt: Prompt, workers: int,
             cpus: float, gpus: float, photos_per_call: int, max_pixels: int | None):
    """The lazy Ray dataset of per-tile answers for the pending photos (one item per photo)."""
    items = [{"image_id": job.image_id, "path": job.path,
              "tiles": json.dumps([[t, b.as_list() if b else None] for t, b in todo])}
             for job, todo in pending]
    blocks = min(MAX_BLOCKS, -(-len(items) // photos_per_call))
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    return ds.map_batches(
        CaptionerActor,
        fn_constructor_kwargs={"entry": factory(backend), "options": options, "prompt": prompt.text,
                               "max_pixels": max_pixels},
        compute=ray.data.ActorPoolStrategy(size=max(1, workers)),
        batch_size=photos_per_call, batch_format="numpy",
        num_cpus=cpus, num_gpus=gpus or None, max_task_retries=TASK_RETRIES,
    )


def _store_results(store: Store, run_id: int, pending: list, rows: Any, batch_size: int, force: bool,
                   summary: Summary, bar: Any) -> set[int]:
    """Commit answers as they stream back, one transaction per batch; failed photos go to the summary.
    Returns the ids of the photos that did not come back at all."""
    remaining = {job.image_id: {t for t, _ in todo} for job, todo in pending}
    paths = {job.image_id: job.path for job, _ in pending}
    for batch in rows.iter_batches(batch_size=batch_size, batch_format="numpy"):
        answers = []
        for image_id, tile_id, raw, seconds, error in zip(
                batch["image_id"], batch["tile_id"], batch["raw"], batch["seconds"], batch["error"],
                strict=True):
            image_id, tile_id = int(image_id), int(tile_id)
            if error:
                if remaining.pop(image_id, None) is not None:
                    summary.failed.append(Skipped(paths[image_id], str(error)))
                    bar.update(1)
            elif tile_id in remaining.get(image_id, ()):  # a retried batch may send an answer twice
                remaining[image_id].discard(tile_id)
                answers.append((image_id, tile_id, str(raw), float(seconds)))
        _commit(store, run_id, answers, force)
        summary.captioned_tiles += len(answers)
        for image_id in {a[0] for a in answers}:
            if not remaining[image_id]:
                del remaining[image_id]
                summary.captioned_images += 1
                bar.update(1)
    return set(remaining)


def _commit(store: Store, run_id: int, answers: list[tuple[int, int, str, float]], force: bool) -> None:
    if not answers:
        return
    with store.atomic():
        store.add_captions(run_id, [(t, raw, parse_output(raw), sec) for _, t, raw, sec in answers],
                           replace=force)
