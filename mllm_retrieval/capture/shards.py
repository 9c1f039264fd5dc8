"""Captioning on machines that cannot reach the database: JSONL shards in the export format.

`caption_to_shards` scans and tiles like the local pipeline (same sha256 dedupe, same tiles), captions,
and writes the answers as `mllmret export` lines, a shard every SHARD_TILES tiles (whole images only),
each written to a temporary name and renamed into place, so a shard is complete or absent. A rerun into
the same folder skips the tiles its shards already hold for this run. `import_shards` merges a folder of
shards into a library with `import_jsonl`: the same dedupe, and importing twice adds nothing.

Paths in the shards are the ones the worker read: the importing machine must see the photos at the same
paths (shared storage), or the images are stored as external ones, by their claimed sha256."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..errors import ImageError, ImportFormatError, MllmretError
from ..library.store import Store, run_key, tile_key
from .captioners.base import Captioner
from .images import Skipped, image_size, sha256_file, walk
from .parsing import parse_output
from .pipeline import CaptionSettings, Summary, _Job, answer_batches, tile_boxes
from .prompts import Prompt
from .streaming import stream_answers, streams
from .tiling import Box, grid_boxes

log = logging.getLogger(__name__)

SHARD_TILES = 500
SUFFIX = ".jsonl"


@dataclass(frozen=True)
class _Image:
    """A file to caption: its path, content hash, size and the tiles still to do (key, box)."""

    path: str
    sha256: str
    width: int
    height: int
    tiles: list[tuple[str, Box]]


def caption_to_shards(
    paths: list[str | os.PathLike], captioner: Captioner, prompt: Prompt, out_dir: str | os.PathLike,
    settings: CaptionSettings | None = None, progress: bool = True, shard_tiles: int = SHARD_TILES,
) -> Summary:
    """Caption the images under `paths` into JSONL shards in `out_dir`; no database is opened."""
    start = time.perf_counter()
    s = settings or CaptionSettings()
    grid_boxes(64, 64, s.grid, s.overlap)  # validate before any work
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MllmretError(f"cannot create the shard folder {str(out)!r}: {e.strerror or e}") from e
    run = _run_fields(captioner, prompt)
    key = run_key(run["backend"], run["model"], run["params"], run["prompt"])[0]
    done = set() if s.force else shard_tiles_done(out, key)
    summary = Summary(run_id=0)
    todo = _scan(paths, s.grid, s.overlap, done, summary, s.max_pixels, progress)
    writer = _ShardWriter(out, run, shard_tiles)
    try:
        _caption(todo, captioner, prompt, s.batch_size, summary, writer, s.max_pixels, progress)
    finally:
        writer.flush()
    summary.seconds = time.perf_counter() - start
    return summary


def _run_fields(captioner: Captioner, prompt: Prompt) -> dict[str, Any]:
    return {"backend": captioner.backend, "model": captioner.model_id, "params": captioner.params(),
            "prompt_name": prompt.name, "prompt": prompt.text}


def shard_tiles_done(folder: Path, key: str) -> set[tuple[str, str]]:
    """(sha256, tile key) of every caption of this run in the folder's shards."""
    done: set[tuple[str, str]] = set()
    for shard in sorted(folder.glob(f"*{SUFFIX}")):
        with shard.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    r = json.loads(line)
                    if run_key(r["backend"], r["model"], r["params"] or {}, r["prompt"])[0] == key:
                        done.add((r["sha256"], r["tile"]))
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue
    return done


def _scan(paths: list, grid: str, overlap: float, done: set[tuple[str, str]], summary: Summary,
          max_pixels: int | None, progress: bool) -> list[_Image]:
    """Hash every file once, drop duplicates by content, keep the tiles not yet in a shard."""
    skipped: list[Skipped] = []
    files = list(walk(paths, skipped))
    summary.failed.extend(skipped)
    summary.files = len(files)
    seen: set[str] = set()
    todo = []
    for path in tqdm(files, desc="scanning", unit="file", disable=not progress, leave=False):
        try:
            sha = sha256_file(path)
            width, height = image_size(path, max_pixels)
        except ImageError as e:
            summary.failed.append(Skipped(str(path), str(e)))
            continue
        if sha in seen:
            summary.duplicates += 1
            continue
        seen.add(sha)
        boxes = tile_boxes(width, height, grid, overlap)
        tiles = [(tile_key(b, width, height), b or Box(0, 0, width, height)) for b in boxes]
        tiles = [(k, b) for k, b in tiles if (sha, k) not in done]
        if tiles:
            todo.append(_Image(str(path), sha, width, height, tiles))
        else:
            summary.already_done += 1
    summary.images = len(seen)
    return todo


def _caption(todo: list[_Image], captioner: Captioner, prompt: Prompt, batch_size: int, summary: Summary,
             writer: _ShardWriter, max_pixels: int | None, progress: bool) -> None:
    """Caption tiles in batches; an image's records go to the writer once all its tiles are answered."""
    bar = tqdm(total=len(todo), desc="captioning", unit="img", disable=not progress)
    jobs = [(_Job(i, im.path, im.width, im.height), list(enumerate(b for _, b in im.tiles)))
            for i, im in enumerate(todo)]
    answers: dict[int, dict[int, tuple[str, float]]] = {}

    def answered(row: tuple[int, int, str, float]) -> None:
        i, t, raw, seconds = row
        answers.setdefault(i, {})[t] = (raw, seconds)
        if len(answers[i]) == len(todo[i].tiles):  # a photo goes to a shard whole
            writer.add(todo[i], answers.pop(i))
            summary.captioned_images += 1
            summary.captioned_tiles += len(todo[i].tiles)
            bar.update(1)

    def failed(job: _Job, error: ImageError) -> None:
        summary.failed.append(Skipped(job.path, str(error)))
        bar.update(1)

    try:
        if streams(captioner):  # a server backend: requests in flight across photos, as in a local run
            stream_answers(jobs, captioner, prompt.text, max_pixels, answered, lambda *_: None, failed)
            return
        for batch in answer_batches(jobs, captioner, prompt.text, batch_size, max_pixels, failed):
            for job, t, raw, seconds in batch:
                answered((job.image_id, t, raw, seconds))
    finally:
        bar.close()


class _ShardWriter:
    """Buffers whole images' records; writes a shard atomically (temporary file, then rename)."""

    def __init__(self, folder: Path, run: dict[str, Any], shard_tiles: int) -> None:
        self.folder, self.run, self.shard_tiles = folder, run, shard_tiles
        self.prefix = f"shard-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.lines: list[str] = []
        self.count = 0

    def add(self, image: _Image, answers: dict[int, tuple[str, float]]) -> None:
        for t, (key, box) in enumerate(image.tiles):
            raw, seconds = answers[t]
            parsed = parse_output(raw)
            record = {"path": image.path, "sha256": image.sha256, "width": image.width,
                      "height": image.height, "tile": key, "box": box.as_list(), **self.run, "text": raw,
                      "tags": list(parsed.tags), "caption": parsed.caption, "seconds": round(seconds, 4)}
            self.lines.append(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
        if len(self.lines) >= self.shard_tiles:
            self.flush()

    def flush(self) -> None:
        """Write the buffered records as one new shard; a crash leaves no partial shard behind."""
        if not self.lines:
            return
        final = self.folder / f"{self.prefix}-{self.count:05d}{SUFFIX}"
        tmp = self.folder / f".{final.name}.tmp"
        with tmp.open("w", encoding="utf-8") as f:
            f.writelines(self.lines)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        self.count += 1
        self.lines.clear()


def import_shards(store: Store, folder: str | os.PathLike, progress: bool = True):
    """Import every *.jsonl shard of `folder` (sorted), each with `import_jsonl`; one summary for all."""
    from ..library.jsonl import ImportSummary, import_jsonl

    shards = sorted(Path(folder).glob(f"*{SUFFIX}"))
    if not shards:
        raise ImportFormatError(f"no *{SUFFIX} shards in {str(folder)!r}: write them with "
                                "`mllmret caption PATHS --shards DIR`")
    total = ImportSummary()
    for shard in tqdm(shards, desc="importing shards", unit="shard", disable=not progress):
        s = import_jsonl(store, shard, progress=False)
        total.lines += s.lines
        total.added += s.added
        total.already_present += s.already_present
        total.images += s.images
        total.runs |= s.runs
        total.skipped += s.skipped
    return total
