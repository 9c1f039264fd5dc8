"""Thumbnails made on demand from indexed files, cached in the data dir by content hash and size.

Memory is bounded however many requests come at once: one build per image and size at a time, and
the decodes of all builds together hold at most DECODE_BUDGET bytes of pixels (a 64-megapixel RGB
image is 192 MB, so two such decodes run at once and the rest wait). JPEGs decode at 1/2-1/8 scale.

The cache is bounded (MLLMRET_THUMBS_MB, default 1024 MB): a thumbnail served is marked used (its mtime,
at most once an hour), and every EVICT_EVERY new thumbnails the least recently used are removed until the
cache is back under 90% of the bound. Removing one only costs its rebuild on the next request.
"""

from __future__ import annotations

import os
import re
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .. import config
from ..capture.formats import HEIF_SUFFIXES, RAW_SUFFIXES, open_file
from ..capture.images import TRANSPOSE, orientation, to_rgb
from ..errors import ImageError

THUMB_SIZE = 320
PREVIEW_SIZE = 2048  # for files a browser cannot show (TIFF): a large JPEG instead
BROWSER_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp",
                 "BMP": "image/bmp"}
_SHA256 = re.compile(r"[0-9a-f]{64}")
EVICT_EVERY = 200  # new thumbnails between two checks of the cache's size
TOUCH_AFTER = 3600  # seconds: a hit re-marks a thumbnail as used at most this often
_made = 0
_made_lock = threading.Lock()


def cache_limit() -> int:
    """The cache's bound in bytes (MLLMRET_THUMBS_MB, default 1024 MB)."""
    try:
        return max(1, int(os.environ.get("MLLMRET_THUMBS_MB", "1024"))) << 20
    except ValueError:
        return 1024 << 20


def evict(cache: Path, limit: int) -> int:
    """Remove the least recently used thumbnails until the cache holds at most 90% of `limit` bytes (when
    it holds more than `limit`); returns how many were removed."""
    files = []
    for sub in (os.scandir(cache) if cache.is_dir() else ()):
        if sub.is_dir(follow_symlinks=False):
            for f in os.scandir(sub.path):
                if f.is_file(follow_symlinks=False) and f.name.endswith(".jpg"):
                    st = f.stat(follow_symlinks=False)
                    files.append((st.st_mtime, st.st_size, f.path))
    total = sum(size for _, size, _ in files)
    if total <= limit:
        return 0
    removed = 0
    for _, size, path in sorted(files):
        if total <= limit * 0.9:
            break
        try:
            os.unlink(path)
        except OSError:
            continue
        total -= size
        removed += 1
    return removed


def cache_dir() -> Path:
    """Where thumbnails are kept: thumbs/ in the data dir."""
    return config.data_dir() / "thumbs"


def is_sha256(text: str | None) -> bool:
    """Whether this is a content hash as the store writes it (64 lowercase hex digits)."""
    return bool(_SHA256.fullmatch(text or ""))


def thumbnail(source: str | os.PathLike, sha256: str, size: int = THUMB_SIZE,
              cache: Path | None = None) -> Path:
    """A JPEG of `source` whose longest side is at most `size`, made once per content hash and size.

    One build per output at a time (a request that finds one under way waits for it, then reads the
    cached file), and every decode holds its pixels' bytes of DECODE_BUDGET (`DecodeBudget`)."""
    if not is_sha256(sha256):
        raise ImageError("no content hash for this image")
    cache = cache or cache_dir()
    out = cache / sha256[:2] / f"{sha256}-{size}.jpg"
    if _used(out):
        return out
    with _one_build(out):
        if out.exists():  # made while this request waited
            return out
        im = _open_small(source, size)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f"{out.name}.{os.getpid()}-{threading.get_ident()}.tmp")
        try:
            im.save(tmp, "JPEG", quality=85, optimize=True)
            os.replace(tmp, out)  # atomic: a reader sees the old state or the whole file
        finally:
            tmp.unlink(missing_ok=True)
    _after_new(cache)
    return out


def _used(out: Path) -> bool:
    """Whether the thumbnail exists; if so it is marked used (mtime) when last marked over an hour ago."""
    try:
        st = out.stat()
    except OSError:
        return False
    if st.st_mtime < time.time() - TOUCH_AFTER:
        with suppress(OSError):  # a read-only cache still serves
            os.utime(out)
    return True


def _after_new(cache: Path) -> None:
    """Every EVICT_EVERY new thumbnails, bring the cache back under its bound."""
    global _made
    with _made_lock:
        _made += 1
        due = _made % EVICT_EVERY == 0
    if due:
        with suppress(OSError):
            evict(cache, cache_limit())


class DecodeBudget:
    """A weighted semaphore over the bytes of decoded pixels held at once: a decode waits until its
    bytes fit in what is left of `limit`; one larger than the whole budget runs alone."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used, self.peak = limit, 0, 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        """Hold `nbytes` of the budget for the duration of the block."""
        with self._cond:
            self._cond.wait_for(lambda: self.used == 0 or self.used + nbytes <= self.limit)
            self.used += nbytes
            self.peak = max(self.peak, self.used)
        try:
            yield
        finally:
            with self._cond:
                self.used -= nbytes
                self._cond.notify_all()


DECODE_BUDGET = DecodeBudget(512 << 20)  # decoded pixels of thumbnail builds, all threads together
_builds: dict[Path, list] = {}  # output -> [lock, requests using it]
_builds_guard = threading.Lock()


@contextmanager
def _one_build(out: Path) -> Iterator[None]:
    """Hold the lock of this output file (one build per image and size at a time)."""
    with _builds_guard:
        entry = _builds.setdefault(out, [threading.Lock(), 0])
        entry[1] += 1
    try:
        with entry[0]:
            yield
    finally:
        with _builds_guard:
            entry[1] -= 1
            if not entry[1]:
                del _builds[out]


def browser_type(path: str | os.PathLike) -> str | None:
    """The Content-Type to serve a file as, or None when browsers cannot show its format (HEIC, RAW)."""
    if Path(path).suffix.lower() in HEIF_SUFFIXES | RAW_SUFFIXES:
        return None
    try:
        with Image.open(path) as im:
            return BROWSER_TYPES.get(im.format or "")
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError):
        return None


def decoded_bytes(im: Image.Image) -> int:
    """The bytes a thumbnail build of `im` (at its current, possibly draft, size) holds at its peak: the
    pixels, the copy that modes Pillow cannot resize well are converted to first, and a quarter more
    for the first reduction step."""
    per_band = 4 if im.mode in ("I", "F") else 2 if im.mode.startswith("I;16") else 1
    per_pixel = len(im.getbands()) * per_band + (4 if im.mode in _CONVERT_FIRST else 0)
    return im.width * im.height * per_pixel * 5 // 4


_CONVERT_FIRST = {"1": "L", "P": "RGBA", "PA": "RGBA", "I;16": "I", "I;16L": "I", "I;16B": "I"}


def _open_small(path: str | os.PathLike, size: int) -> Image.Image:
    """Open for a thumbnail, holding no more than one decoded copy at full size: JPEGs decode at a
    reduced scale (draft), other formats are shrunk in their own mode before any conversion; then
    EXIF orientation and RGB, on the small image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open_file(path) as im:
                if Image.MAX_IMAGE_PIXELS and im.width * im.height > Image.MAX_IMAGE_PIXELS:
                    raise ImageError(f"too large ({im.width}x{im.height} pixels)")
                im.draft("RGB", (size, size))
                with DECODE_BUDGET.hold(decoded_bytes(im)):
                    im.load()
                    turn = TRANSPOSE.get(orientation(im))
                    small = _shrink(im, size)
        if turn is not None:
            small = small.transpose(turn)
        return to_rgb(small)
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, UnidentifiedImageError,
            Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"cannot read the image file ({e})") from e


def _shrink(im: Image.Image, size: int) -> Image.Image:
    """A loaded image shrunk (in place where its mode allows) to a longest side of at most `size`."""
    if im.mode in _CONVERT_FIRST:
        im = im.convert(_CONVERT_FIRST[im.mode])
    im.thumbnail((size, size), Image.Resampling.LANCZOS)
    return im
