"""`caption --dry-run`: how much a run would caption and, after a short calibration, about how long.

Nothing is written: a library that does not exist yet is not created, known files are matched by path,
size and mtime (as the scan does), new files are only opened to read their size from the header.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ImageError
from ..library.store import Store
from .captioners.base import Captioner
from .images import Skipped, image_size, open_image, require_paths, walk
from .pipeline import CaptionSettings, tile_boxes
from .prompts import Prompt
from .tiling import crop


@dataclass
class Estimate:
    """What a caption run would do, and its calibrated cost."""

    files: int = 0
    done: int = 0
    todo: int = 0
    tiles: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    seconds_per_tile: float | None = None
    calibration_tiles: int = 0

    @property
    def seconds(self) -> float | None:
        """Estimated seconds for the tiles still to caption."""
        return None if self.seconds_per_tile is None else self.tiles * self.seconds_per_tile

    @property
    def images_per_hour(self) -> float | None:
        """Images per hour at the calibrated speed."""
        if not self.seconds or not self.todo:
            return None
        return self.todo / self.seconds * 3600


def estimate(
    store: Store | None,
    paths: Iterable[str | os.PathLike],
    captioner: Captioner,
    prompt: Prompt,
    settings: CaptionSettings | None = None,
    calibrate: bool = True,
) -> Estimate:
    """Count new and already captioned images and their tiles; time one batch on the model."""
    settings = settings or CaptionSettings()
    grid, overlap, batch_size = settings.grid, settings.overlap, settings.batch_size
    paths = list(paths)
    require_paths(paths)
    est = Estimate()
    run = None
    if store is not None:
        run = store.find_run(captioner.backend, captioner.model_id, captioner.params(), prompt.text)
    per_image = store.captions_per_image(run.id) if run else {}
    sample: list[tuple[Path, list]] = []
    for path in walk(paths, est.skipped):
        est.files += 1
        try:
            boxes = tile_boxes(*image_size(path), grid, overlap)
        except ImageError as e:
            est.skipped.append(Skipped(str(path), str(e)))
            continue
        if _already_done(store, path, per_image, len(boxes)):
            est.done += 1
            continue
        est.todo += 1
        est.tiles += len(boxes)
        if len(sample) < batch_size:
            sample.append((path, boxes))
    if calibrate and sample:
        _calibrate(est, captioner, prompt, sample, batch_size)
    return est


def _already_done(store: Store | None, path: Path, per_image: dict[int, int], tiles: int) -> bool:
    if store is None or not per_image:
        return False
    row = store.file_row(str(path))
    if not row or row["status"] != "ok":
        return False
    st = path.stat()
    unchanged = row["bytes"] == st.st_size and row["mtime"] == st.st_mtime
    return unchanged and per_image.get(row["image_id"], 0) >= tiles


def _calibrate(est: Estimate, captioner: Captioner, prompt: Prompt, sample: list, batch_size: int) -> None:
    """Seconds per tile: one warm-up call (loading, first-call overhead), then one timed batch."""
    crops = []
    for path, boxes in sample:
        try:
            image = open_image(path)
        except ImageError as e:
            est.skipped.append(Skipped(str(path), str(e)))
            continue
        crops += [crop(image, b) for b in boxes]
    crops = crops[:batch_size]
    if not crops:
        return
    check = getattr(captioner, "check", None)
    if check is not None:
        check()
    captioner.describe(crops[:1], prompt.text)
    t = time.perf_counter()
    captioner.describe(crops, prompt.text)
    est.seconds_per_tile = (time.perf_counter() - t) / len(crops)
    est.calibration_tiles = len(crops)


def describe_estimate(est: Estimate, grid: str) -> list[str]:
    """The lines `caption --dry-run` prints."""
    lines = [
        f"{est.files} image files: {est.todo} to caption, {est.done} already captioned by this run, "
        f"{len(est.skipped)} skipped",
        f"{est.tiles} tiles to caption (full image + {grid} tiles)",
    ]
    if est.seconds is not None:
        per_hour = est.images_per_hour
        lines.append(
            f"calibrated on {est.calibration_tiles} tiles: {est.seconds_per_tile:.2f} s per tile -> about "
            f"{_duration(est.seconds)}" + (f" ({per_hour:,.0f} images/hour)" if per_hour else "")
        )
    elif est.tiles:
        lines.append("not calibrated: no time estimate")
    return lines


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return f"{seconds:.0f} s"
    if minutes < 120:
        return f"{minutes} min"
    hours = seconds / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"
