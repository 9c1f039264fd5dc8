"""Write each captioned photo's keywords into its XMP sidecar: checked, merged, atomic, never clobbering."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..capture.formats import is_raw
from ..capture.images import Skipped, sha256_file
from ..errors import ImageError
from ..library.store import Store
from .xmp import MAX_PACKET_BYTES, Change, XmpError, keywords, merge

log = logging.getLogger(__name__)
NAMINGS = ("digikam", "lightroom")  # IMG.jpg.xmp (digiKam, darktable, exiftool) | IMG.xmp (Lightroom)


@dataclass(frozen=True)
class Written:
    """One sidecar (or, with --embed, photo) that was (or, in a dry run, would be) written or removed."""

    image: str
    target: str
    change: Change
    deleted: bool = False


@dataclass
class SidecarSummary:
    """What a `tags write` did."""

    written: list[Written] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[Skipped] = field(default_factory=list)


def sidecar_path(image: Path, naming: str = "digikam") -> Path:
    """IMG.jpg.xmp (digikam naming, also darktable's and exiftool's) or IMG.xmp (lightroom)."""
    if naming not in NAMINGS:
        raise ValueError(f"sidecar naming is one of {', '.join(NAMINGS)}, not {naming!r}")
    return image.with_name(image.name + ".xmp") if naming == "digikam" else image.with_suffix(".xmp")


def captioned_files(store: Store, paths: Iterable[str | os.PathLike] = (),
                    run_ids: list[int] | None = None) -> dict[str, tuple[int, str | None]]:
    """{file path: (image id, stored sha256)} of indexed files with captions in these runs, restricted
    to `paths` (files, or folders and everything under them) when any are given."""
    roots = [str(Path(p).absolute()) for p in paths]
    rows = store.indexed_files()
    captioned = {t.image_id for t in store.tile_texts(run_ids, {r[1] for r in rows})}
    out = {}
    for path, image_id, sha in rows:
        if image_id in captioned and (not roots or any(_under(path, r) for r in roots)):
            out[path] = (image_id, sha)
    return out


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def write_sidecars(
    store: Store, paths: Iterable[str | os.PathLike] = (), run_ids: list[int] | None = None, *,
    naming: str = "digikam", max_tags: int = 25, caption: bool = False, remove: bool = False,
    dry_run: bool = False, embed: bool = False,
) -> SidecarSummary:
    """Merge each captioned photo's keywords (and with `caption`, its full-image caption) into its
    sidecar, or with `embed` into the photo file itself; with `remove`, take ours out. A photo changed
    since captioning, a sidecar that is not XMP or is read-only, and a folder we cannot write in are
    skipped with a reason."""
    if embed:
        from .embedded import require_exiv2

        require_exiv2()  # before any work: one line naming the extra
    paths = list(paths)
    summary = SidecarSummary()
    files = captioned_files(store, paths, run_ids)
    for p in paths:
        root = str(Path(p).absolute())
        if not any(_under(f, root) for f in files):
            summary.skipped.append(Skipped(str(p), "no captioned photo here (caption it first)"))
    texts: dict[int, list] = defaultdict(list)
    for t in store.tile_texts(run_ids, {image_id for image_id, _ in files.values()}):
        texts[t.image_id].append(t)
    claimed: dict[Path, str] = {}
    copies = store.file_paths() if embed else {}
    for path, (image_id, sha) in sorted(files.items(), key=lambda item: not is_raw(item[0])):
        sidecar = sidecar_path(Path(path), naming)  # a RAW first: Lightroom's IMG.xmp is the RAW's
        if sidecar in claimed and not embed:
            reason = f"{sidecar.name} is already the sidecar of {claimed[sidecar]}"
            summary.skipped.append(Skipped(path, reason))
            continue
        claimed[sidecar] = path
        tiles = sorted(texts[image_id], key=lambda t: t.tile_key != "full")  # the full image first
        tags = keywords((t.tags for t in tiles), max_tags)
        text = next((t.caption for t in reversed(tiles) if t.tile_key == "full" and t.caption), None)
        try:
            if embed:
                others = [p for p in copies.get(image_id, []) if p != path]
                written = _embed_one(store, image_id, path, sha, others, tags, text if caption else None,
                                     remove, dry_run)
            else:
                _check_unchanged(path, sha)
                written = _write_one(path, sidecar, tags, text if caption else None, remove, dry_run)
        except ImageError as e:
            summary.skipped.append(Skipped(path, str(e)))
            continue
        except XmpError as e:
            summary.skipped.append(Skipped(path, f"{'its embedded XMP' if embed else sidecar.name}: {e}"))
            continue
        if written is None:
            summary.unchanged += 1
        else:
            summary.written.append(written)
    return summary


def _check_unchanged(path: str, sha: str | None, data: bytes | None = None) -> None:
    """ImageError unless the file's content (or `data`, read from it) is still what was captioned."""
    if data is None and not os.path.isfile(path):
        raise ImageError("no longer there (moved or deleted since captioning)")
    if sha is None or (hashlib.sha256(data).hexdigest() if data is not None else sha256_file(path)) != sha:
        raise ImageError("changed since it was captioned (sha256 differs): caption it again first")


def _write_one(image: str, sidecar: Path, tags: list[str], caption: str | None, remove: bool,
               dry_run: bool) -> Written | None:
    """Merge into one sidecar; None when its bytes would not change."""
    try:
        old = _read(sidecar)
    except OSError as e:
        raise XmpError(f"cannot read it ({e.strerror or e})") from None
    if old is None and remove:
        return None
    new, change = merge(old, tags, caption, remove=remove)
    if new == old or (new is None and old is None):
        return None
    if old is not None and not os.stat(sidecar).st_mode & stat.S_IWUSR:
        raise XmpError("read-only, left as it is")
    written = Written(image, str(sidecar), change, deleted=new is None)
    if dry_run:
        return written
    try:
        if new is None:
            os.unlink(sidecar)
        else:
            _replace(sidecar, new)
    except OSError as e:
        raise XmpError(f"cannot write in {sidecar.parent} ({e.strerror or e})") from None
    log.info("wrote %s: %s", sidecar, change.describe())
    return written


def _embed_one(store: Store, image_id: int, image: str, sha: str | None, others: list[str], tags: list[str],
               caption: str | None, remove: bool, dry_run: bool) -> Written | None:
    """Merge into the photo file itself; the library then knows its new bytes as the same image."""
    from .embedded import embed, embeddable

    embeddable(image)
    if others:
        raise ImageError(f"the same photo is also at {others[0]}: embedding in one copy would make them "
                         "differ (its sidecar is written without --embed)")
    try:
        st = os.lstat(image)
        if stat.S_ISLNK(st.st_mode) or not st.st_mode & stat.S_IWUSR:
            raise ImageError("read-only or a symbolic link: left as it is")
        with open(image, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ImageError("no longer there (moved or deleted since captioning)") from None
    except OSError as e:
        raise ImageError(f"unreadable ({e.strerror or e})") from None
    _check_unchanged(image, sha, data)  # the bytes we merge into are the bytes that were captioned
    new, change = embed(data, tags, caption, remove)
    if new is None:
        return None
    written = Written(image, image, change)
    if dry_run:
        return written
    now = os.lstat(image)
    if (now.st_size, now.st_mtime_ns, now.st_ino) != (st.st_size, st.st_mtime_ns, st.st_ino):
        raise ImageError("changed while we were writing to it: left as it is")
    try:
        _replace(Path(image), new)
    except OSError as e:
        raise ImageError(f"cannot write in {Path(image).parent} ({e.strerror or e})") from None
    st = os.stat(image)
    store.rewrote_file(image_id, image, sha256_file(image), st.st_size, st.st_mtime)
    log.info("embedded in %s: %s", image, change.describe())
    return written


def _read(sidecar: Path) -> bytes | None:
    """The sidecar's bytes, None when there is none; XmpError when it is a link or not a regular file."""
    try:
        st = os.lstat(sidecar)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise XmpError("a symbolic link: left as it is (writing would replace the link)")
    if not stat.S_ISREG(st.st_mode):
        raise XmpError("not a regular file")
    if st.st_size > MAX_PACKET_BYTES:
        raise XmpError(f"too large for an XMP sidecar ({st.st_size:,} bytes, limit {MAX_PACKET_BYTES:,})")
    with open(sidecar, "rb") as f:
        return f.read()


def _replace(target: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `target`, then rename it over `target` (atomic)."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
