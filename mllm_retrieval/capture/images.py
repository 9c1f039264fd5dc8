"""Find image files, open them safely (EXIF, RGB, size guard) and hash their content."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError, PathNotFound
from ..hashing import file_sha256
from .formats import HEIF_SUFFIXES, PILLOW_SUFFIXES, RAW_SUFFIXES, open_file

T = TypeVar("T")
SUFFIXES = PILLOW_SUFFIXES | HEIF_SUFFIXES | RAW_SUFFIXES  # HEIF and RAW: read with their extras


@dataclass(frozen=True)
class Skipped:
    """A path that was not indexed, and why."""

    path: str
    reason: str


def walk(paths: Iterable[str | os.PathLike], skipped: list[Skipped] | None = None) -> Iterator[Path]:
    """Yield image files under each path (recursively, sorted); record what cannot be read."""
    skipped = skipped if skipped is not None else []
    for root in paths:
        root = Path(root)
        if root.is_file():
            if root.suffix.lower() in SUFFIXES:
                yield root.absolute()
            else:
                skipped.append(Skipped(str(root), "not an image file type"))
            continue
        if not root.exists():
            reason = "broken symlink" if root.is_symlink() else "no such file or folder"
            skipped.append(Skipped(str(root), reason))
            continue
        for dirpath, dirnames, filenames in os.walk(root, onerror=_onerror(skipped)):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath, name)
                if path.suffix.lower() not in SUFFIXES:
                    continue
                if not path.exists():
                    skipped.append(Skipped(str(path), "broken symlink"))
                    continue
                yield path.absolute()


def require_paths(paths: Iterable[str | os.PathLike]) -> None:
    """Raise PathNotFound for a path that does not exist (a broken symlink included), before any work."""
    for root in paths:
        root = Path(root)
        if not root.exists():
            what = "a broken symlink" if root.is_symlink() else "no such file or folder"
            raise PathNotFound(f"{str(root)!r}: {what}; check the path (nothing was captioned)")


def _onerror(skipped: list[Skipped]):
    def record(err: OSError) -> None:
        skipped.append(Skipped(str(err.filename), f"unreadable folder ({err.strerror})"))

    return record


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    try:
        return file_sha256(path)
    except OSError as e:
        raise ImageError(f"unreadable ({e.strerror or e})") from e


TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
             4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
             7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}  # EXIF orientation -> transpose


def orientation(im: Image.Image) -> int:
    """The EXIF orientation (1-8; 1 when there is none), read without decoding the pixels when the
    format allows (a PNG's eXIf chunk after its pixel data is found only once the image is loaded)."""
    if im.format == "PNG" and "exif" not in im.info:
        return 1  # PngImageFile.getexif would decode the whole image to look
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # a damaged EXIF block: no orientation
        return 1
    return value if value in TRANSPOSE else 1


def image_size(path: str | os.PathLike, max_pixels: int | None = None) -> tuple[int, int]:
    """(width, height) as `open_image` gives them (EXIF orientation applied), from the file's header:
    no pixel is decoded; ImageError when the file cannot be used."""
    return _guarded(path, max_pixels, oriented_size)


def oriented_size(im: Image.Image) -> tuple[int, int]:
    """An opened image's (width, height) once turned upright by its EXIF orientation."""
    width, height = im.size
    return (height, width) if orientation(im) in (5, 6, 7, 8) else (width, height)


def open_image(path: str | os.PathLike, max_pixels: int | None = None) -> Image.Image:
    """Open an image as 8-bit RGB in its EXIF orientation; raise ImageError when it cannot be used."""
    return _guarded(path, max_pixels, lambda im: to_rgb(ImageOps.exif_transpose(im)))


def _guarded(path: str | os.PathLike, max_pixels: int | None, use: Callable[[Image.Image], T]) -> T:
    """use(the opened image), with the size guard, and every way a file can be bad as an ImageError."""
    limit = max_pixels if max_pixels is not None else Image.MAX_IMAGE_PIXELS
    try:
        if os.path.getsize(path) == 0:
            raise ImageError("empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open_file(path) as im:
                if limit and im.width * im.height > limit:
                    raise ImageError(
                        f"too large ({im.width}x{im.height} pixels, limit {limit:,})"
                    )
                return use(im)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"too large (decompression bomb guard: {e})") from e
    except UnidentifiedImageError as e:
        raise ImageError("not a readable image (corrupt or unknown format)") from e
    except OSError as e:
        raise ImageError(f"unreadable ({e.strerror or e})") from e
    except (ValueError, SyntaxError, EOFError) as e:
        raise ImageError(f"corrupt image ({e})") from e


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode (palette, alpha, CMYK, 16-bit, float) to RGB, alpha on white."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        import numpy as np

        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(scaled.astype("uint8"), "L").convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")
