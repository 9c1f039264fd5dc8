"""Photographers' files beside Pillow's formats: HEIC/HEIF (the `heif` extra, pillow-heif) and camera RAW
(the `raw` extra, rawpy: the camera's embedded JPEG preview, else a demosaic). Without its extra such a
file is an ImageError that names the extra, so it is listed as skipped, never silently ignored."""

from __future__ import annotations

import importlib
import io
import os
from pathlib import Path
from types import ModuleType

from PIL import Image

from ..errors import ImageError

PILLOW_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
HEIF_SUFFIXES = frozenset({".heic", ".heif", ".hif"})
RAW_SUFFIXES = frozenset({
    ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf", ".rw2",
    ".pef", ".srw", ".rwl", ".3fr", ".iiq", ".erf", ".mrw", ".x3f", ".kdc", ".dcr",
})
PREVIEW_MIN_SIDE = 1024  # a smaller embedded preview (a thumbnail) is not enough to caption tiles: demosaic
_LIBRAW_FLIP = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}
_heif_registered = False


def is_raw(path: str | os.PathLike) -> bool:
    """Whether the file is a camera RAW file, by its name."""
    return Path(path).suffix.lower() in RAW_SUFFIXES


def open_file(path: str | os.PathLike) -> Image.Image:
    """Image.open for every format we read: HEIC/HEIF through pillow-heif, RAW through rawpy; ImageError
    naming the extra to install when its library is missing."""
    suffix = Path(path).suffix.lower()
    if suffix in HEIF_SUFFIXES:
        _register_heif()
    elif suffix in RAW_SUFFIXES:
        return open_raw(path)
    return Image.open(path)


def _extra(module: str, extra: str, what: str) -> ModuleType:
    """The optional library, or an ImageError saying which extra brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImageError(f"{what}: install the {extra} extra to read it "
                         f"(pip install 'mllm-retrieval[{extra}]')") from None


def _register_heif() -> None:
    global _heif_registered
    heif = _extra("pillow_heif", "heif", "a HEIC/HEIF photo")
    if not _heif_registered:
        heif.register_heif_opener()
        _heif_registered = True


def open_raw(path: str | os.PathLike) -> Image.Image:
    """A camera RAW file as a Pillow image: its embedded JPEG (or bitmap) preview when it is large enough,
    else the sensor data demosaiced with the camera's white balance; upright either way."""
    rawpy = _extra("rawpy", "raw", "a camera RAW file")
    try:
        with rawpy.imread(str(path)) as raw:
            preview = _preview(rawpy, raw)
            if preview is None:
                return Image.fromarray(raw.postprocess(use_camera_wb=True, output_bps=8))  # LibRaw turns it
            flip = raw.sizes.flip
    except rawpy.LibRawError as e:
        raise ImageError(f"not a readable camera RAW file ({type(e).__name__}: {e})") from None
    turn = _LIBRAW_FLIP.get(flip)
    if turn is not None and preview.getexif().get(0x0112, 1) == 1:  # a preview without its own orientation
        preview = preview.transpose(turn)
    return preview


def _preview(rawpy: ModuleType, raw) -> Image.Image | None:
    """The embedded preview, if there is one of at least PREVIEW_MIN_SIDE (or the sensor's size)."""
    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        im = Image.open(io.BytesIO(thumb.data))
    elif thumb.format == rawpy.ThumbFormat.BITMAP:
        im = Image.fromarray(thumb.data)
    else:
        return None
    need = min(PREVIEW_MIN_SIDE, max(raw.sizes.width, raw.sizes.height))
    return im if max(im.size) >= need else None
