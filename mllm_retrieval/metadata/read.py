"""Text a person already gave a photo, made searchable: keywords, title and description from its XMP
sidecar(s), its embedded XMP and IPTC, and EXIF (ImageDescription, Windows XP keywords/title/subject);
of a camera RAW file, its sidecars.

It is stored as a run of its own kind ("metadata"), one unit per photo (the full image): keywords as tags,
title and description as the caption, so search, `--like` and export read it like captions, and a
library can add it without re-captioning. Keywords we wrote ourselves (`tags write`) are never read back
as a person's. Nothing here decodes pixels: headers only.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, IptcImagePlugin

from ..capture.formats import is_raw, open_file
from ..capture.parsing import Parsed
from ..capture.pipeline import Summary
from ..capture.stage import Row, run_stage
from ..capture.tiling import Box
from ..errors import ImageError
from ..library.store import Store
from ..search.documents import METADATA
from .sidecars import NAMINGS, sidecar_path
from .xmp import MAX_PACKET_BYTES, XmpError, clean, our_subjects, person_text

KIND = METADATA
BACKEND = "metadata"
MODEL = "xmp+iptc+exif"
FORMAT = 1  # bump when what is read changes: it is the run's identity
EXIF_DESCRIPTION, XP_TITLE, XP_COMMENT, XP_KEYWORDS, XP_SUBJECT = 0x010E, 0x9C9B, 0x9C9C, 0x9C9E, 0x9C9F
IPTC_TITLE, IPTC_KEYWORDS, IPTC_CAPTION = (2, 5), (2, 25), (2, 120)
# What cameras write into ImageDescription by themselves: not a person's words.
CAMERA_FILLER = re.compile(r"^(\s*|[A-Z0-9 ]*(DIGITAL CAMERA|DSC|CAMERA)[A-Z0-9 ]*|default|SONY DSC)$")


@dataclass(frozen=True)
class PhotoText:
    """What a photo's metadata says about it, and where it was found."""

    keywords: tuple[str, ...] = ()
    title: str = ""
    description: str = ""
    sources: tuple[str, ...] = ()

    @property
    def caption(self) -> str:
        """Title and description as one caption (each once)."""
        parts = [p for p in dict.fromkeys((self.title, self.description)) if p]
        return ". ".join(p.rstrip(". ") for p in parts) + ("." if parts else "")

    @property
    def empty(self) -> bool:
        return not (self.keywords or self.title or self.description)


def read_photo_text(path: str | Path) -> PhotoText:
    """Everything a person wrote about the photo at `path`; ImageError when the image cannot be opened."""
    path = Path(path)
    found: list[tuple[str, list[str], str, str]] = []
    for naming in NAMINGS:
        sidecar = sidecar_path(path, naming)
        if sidecar.is_file() and sidecar.stat().st_size <= MAX_PACKET_BYTES:
            _add_xmp(found, f"sidecar {sidecar.name}", sidecar.read_bytes())
    if is_raw(path):  # a RAW file's metadata is its sidecar's (its embedded preview holds none of a person's)
        return _merged(found)
    try:
        with open_file(path) as im:
            xmp = _embedded_xmp(im)
            _add_xmp(found, "embedded XMP", xmp)
            ours = {t.casefold() for t in our_subjects(xmp)}  # what `tags write --embed` put in IPTC too
            words, title, description = _iptc(im)
            found.append(("IPTC", [w for w in words if w.casefold() not in ours], title, description))
            found.append(("EXIF", *_exif(im)))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(f"cannot read its metadata ({e})") from None
    return _merged(found)


def read_metadata(store: Store, paths: Iterable[str | os.PathLike], force: bool = False,
                  progress: bool = True) -> Summary:
    """Store what a person wrote about every photo under `paths` (a "metadata" run; photos already read are
    skipped; --force reads them again, e.g. after keywords were edited in a photo manager)."""
    def read(path: str, todo: list[tuple[int, Box]]) -> list[Row]:
        text = read_photo_text(path)
        raw = json.dumps({"keywords": text.keywords, "title": text.title, "description": text.description,
                          "sources": text.sources}, ensure_ascii=False)
        return [(tile_id, raw, Parsed(text.keywords, text.caption), None) for tile_id, _ in todo]

    def new_run():
        return store.get_or_create_run(BACKEND, MODEL, {"format": FORMAT}, kind=KIND)

    return run_stage(store, new_run, paths, read, "reading metadata", force=force, progress=progress)


def _add_xmp(found: list, where: str, data: bytes | None) -> None:
    if not data:
        return
    try:
        found.append((where, *person_text(data)))
    except XmpError:  # a damaged packet says nothing; the photo is still read
        pass


def _embedded_xmp(im: Image.Image) -> bytes | None:
    """The XMP packet inside the file (JPEG APP1, PNG iTXt, WebP chunk, TIFF tag 700), if any."""
    data = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    if data is None and hasattr(im, "tag_v2"):
        data = im.tag_v2.get(700)
    if isinstance(data, str):
        data = data.encode("utf-8")
    if isinstance(data, bytes):
        start, end = data.find(b"<x:xmpmeta"), data.rfind(b"</x:xmpmeta>")
        return data[start:end + len(b"</x:xmpmeta>")] if 0 <= start < end else data
    return None


def _iptc(im: Image.Image) -> tuple[list[str], str, str]:
    """IPTC-IIM keywords, object name (title) and caption/abstract."""
    try:
        info = IptcImagePlugin.getiptcinfo(im) or {}
    except (OSError, ValueError, SyntaxError):
        return [], "", ""

    def texts(key) -> list[str]:
        value = info.get(key)
        items = value if isinstance(value, list) else [value] if value is not None else []
        return [clean(v.decode("utf-8", "replace")) for v in items if isinstance(v, bytes)]

    return texts(IPTC_KEYWORDS), next(iter(texts(IPTC_TITLE)), ""), next(iter(texts(IPTC_CAPTION)), "")


def _exif(im: Image.Image) -> tuple[list[str], str, str]:
    """EXIF ImageDescription (not a camera's filler) and the Windows XP keywords, title and subject."""
    exif = im.getexif()

    def text(tag: int) -> str:
        value = exif.get(tag)
        if isinstance(value, (bytes, tuple, list)):  # XP tags: UTF-16LE bytes (sometimes a tuple of ints)
            raw = bytes(value)
            value = raw.decode("utf-16-le", "replace") if tag >= XP_TITLE else raw.decode("utf-8", "replace")
        return clean(str(value).replace("\x00", "")) if value is not None else ""

    description = text(EXIF_DESCRIPTION)
    if CAMERA_FILLER.match(description):
        description = ""
    keywords = [k for k in (clean(p) for p in re.split(r"[;,]", text(XP_KEYWORDS))) if k]
    return keywords, text(XP_TITLE), description or text(XP_SUBJECT) or text(XP_COMMENT)


def _merged(found: list[tuple[str, list[str], str, str]]) -> PhotoText:
    """One PhotoText: all sources' keywords (first spelling kept), the first title, distinct descriptions."""
    keywords: dict[str, str] = {}
    for _, words, _, _ in found:
        for w in words:
            keywords.setdefault(w.casefold(), w)
    title = next((t for _, _, t, _ in found if t), "")
    descriptions = list(dict.fromkeys(d for _, _, _, d in found if d and d != title))
    sources = tuple(where for where, words, t, d in found if words or t or d)
    return PhotoText(tuple(keywords.values()), title, " ".join(descriptions), sources)
