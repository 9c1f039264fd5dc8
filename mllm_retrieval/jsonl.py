"""JSONL import and export of captions; export writes exactly what import reads."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from .errors import ImageError, ImportFormatError
from .images import Skipped, open_image, sha256_file
from .ocr import KIND as OCR
from .ocr import lines_raw, parse_lines, searchable_text
from .parsing import Parsed, parse_output
from .store import Store
from .tiling import Box

BATCH = 500


@dataclass
class ImportSummary:
    """What an import did."""

    lines: int = 0
    added: int = 0
    already_present: int = 0
    images: int = 0
    runs: set[int] = field(default_factory=set)
    skipped: list[Skipped] = field(default_factory=list)


def import_jsonl(
    store: Store, source: str | os.PathLike, images_dir: str | os.PathLike | None = None,
    model: str | None = None, progress: bool = True,
) -> ImportSummary:
    """Import captions from JSONL; each line names an image by path, file_name or image_id."""
    summary = ImportSummary()
    images: dict[str, int] = {}
    source = Path(source)
    try:
        handle = source.open(encoding="utf-8")
    except OSError as e:
        raise ImportFormatError(f"cannot read {str(source)!r}: {e.strerror or e}") from e
    with handle:
        lines = _numbered_records(handle, source)
        bar = tqdm(desc="importing", unit="line", disable=not progress)
        while True:
            chunk = [x for _, x in zip(range(BATCH), lines, strict=False)]
            if not chunk:
                break
            with store.atomic():
                for lineno, record in chunk:
                    summary.lines += 1
                    try:
                        _import_one(store, record, images_dir, model, images, summary)
                    except (ImageError, ImportFormatError) as e:
                        summary.skipped.append(Skipped(f"{source}:{lineno}", str(e)))
            bar.update(len(chunk))
        bar.close()
    summary.images = len(images)
    for run_id in summary.runs:
        store.finish_run(run_id)
    return summary


def _numbered_records(
    handle: IO[str], source: Path
) -> Iterator[tuple[int, dict[str, Any] | ImportFormatError]]:
    for lineno, line in enumerate(handle, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            yield lineno, ImportFormatError(f"not valid JSON ({e.msg})")
            continue
        if not isinstance(record, dict):
            yield lineno, ImportFormatError("expected a JSON object per line")
            continue
        yield lineno, record


def _import_one(store: Store, rec: dict[str, Any] | ImportFormatError, images_dir, model: str | None,
                images: dict[str, int], summary: ImportSummary) -> None:
    if isinstance(rec, ImportFormatError):
        raise rec
    ocr_rows = ocr_record(rec)
    text = rec.get("text")
    if ocr_rows is None and text is None and "caption" not in rec and "tags" not in rec:
        raise ImportFormatError("no \"text\" (or \"tags\"/\"caption\") in the record")
    image_id, width, height = _image_for(store, rec, images_dir, images)
    run = store.get_or_create_run(
        backend=str(rec.get("backend") or "import"),
        model=str(rec.get("model") or model or "unknown"),
        params=rec.get("params") if isinstance(rec.get("params"), dict) else {},
        prompt_name=rec.get("prompt_name"),
        prompt_text=rec.get("prompt"),
        kind=OCR if ocr_rows else "caption",
    )
    summary.runs.add(run.id)
    box = _box(rec)
    [(tile_id, _)] = store.ensure_tiles(image_id, [box], width, height)
    if ocr_rows:
        raw, parsed = ocr_rows
    elif isinstance(rec.get("tags"), list) or isinstance(rec.get("caption"), str):
        parsed = Parsed(tuple(str(t) for t in rec.get("tags") or ()), str(rec.get("caption") or ""))
        raw = str(text) if text is not None else _compose(parsed)
    else:
        raw = str(text)
        parsed = parse_output(raw)
    added = store.add_captions(run.id, [(tile_id, raw, parsed, rec.get("seconds"))])
    summary.added += added
    summary.already_present += 1 - added


def _image_for(store: Store, rec: dict[str, Any], images_dir, images: dict[str, int]
               ) -> tuple[int, int | None, int | None]:
    """The image a record is about: a real file when one is found, else an external id."""
    ident = rec.get("path") or rec.get("file_name") or rec.get("image_id")
    if ident is None:
        raise ImportFormatError('the record names no image: give "path", "file_name" or "image_id"')
    candidates = []
    if rec.get("path"):
        candidates.append(Path(str(rec["path"])).expanduser())
    if rec.get("file_name") and images_dir:
        candidates.append(Path(images_dir, str(rec["file_name"])))
    file = next((p for p in candidates if p.is_file()), None)
    cache_key = str(file) if file else f"ext:{rec.get('sha256')}:{rec.get('image_id')}:{ident}"
    if cache_key in images:
        row = store.image_row(images[cache_key])
        return row["id"], row["width"], row["height"]
    external_id = str(rec["image_id"]) if rec.get("image_id") is not None else None
    if file is not None:
        sha = sha256_file(file)
        with open_image(file) as im:
            width, height = im.size
        st = file.stat()
        image_id = store.add_image(sha, str(file.absolute()), width, height, st.st_size,
                                   external_id=external_id)
        store.record_file(str(file.absolute()), image_id, st.st_size, st.st_mtime)
    else:
        width, height = rec.get("width"), rec.get("height")
        image_id = store.add_image(
            rec.get("sha256"), str(rec.get("path") or rec.get("file_name") or ident),
            width, height, external_id=external_id or str(rec.get("file_name") or ident),
            status="external",
        )
    images[cache_key] = image_id
    return image_id, width, height


def _box(rec: dict[str, Any]) -> Box | None:
    box = rec.get("box")
    if box is None:
        tile = rec.get("tile")
        if tile in (None, "full"):
            return None
        box = str(tile).split(",")
    try:
        x0, y0, x1, y1 = (int(float(v)) for v in box)
    except (TypeError, ValueError):
        raise ImportFormatError(f"bad box {box!r}: use [x0, y0, x1, y1] in pixels") from None
    if x1 <= x0 or y1 <= y0:
        raise ImportFormatError(f"bad box {box!r}: x1 > x0 and y1 > y0 are required")
    return Box(x0, y0, x1, y1)


def ocr_record(rec: dict[str, Any]) -> tuple[str, Parsed] | None:
    """(raw, parsed) of an OCR record ("kind": "ocr" with "lines"), None for a caption record."""
    if rec.get("kind") != OCR:
        return None
    lines = parse_lines(json.dumps({"lines": rec.get("lines")}))
    if not lines and rec.get("lines") != []:
        raise ImportFormatError('bad "lines": use [{"text", "box": [[x, y] x4], "confidence"}, ...]')
    return lines_raw(lines), Parsed((), searchable_text(lines))


def _compose(parsed: Parsed) -> str:
    return f"Tags: {', '.join(parsed.tags)}\nCaption: {parsed.caption}"


def export_jsonl(store: Store, out: IO[str], run_ids: list[int] | None = None) -> int:
    """Write one JSON line per caption; `import_jsonl` reads it back unchanged."""
    sql = (
        "SELECT i.path, i.sha256, i.external_id, i.width, i.height, t.key, t.x0, t.y0, t.x1, t.y1,"
        " r.backend, r.model, r.prompt_name, r.prompt, r.params, c.raw, c.tags, c.caption, r.kind "
        "FROM captions c JOIN tiles t ON t.id = c.tile_id JOIN images i ON i.id = t.image_id "
        "JOIN runs r ON r.id = c.run_id"
    )
    args: list[Any] = []
    if run_ids is not None:
        sql += f" WHERE c.run_id IN ({','.join('?' * len(run_ids))})"
        args = list(run_ids)
    n = 0
    for r in store.db.execute(sql + " ORDER BY i.id, t.id, r.id", args):
        record = {
            "path": r[0], "sha256": r[1], "image_id": r[2], "width": r[3], "height": r[4],
            "tile": r[5], "box": [r[6], r[7], r[8], r[9]] if r[6] is not None else None,
            "backend": r[10], "model": r[11], "prompt_name": r[12], "prompt": r[13],
            "params": json.loads(r[14]), "text": r[15], "tags": json.loads(r[16]),
            "caption": r[17],
        }
        if r[18] == OCR:  # text read in the photo: its lines with boxes and confidences
            record.update(kind=OCR, text=r[17], lines=[line.to_dict() for line in parse_lines(r[15])])
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        n += 1
    return n
