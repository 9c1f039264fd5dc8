"""The lines of a JSONL import, read and checked one by one: a bad line is reported, never fatal.

Reading is bounded: a line longer than MAX_LINE bytes is skipped without being held in memory, and a
file that runs MAX_RUN bytes without a line break (a binary file, /dev/zero) stops the import there.
Each line must be UTF-8 (a byte-order mark at the start of the file is dropped), one JSON object,
with finite numbers of at most 19 digits, and each known field of the expected type (`FIELDS`);
unknown fields are ignored. `tags` may be a list of strings or one string of comma-separated tags.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from ..errors import ImportFormatError
from .store import MAX_DIMENSION

MAX_LINE = 1 << 20  # bytes in one line
MAX_RUN = 64 << 20  # bytes without a line break before the rest of a file is given up
MAX_SIDE = MAX_DIMENSION  # pixels, for width, height and box coordinates
MAX_DIGITS = 19  # an integer with more digits cannot be stored (SQLite integers are 64-bit)
MAX_NAME = 4096  # characters of a path, file name or id
MAX_DEPTH = 32  # nesting of `params`
INT64 = (-(1 << 63), (1 << 63) - 1)
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
UTF8_BOM = b"\xef\xbb\xbf"
OTHER_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16",
              b"\xfe\xff": "UTF-16"}


@dataclass(frozen=True)
class Record:
    """One checked line: every field of the import format, typed (None where absent)."""

    path: str | None = None
    file_name: str | None = None
    image_id: str | None = None
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    tile: str | None = None
    box: tuple[int, int, int, int] | None = None
    backend: str | None = None
    model: str | None = None
    prompt_name: str | None = None
    prompt: str | None = None
    params: dict[str, Any] | None = None
    text: str | None = None
    tags: tuple[str, ...] | None = None
    caption: str | None = None
    seconds: float | None = None
    kind: str | None = None  # "ocr": text read in the photo, given as `lines`; "metadata": a person's
    lines: list[Any] | None = None


def _name(v: Any) -> bool:
    return type(v) is str and len(v) <= MAX_NAME and "\x00" not in v


def _whole(v: Any, lo: int, hi: int) -> bool:
    return type(v) is int and lo <= v <= hi


def _box(v: Any) -> bool:
    return (type(v) is list and len(v) == 4
            and all(type(x) in (int, float) and 0 <= x <= MAX_SIDE for x in v))


def _tags(v: Any) -> bool:
    return type(v) is str or (type(v) is list and all(type(t) is str for t in v))


def _seconds(v: Any) -> bool:
    return type(v) in (int, float) and 0 <= v <= 1e9


def _depth(v: Any, limit: int = MAX_DEPTH) -> bool:
    if limit < 0:
        return False
    if isinstance(v, dict):
        return all(_depth(x, limit - 1) for x in v.values())
    if isinstance(v, list):
        return all(_depth(x, limit - 1) for x in v)
    return True


# field: (check, what it must be)
FIELDS: dict[str, tuple[Any, str]] = {
    "path": (_name, "a file path (text)"),
    "file_name": (_name, "a file name (text)"),
    "image_id": (lambda v: _name(v) or _whole(v, *INT64), "text or a whole number"),
    "sha256": (lambda v: type(v) is str and SHA256_HEX.fullmatch(v), "64 hexadecimal digits"),
    "width": (lambda v: _whole(v, 1, MAX_SIDE), f"a whole number of pixels from 1 to {MAX_SIDE:,}"),
    "height": (lambda v: _whole(v, 1, MAX_SIDE), f"a whole number of pixels from 1 to {MAX_SIDE:,}"),
    "tile": (lambda v: type(v) is str and len(v) <= 100, '"full" or "x0,y0,x1,y1"'),
    "box": (_box, f"[x0, y0, x1, y1]: four numbers of pixels from 0 to {MAX_SIDE:,}"),
    "backend": (_name, "text"),
    "model": (_name, "text"),
    "prompt_name": (_name, "text"),
    "prompt": (lambda v: type(v) is str, "text"),
    "params": (lambda v: type(v) is dict and _depth(v), "a JSON object (nested at most 32 deep)"),
    "text": (lambda v: type(v) is str, "text"),
    "tags": (_tags, 'a list of strings, or one string of comma-separated tags ("dog, park")'),
    "caption": (lambda v: type(v) is str, "text"),
    "seconds": (_seconds, "a number of seconds from 0 to 1e9"),
    "kind": (lambda v: v in ("caption", "ocr", "metadata"), '"caption", "ocr" or "metadata"'),
    "lines": (lambda v: type(v) is list and _depth(v), 'a list of lines ({"text", "box", "confidence"})'),
}


class _BadNumber(ValueError):
    pass


def _parse_int(s: str) -> int:
    if len(s.lstrip("-")) > MAX_DIGITS:
        raise _BadNumber(f"a number too large to store ({len(s.lstrip('-'))} digits)")
    return int(s)


def _parse_float(s: str) -> float:
    v = float(s)
    if not math.isfinite(v):
        raise _BadNumber(f"a number out of range ({s[:40]})")
    return v


def _parse_constant(s: str) -> Any:
    raise _BadNumber(f"{s} is not a JSON number")


def parse_line(raw: bytes) -> Record:
    """One line's bytes as a Record; ImportFormatError (with a `kind`) says why it cannot be one."""
    if b"\x00" in raw:
        raise ImportFormatError("binary data (NUL bytes): not UTF-8 text (UTF-16, or not a text file?)",
                                "not UTF-8 text")
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ImportFormatError(f"not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})",
                                "not UTF-8 text") from None
    try:
        data = json.loads(line, parse_int=_parse_int, parse_float=_parse_float,
                          parse_constant=_parse_constant)
    except _BadNumber as e:
        raise ImportFormatError(f"{e}", "bad number") from None
    except json.JSONDecodeError as e:
        raise ImportFormatError(f"not valid JSON ({e.msg} at column {e.colno})", "not valid JSON") from None
    except RecursionError:
        raise ImportFormatError("not valid JSON (nested too deeply)", "not valid JSON") from None
    except ValueError as e:  # anything else json.loads can say
        raise ImportFormatError(f"not valid JSON ({e})", "not valid JSON") from None
    if type(data) is not dict:
        raise ImportFormatError(f"expected a JSON object per line (this is {_json_type(data)})",
                                "not a JSON object")
    if _SURROGATE_ESCAPE.search(raw):  # only then can a string hold a lone surrogate
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ImportFormatError("a string holds a lone UTF-16 surrogate (\\ud800-\\udfff escape)",
                                    "not UTF-8 text") from None
    return to_record(data)


def to_record(data: dict[str, Any]) -> Record:
    """A parsed JSON object as a Record, each known field checked (null counts as absent)."""
    values: dict[str, Any] = {}
    for key, (check, what) in FIELDS.items():
        v = data.get(key)
        if v is None:
            continue
        if not check(v):
            raise ImportFormatError(f"{key} must be {what}, not {_show(v)}", f"invalid {key}")
        values[key] = v
    if "image_id" in values:
        values["image_id"] = str(values["image_id"])
    if "sha256" in values:
        values["sha256"] = values["sha256"].lower()
    if "box" in values:
        values["box"] = tuple(int(x) for x in values["box"])
    if "tags" in values:
        tags = values["tags"]
        values["tags"] = tuple(t.strip() for t in (tags.split(",") if isinstance(tags, str) else tags)
                               if t.strip())
    if "seconds" in values:
        values["seconds"] = float(values["seconds"])
    return Record(**values)


def _json_type(v: Any) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number", bool: "true/false",
            type(None): "null"}.get(type(v), type(v).__name__)


def _show(v: Any) -> str:
    """A short rendering of a bad value for the report."""
    kind = "an object " if isinstance(v, dict) else "an array " if isinstance(v, list) else ""
    text = json.dumps(v, ensure_ascii=False)
    return kind + (text if len(text) <= 40 else text[:40] + "…")


def check_encoding(head: bytes, source: str) -> int:
    """How many bytes of byte-order mark to skip; a UTF-16/32 file is refused in one line."""
    if head.startswith(UTF8_BOM):
        return len(UTF8_BOM)
    for bom, name in OTHER_BOMS.items():
        if head.startswith(bom):
            raise ImportFormatError(f"{source} is {name} text: save it as UTF-8 (e.g. iconv -f {name} "
                                    f"-t UTF-8 {source} > out.jsonl) and import that", "not UTF-8 text")
    return 0


def read_lines(handle: IO[bytes]) -> Iterator[tuple[int, bytes | ImportFormatError]]:
    """(line number, bytes) of each non-blank line, or an error for a line too long to read.

    Memory stays bounded by MAX_LINE whatever the file holds; after MAX_RUN bytes without a line
    break, the error says the rest is not read, and iteration ends."""
    lineno = 0
    while True:
        line = handle.readline(MAX_LINE + 1)
        if not line:
            return
        lineno += 1
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            length = len(line)
            while True:
                chunk = handle.readline(MAX_LINE)
                length += len(chunk)
                if not chunk or chunk.endswith(b"\n"):
                    break
                if length > MAX_RUN:
                    yield lineno, ImportFormatError(
                        f"more than {MAX_RUN >> 20} MiB without a line break (a binary file?): the rest "
                        "of the file is not read", "line too long")
                    return
            yield lineno, ImportFormatError(
                f"line too long ({length:,} bytes; at most {MAX_LINE:,})", "line too long")
            continue
        if line.strip():
            yield lineno, line
