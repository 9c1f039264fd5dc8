"""Tiles ("key expansion"): the full image plus a grid of crops, as pixel boxes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import GridError

MAX_GRID = 8


@dataclass(frozen=True)
class Box:
    """A crop in pixel coordinates of the oriented image: [x0, x1) x [y0, y1)."""

    x0: int
    y0: int
    x1: int
    y1: int

    def as_list(self) -> list[int]:
        """[x0, y0, x1, y1] for JSON."""
        return [self.x0, self.y0, self.x1, self.y1]


def parse_grid(grid: str) -> tuple[int, int]:
    """Parse "2x2", "3x3", "3x2" (columns x rows) or "none" into (cols, rows); none is (1, 1)."""
    text = grid.strip().lower()
    if text in ("none", "1x1", "full"):
        return (1, 1)
    m = re.fullmatch(r"(\d+)\s*[x×*]\s*(\d+)", text)
    if not m:
        raise GridError(f"invalid grid {grid!r}: use COLSxROWS such as 2x2 or 3x3, or none")
    cols, rows = int(m.group(1)), int(m.group(2))
    if not (1 <= cols <= MAX_GRID and 1 <= rows <= MAX_GRID):
        raise GridError(f"invalid grid {grid!r}: columns and rows must be 1..{MAX_GRID}")
    return cols, rows


def grid_boxes(width: int, height: int, grid: str = "2x2", overlap: float = 0.0) -> list[Box]:
    """The full image first, then the grid's crops row by row, each grown by `overlap` of its size."""
    if not 0.0 <= overlap < 1.0:
        raise GridError(f"invalid overlap {overlap}: use a fraction in [0, 1)")
    cols, rows = parse_grid(grid)
    boxes = [Box(0, 0, width, height)]
    if cols == rows == 1:
        return boxes
    for r in range(rows):
        for c in range(cols):
            x0, x1 = _span(c, cols, width, overlap)
            y0, y1 = _span(r, rows, height, overlap)
            box = Box(x0, y0, x1, y1)
            if box.x1 > box.x0 and box.y1 > box.y0 and box not in boxes:
                boxes.append(box)
    return boxes


def _span(i: int, n: int, size: int, overlap: float) -> tuple[int, int]:
    lo, hi = size * i / n, size * (i + 1) / n
    grow = (hi - lo) * overlap / 2
    return max(0, round(lo - grow)), min(size, round(hi + grow))


def tile_name(box: Box | None, width: int | None, height: int | None) -> str | None:
    """Where a tile lies, in words: "top left", "top", "centre", "bottom right"...; "full" for the whole
    image; None without a box or an image size. Read by thirds of the image, so a 2x2 or 3x3 grid names
    every tile apart (a finer grid repeats names: the box says exactly)."""
    if box is None or not width or not height:
        return None
    if box.x1 - box.x0 >= width and box.y1 - box.y0 >= height:
        return "full"
    cx, cy = (box.x0 + box.x1) / 2 / width, (box.y0 + box.y1) / 2 / height
    row = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else ""
    col = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
    return " ".join(p for p in (row, col) if p) or "centre"


def crop(image: Any, box: Box | None) -> Any:
    """The part of a PIL image inside `box`; the image itself for no box or the whole frame."""
    if box is None or (box.x0 == box.y0 == 0 and (box.x1, box.y1) == image.size):
        return image
    return image.crop((box.x0, box.y0, box.x1, box.y1))
