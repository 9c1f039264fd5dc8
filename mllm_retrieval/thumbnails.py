"""Thumbnails made on demand from indexed files, cached in the data dir by content hash and size."""

from __future__ import annotations

import os
import re
import threading
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from . import config
from .errors import ImageError
from .images import to_rgb

THUMB_SIZE = 320
PREVIEW_SIZE = 2048  # for files a browser cannot show (TIFF): a large JPEG instead
BROWSER_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp",
                 "BMP": "image/bmp"}
_SHA256 = re.compile(r"[0-9a-f]{64}")


def cache_dir() -> Path:
    """Where thumbnails are kept: thumbs/ in the data dir."""
    return config.data_dir() / "thumbs"


def is_sha256(text: str | None) -> bool:
    """Whether this is a content hash as the store writes it (64 lowercase hex digits)."""
    return bool(_SHA256.fullmatch(text or ""))


def thumbnail(source: str | os.PathLike, sha256: str, size: int = THUMB_SIZE,
              cache: Path | None = None) -> Path:
    """A JPEG of `source` whose longest side is at most `size`, made once per content hash and size."""
    if not is_sha256(sha256):
        raise ImageError("no content hash for this image")
    out = (cache or cache_dir()) / sha256[:2] / f"{sha256}-{size}.jpg"
    if out.exists():
        return out
    im = _open_small(source, size)
    im.thumbnail((size, size), Image.Resampling.LANCZOS)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        im.save(tmp, "JPEG", quality=85, optimize=True)
        os.replace(tmp, out)  # atomic: a reader sees the old state or the whole file
    finally:
        tmp.unlink(missing_ok=True)
    return out


def browser_type(path: str | os.PathLike) -> str | None:
    """The Content-Type to serve a file as, or None when browsers cannot show its format."""
    try:
        with Image.open(path) as im:
            return BROWSER_TYPES.get(im.format or "")
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError):
        return None


def _open_small(path: str | os.PathLike, size: int) -> Image.Image:
    """Open for a thumbnail: JPEGs decode at a reduced scale; EXIF orientation applied; RGB."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if Image.MAX_IMAGE_PIXELS and im.width * im.height > Image.MAX_IMAGE_PIXELS:
                    raise ImageError(f"too large ({im.width}x{im.height} pixels)")
                im.draft("RGB", (size, size))
                im.load()
                return to_rgb(ImageOps.exif_transpose(im))
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, UnidentifiedImageError,
            Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"cannot read the image file ({e})") from e
