"""The library's values as rows: coercion of stored values (any type may come back from SQLite), run and
tile-text rows, the run key."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..capture.tiling import Box

SEARCHABLE = ("ok", "external")
SQLITE_HEADER = b"SQLite format 3\x00"
MAX_DIMENSION = 1_000_000  # pixels: the widest image (or box) the store accepts
RUN_FIELDS = ("run", "backend", "model", "prompt", "images", "tiles", "started", "finished", "kind")


def now() -> str:
    """UTC timestamp in ISO format."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# Reading tolerates whatever a database holds (another tool, an older version, a hand edit): these turn
# a stored value into the type the code expects, or None/empty, and never raise.
def as_int(v: Any, lo: int = 0, hi: int = (1 << 63) - 1) -> int | None:
    """A stored integer within [lo, hi], else None (text, reals, blobs and out-of-range values)."""
    return v if type(v) is int and lo <= v <= hi else None


def as_side(v: Any) -> int | None:
    """A stored width or height: whole pixels from 1 to MAX_DIMENSION, else None."""
    return as_int(v, 1, MAX_DIMENSION)


def as_text(v: Any) -> str | None:
    """A stored text as str (a blob decoded, invalid bytes replaced; a number as written), or None."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return str(v)


def _no_constant(s: str) -> Any:
    raise ValueError(s)


_DECODER = json.JSONDecoder(parse_constant=_no_constant)  # json.loads(..., **kw) makes a decoder per call


def as_json(v: Any, default: Any) -> Any:
    """A stored JSON text parsed (finite numbers only), or `default` when it is not JSON of the same type."""
    try:
        value = _DECODER.decode(as_text(v) or "")
    except (ValueError, RecursionError):
        return default
    return value if isinstance(value, type(default)) else default


def as_tags(v: Any) -> tuple[str, ...]:
    """A stored tags column (a JSON list of strings) as a tuple; anything else is read as no tags."""
    return tuple(t for t in as_json(v, []) if isinstance(t, str))


def tile_key(box: Box | None, width: int | None, height: int | None) -> str:
    """"full" for the whole image, else "x0,y0,x1,y1"."""
    if box is None or (box.x0 == box.y0 == 0 and (box.x1, box.y1) == (width, height)):
        return "full"
    return ",".join(str(v) for v in box.as_list())


def run_key(
    backend: str, model: str, params: dict[str, Any], prompt_text: str | None, kind: str = "caption"
) -> tuple[str, str | None]:
    """(run key, prompt sha256): what identifies a run."""
    prompt_sha = hashlib.sha256(prompt_text.encode()).hexdigest() if prompt_text else None
    ident = {"backend": backend, "model": model, "prompt_sha256": prompt_sha, "params": params}
    if kind != "caption":  # caption runs keep the keys they always had
        ident["kind"] = kind
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16], prompt_sha


@dataclass(frozen=True)
class Run:
    """One captioning configuration: backend, model, prompt and output-changing params."""

    id: int
    backend: str
    model: str
    prompt_name: str | None
    prompt_sha256: str | None
    params: dict[str, Any]
    kind: str = "caption"


@dataclass(frozen=True)
class TileText:
    """One caption of one tile, as search and export read it."""

    image_id: int
    tile_id: int
    tile_key: str
    box: Box | None
    run_id: int
    tags: tuple[str, ...]
    caption: str
    kind: str = "caption"  # or "ocr": the caption is text read in the photo (see ocr.py)
