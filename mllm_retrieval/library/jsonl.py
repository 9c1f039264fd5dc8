"""JSONL import and export of captions; export writes exactly what import reads."""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from ..capture.images import Skipped, image_size, sha256_file
from ..capture.ocr import KIND as OCR
from ..capture.ocr import lines_raw, parse_lines, searchable_text
from ..capture.parsing import Parsed, parse_output
from ..capture.tiling import Box
from ..errors import ImageError, ImportFormatError, MllmretError
from .records import MAX_SIDE, SHA256_HEX, Record, check_encoding, parse_line, read_lines
from .store import Store, as_int, as_json, as_side, as_tags, as_text

BATCH = 500


@dataclass(frozen=True)
class SkippedLine(Skipped):
    """A line that was not imported: `path` is "FILE:LINE", `kind` groups the reasons in the report."""

    line: int = 0
    kind: str = "invalid line"


@dataclass
class ImportSummary:
    """What an import did."""

    lines: int = 0
    added: int = 0
    already_present: int = 0
    images: int = 0
    runs: set[int] = field(default_factory=set)
    skipped: list[SkippedLine] = field(default_factory=list)

    @property
    def imported_lines(self) -> int:
        """Lines that were read and stored (or were already stored)."""
        return self.added + self.already_present


def import_jsonl(
    store: Store, source: str | os.PathLike, images_dir: str | os.PathLike | None = None,
    model: str | None = None, progress: bool = True,
) -> ImportSummary:
    """Import captions from JSONL; each line names an image by path, file_name or image_id.

    Every line is checked (`records`); a bad one is skipped and reported with its line number and
    reason, the others are imported. Each line is stored on its own (a savepoint), so nothing a bad
    line did stays, and lines commit in batches of BATCH."""
    summary = ImportSummary()
    known = _Known()
    source = Path(source)
    root = Path(images_dir).absolute() if images_dir is not None else None
    try:
        handle = source.open("rb")
    except OSError as e:
        raise ImportFormatError(f"cannot read {str(source)!r}: {e.strerror or e}") from e
    with handle:
        try:
            handle.read(check_encoding(handle.peek(4)[:4], str(source)))
            lines = read_lines(handle)
            bar = tqdm(desc="importing", unit="line", disable=not progress)
            while True:
                chunk = [x for _, x in zip(range(BATCH), lines, strict=False)]
                if not chunk:
                    break
                with store.atomic():
                    for lineno, raw in chunk:
                        summary.lines += 1
                        error = _import_line(store, raw, root, model, known, summary)
                        if error is not None:
                            summary.skipped.append(
                                SkippedLine(f"{source}:{lineno}", str(error), lineno, error.kind))
                bar.update(len(chunk))
            bar.close()
        except OSError as e:
            raise ImportFormatError(f"cannot read {str(source)!r}: {e.strerror or e}") from e
    summary.images = len(set(known.images.values()))
    for run_id in summary.runs:
        store.finish_run(run_id)
    return summary


def skipped_report(skipped: list[SkippedLine], show: int = 10, lines_per_kind: int = 5) -> list[str]:
    """The report of skipped lines: one summary line by reason (with the first line numbers of each),
    then the first `show` lines in full."""
    if not skipped:
        return []
    kinds: dict[str, list[int]] = {}
    for item in skipped:
        kinds.setdefault(item.kind, []).append(item.line)
    parts = []
    for kind, numbers in sorted(kinds.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        shown = ", ".join(map(str, numbers[:lines_per_kind]))
        shown += ", …" if len(numbers) > lines_per_kind else ""
        parts.append(f"{len(numbers)} {kind} (line{'s' if len(numbers) > 1 else ''} {shown})")
    out = ["skipped: " + "; ".join(parts)]
    out += [f"  line {item.line}: {item.reason}" for item in skipped[:show]]
    if len(skipped) > show:
        out.append(f"  … and {len(skipped) - show} more lines")
    return out


@dataclass
class _Known:
    """What earlier lines of this import stored: image ids by file or external key, run ids by setting.
    Filled only after a line is stored, so a line rolled back leaves nothing here."""

    images: dict[str, int] = field(default_factory=dict)
    runs: dict[tuple, int] = field(default_factory=dict)


def _import_line(store: Store, raw: bytes | ImportFormatError, root: Path | None, model: str | None,
                 known: _Known, summary: ImportSummary) -> ImportFormatError | None:
    """Import one line in its own savepoint; the reason it was skipped, or None."""
    if isinstance(raw, ImportFormatError):
        return raw
    try:
        rec = parse_line(raw)
    except ImportFormatError as e:
        return e
    store.db.execute("SAVEPOINT import_line")
    try:
        learned, added = _import_one(store, rec, root, model, known)
    except Exception as e:
        store.db.execute("ROLLBACK TO import_line")
        store.db.execute("RELEASE import_line")
        if isinstance(e, ImportFormatError):
            return e
        if isinstance(e, ImageError):
            return ImportFormatError(str(e), "unreadable image file")
        if isinstance(e, OSError):
            return ImportFormatError(f"unreadable image file ({e.strerror or e})", "unreadable image file")
        if isinstance(e, (sqlite3.Error, MllmretError, ValueError, TypeError, OverflowError, UnicodeError)):
            return ImportFormatError(f"could not be stored ({type(e).__name__}: {e})", "could not be stored")
        raise
    store.db.execute("RELEASE import_line")
    known.images.update(learned.images)
    known.runs.update(learned.runs)
    summary.runs.update(learned.runs.values())
    summary.added += added
    summary.already_present += 1 - added
    return None


def _import_one(store: Store, rec: Record, root: Path | None, model: str | None, known: _Known
                ) -> tuple[_Known, int]:
    """Store one record: (the image and run it used, as new `_Known` entries; captions added: 0 or 1)."""
    if not (rec.path or rec.file_name or rec.image_id):
        raise ImportFormatError('the record names no image: give "path", "file_name" or "image_id"',
                                "no image")
    ocr_rows = ocr_record(rec)
    if ocr_rows is None and rec.text is None and rec.caption is None and rec.tags is None:
        raise ImportFormatError('no "text" (or "tags"/"caption") in the record', "no text")
    box = record_box(rec)
    learned = _Known()
    image_id, width, height = _image_for(store, rec, root, known, learned)
    kind = OCR if ocr_rows else "metadata" if rec.kind == "metadata" else "caption"
    setting = (rec.backend or "import", rec.model or model or "unknown",
               json.dumps(rec.params or {}, sort_keys=True), rec.prompt_name, rec.prompt, kind)
    run_id = known.runs.get(setting)
    if run_id is None:
        run_id = learned.runs[setting] = store.get_or_create_run(
            backend=setting[0], model=setting[1], params=rec.params or {}, prompt_name=rec.prompt_name,
            prompt_text=rec.prompt, kind=kind,
        ).id
    [(tile_id, _)] = store.ensure_tiles(image_id, [box], width, height)
    if ocr_rows:
        raw, parsed = ocr_rows
    elif rec.tags is not None or rec.caption is not None:
        parsed = Parsed(rec.tags or (), rec.caption or "")
        raw = rec.text if rec.text is not None else _compose(parsed)
    else:
        raw = rec.text or ""
        parsed = parse_output(raw)
    added = store.add_captions(run_id, [(tile_id, raw, parsed, rec.seconds)])
    return learned, added


def _image_for(store: Store, rec: Record, root: Path | None, known: _Known, learned: _Known
               ) -> tuple[int, int | None, int | None]:
    """The image a record is about (id, width, height): a real file when one is found, else an
    external id.

    A hash the line merely claims (`sha256` without the file) may name an image already stored, but
    never changes it: path, size and id stay those of the file that was indexed."""
    ident = rec.path or rec.file_name or rec.image_id
    candidates = []
    if rec.path:
        candidates.append(Path(rec.path).expanduser())
    if rec.file_name and root is not None:
        candidates.append(_inside(root, rec.file_name))
    file = next((p for p in candidates if _is_file(p)), None)
    cache_key = str(file) if file else f"ext:{rec.sha256}:{rec.image_id}:{ident}"
    image_id = known.images.get(cache_key)
    if image_id is None and file is not None:
        sha = sha256_file(file)
        width, height = image_size(file)
        st = file.stat()
        image_id = store.add_image(sha, str(file.absolute()), width, height, st.st_size,
                                   external_id=rec.image_id)
        store.record_file(str(file.absolute()), image_id, st.st_size, st.st_mtime)
    elif image_id is None:
        image_id = store.add_image(
            rec.sha256, rec.path or rec.file_name or ident, rec.width, rec.height,
            external_id=rec.image_id or rec.file_name or ident, status="external",
        )
    learned.images[cache_key] = image_id
    width, height = store.db.execute("SELECT width, height FROM images WHERE id = ?", [image_id]).fetchone()
    return image_id, width, height


def _inside(root: Path, file_name: str) -> Path:
    """`file_name` under --images; a name that leads out of it (.., an absolute path) is refused."""
    path = Path(os.path.normpath(root / file_name))
    if Path(file_name).is_absolute() or not path.is_relative_to(root):
        raise ImportFormatError(f"file_name {file_name!r} is outside the --images folder", "outside --images")
    return path


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def record_box(rec: Record) -> Box | None:
    """A record's tile as a box (None: the full image), by the importer's rules; ImportFormatError if bad."""
    if rec.box is not None:
        box = rec.box
    elif rec.tile in (None, "full"):
        return None
    else:
        parts = rec.tile.split(",")
        if len(parts) != 4 or not all(p.strip().isascii() and p.strip().isdigit() for p in parts):
            raise ImportFormatError(f"bad tile {rec.tile!r}: use \"full\" or \"x0,y0,x1,y1\" in pixels",
                                    "invalid tile")
        box = tuple(int(p) for p in parts)
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0 or max(box) > MAX_SIDE:
        raise ImportFormatError(f"bad box {list(box)!r}: x1 > x0 and y1 > y0 are required", "invalid box")
    return Box(x0, y0, x1, y1)


def ocr_record(rec: Record) -> tuple[str, Parsed] | None:
    """(raw, parsed) of an OCR record ("kind": "ocr" with "lines"), None for a caption record."""
    if rec.kind != OCR:
        return None
    lines = parse_lines(json.dumps({"lines": rec.lines}))
    if not lines and rec.lines != []:
        raise ImportFormatError('bad "lines": use [{"text", "box": [[x, y] x4], "confidence"}, ...]',
                                "invalid lines")
    return lines_raw(lines), Parsed((), searchable_text(lines))


def _compose(parsed: Parsed) -> str:
    return f"Tags: {', '.join(parsed.tags)}\nCaption: {parsed.caption}"


def _sha256(v: Any) -> str | None:
    text = as_text(v)
    return text if text and SHA256_HEX.fullmatch(text) else None


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
        box = [as_int(v, 0, MAX_SIDE) for v in r[6:10]]
        record = {
            "path": as_text(r[0]), "sha256": _sha256(r[1]), "image_id": as_text(r[2]),
            "width": as_side(r[3]), "height": as_side(r[4]),
            "tile": as_text(r[5]), "box": box if None not in box else None,
            "backend": as_text(r[10]), "model": as_text(r[11]), "prompt_name": as_text(r[12]),
            "prompt": as_text(r[13]), "params": as_json(r[14], {}), "text": as_text(r[15]) or "",
            "tags": list(as_tags(r[16])), "caption": as_text(r[17]) or "",
        }
        if r[18] == OCR:  # text read in the photo: its lines with boxes and confidences
            record.update(kind=OCR, text=as_text(r[17]) or "",
                          lines=[line.to_dict() for line in parse_lines(as_text(r[15]) or "")])
        elif r[18] == "metadata":  # a person's keywords and descriptions (tags read), not a captioner's
            record["kind"] = "metadata"
        out.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
        n += 1
    return n
