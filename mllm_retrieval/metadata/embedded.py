"""Our keywords inside the photo file (`tags write --embed`): its XMP packet merged as a sidecar is, and its
IPTC Keywords kept in step where the photo already has IPTC, through exiv2 (pyexiv2, the `xmp` extra).

exiv2 rewrites only the metadata segments: the compressed image data is copied byte for byte, so the
pixels do not change; the file's bytes (and sha256) do, which the library records (Store.rewrote_file)."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

from ..errors import ImageError, MllmretError
from .read import CAMERA_FILLER
from .xmp import Change, canonical, clean, merge, our_subjects

EMBED_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp"})
MAX_EMBED_BYTES = 1 << 30  # exiv2 reads the whole file into memory (and pyexiv2 stops at 2 GiB)
IPTC_KEYWORDS, IPTC_CAPTION, IPTC_CHARSET = ("Iptc.Application2.Keywords", "Iptc.Application2.Caption",
                                             "Iptc.Envelope.CharacterSet")
EXIF_DESCRIPTION = "Exif.Image.ImageDescription"
IPTC_UTF8 = "\x1b%G"
IPTC_KEYWORD_BYTES = 64  # the IIM limit; a longer keyword of ours goes to XMP only


def require_exiv2() -> ModuleType:
    """pyexiv2, or a one-line error naming the extra."""
    try:
        import pyexiv2
    except ImportError:
        raise MllmretError("--embed needs exiv2: pip install 'mllm-retrieval[xmp]' (or write sidecars: "
                           "leave out --embed)") from None
    pyexiv2.set_log_level(4)  # errors come back as exceptions; nothing printed
    return pyexiv2


def embeddable(path: str | os.PathLike) -> None:
    """ImageError unless we embed keywords in this kind of file."""
    suffix = Path(path).suffix.lower()
    if suffix not in EMBED_SUFFIXES:
        raise ImageError("keywords are embedded only in JPEG, PNG, TIFF and WebP files, not "
                         f"{suffix or 'this'} (its XMP sidecar is written without --embed)")


def embed(data: bytes, tags: list[str], caption: str | None, remove: bool) -> tuple[bytes | None, Change]:
    """The photo's new bytes with our keywords (and `caption` where it has no description) merged into its
    XMP, or ours taken out (`remove`); None when nothing would change. A person's keywords and
    descriptions, in XMP, IPTC or EXIF, stay."""
    pyexiv2 = require_exiv2()
    if len(data) > MAX_EMBED_BYTES:
        raise ImageError(f"too large to embed keywords in ({len(data):,} bytes, limit {MAX_EMBED_BYTES:,})")
    try:
        with pyexiv2.ImageData(data) as img:
            raw = img.read_raw_xmp()
            old = raw.encode("utf-8") if raw else None
            iptc = img.read_iptc()
            theirs = [k for k in _texts(iptc.get(IPTC_KEYWORDS))
                      if k.casefold() not in {t.casefold() for t in our_subjects(old)}]
            if _has_description(img.read_exif(), iptc):
                caption = None  # a person's description in EXIF or IPTC: ours is not added beside it
            new, change = merge(old, tags, caption, remove=remove, elsewhere=theirs)
            if new == canonical(old):
                return None, change
            img.modify_raw_xmp(new.decode("utf-8") if new else "")  # "" drops it (clear_xmp misses WebP's)
            if iptc:  # keep IPTC in step only where the photo has IPTC (new photos get XMP alone)
                _sync_iptc(img, iptc, theirs, our_subjects(new))
            out = img.get_bytes()
    except (RuntimeError, ValueError, OSError) as e:
        raise ImageError(f"exiv2 cannot write its metadata ({clean(str(e))[:200]})") from None
    return (None if out == data else out), change


def _texts(value) -> list[str]:
    items = value if isinstance(value, list) else [value] if value else []
    return [clean(str(v)) for v in items if clean(str(v))]


def _has_description(exif: dict, iptc: dict) -> bool:
    """Whether EXIF ImageDescription (not a camera's filler) or IPTC Caption-Abstract holds a description."""
    described = next(iter(_texts(exif.get(EXIF_DESCRIPTION))), "")
    return bool(described and not CAMERA_FILLER.match(described)) or bool(_texts(iptc.get(IPTC_CAPTION)))


def _sync_iptc(img, iptc: dict, theirs: list[str], ours: list[str]) -> None:
    """IPTC Keywords: a person's, then ours that fit the IIM's 64 bytes (UTF-8, declared so)."""
    folded = {t.casefold() for t in theirs}
    fits = [t for t in ours if t.casefold() not in folded and len(t.encode("utf-8")) <= IPTC_KEYWORD_BYTES]
    keywords = theirs + fits
    if keywords == _texts(iptc.get(IPTC_KEYWORDS)):
        return
    changes: dict = {IPTC_KEYWORDS: keywords or None}
    if any(not k.isascii() for k in keywords) and not iptc.get(IPTC_CHARSET):
        changes[IPTC_CHARSET] = IPTC_UTF8
    img.modify_iptc(changes)
