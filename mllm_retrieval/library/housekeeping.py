"""Housekeeping: the change log compacted, derived files nobody can use removed.

The change log (`text_changes`) gets a row for every caption written or image status changed, so
re-captioning a library again and again grows it without bound. Indexes only need the rows past their
own watermark: once the log holds more than RATIO x the stored captions, the oldest rows are deleted,
keeping the last KEEP_FRACTION x captions (at least KEEP_MIN); the highest deleted sequence is recorded as
the floor, and an index older than the floor is rebuilt (keyword) or re-checked text by text, keeping
every vector whose text did not change (semantic).
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .identity import FOREIGN, derived_path, library_id
from .store import Store

log = logging.getLogger(__name__)

RATIO = 4  # compact once the log holds more rows than this many times the captions
KEEP_FRACTION = 1.0  # rows kept: this many times the captions (recent history, so lagging indexes catch up)
KEEP_MIN = 1024
ORPHAN_LOCK = "the lock of an index file that no longer exists"
TMP_AGE = 600  # seconds: a temporary file older than this is a killed save's leftover
_DERIVED = re.compile(r"\.(?:index|semantic)-[0-9a-f]{12}(?:\.\d+\.f32|\.seg\d+\.npz|\.npz|\.npz\.lock)")
_SEGMENT = re.compile(r"\.index-[0-9a-f]{12}\.seg\d+\.npz$")
_TMP = re.compile(r"\.(?:index|semantic)-[0-9a-f]{12}\..*\.tmp(?:\.npz)?")


def change_log_rows(store: Store) -> int:
    """Rows in the change log."""
    return store.db.execute("SELECT count(*) FROM text_changes").fetchone()[0]


def compact_change_log(store: Store, force: bool = False) -> int:
    """Delete the oldest change-log rows when the log is over RATIO x captions (or always, with force);
    returns the rows deleted."""
    captions = store.db.execute("SELECT count(*) FROM captions").fetchone()[0]
    rows = change_log_rows(store)
    keep = max(int(KEEP_FRACTION * captions), KEEP_MIN)
    if rows <= keep or (not force and rows <= RATIO * max(captions, KEEP_MIN)):
        return 0
    upto = store.db.execute("SELECT seq FROM text_changes ORDER BY seq DESC LIMIT 1 OFFSET ?",
                            [keep]).fetchone()[0]
    deleted = store.compact_changes(upto)
    log.info("compacted the change log: %d rows deleted, %d kept", deleted, rows - deleted)
    return deleted


@dataclass
class DerivedFile:
    """One file beside (or cached for) the database that an index wrote, and whether it can be used."""

    path: Path
    problem: str | None = None  # None: usable; else why it is not


@dataclass
class DerivedReport:
    """The derived files of a library: usable ones, and the rest with the reason."""

    files: list[DerivedFile] = field(default_factory=list)

    @property
    def unusable(self) -> list[DerivedFile]:
        """Files that no index will ever load (removable)."""
        return [f for f in self.files if f.problem is not None]


def survey_derived(store: Store) -> DerivedReport:
    """Every derived file of this library, each checked: leftovers of killed saves, unreadable files, files of
    another library, another format or runs that no longer exist are unusable."""
    from ..search.index import semantic_index, store_index

    report = DerivedReport()
    probe = derived_path(store, f"{store.path.name}.index-000000000000.npz")
    folders = {probe.parent, store.path.parent}
    runs = {r[0] for r in store.db.execute("SELECT id FROM runs")}
    for folder in folders:
        for path in sorted(folder.glob(f"{store.path.name}.*")):
            rest = path.name[len(store.path.name):]
            if _TMP.fullmatch(rest):  # a save in progress elsewhere is a few seconds old at most
                try:
                    age = time.time() - path.stat().st_mtime
                except FileNotFoundError:  # that save has just finished (renamed its file) meanwhile
                    continue
                if age > TMP_AGE:
                    report.files.append(DerivedFile(path, "left by a save that did not finish"))
            elif _DERIVED.fullmatch(rest):
                report.files.append(DerivedFile(path, _check(store, path, runs, store_index.FORMAT,
                                                              semantic_index.FORMAT)))
    return report


def _check(store: Store, path: Path, runs: set[int], keyword_format: int,
           semantic_format: int) -> str | None:
    """Why a derived file is unusable, or None."""
    if path.suffix == ".lock":  # lock files live as long as their index file
        return None if path.with_suffix("").exists() else ORPHAN_LOCK
    if path.suffix == ".f32":
        sidecar = path.with_name(path.name.rsplit(".", 2)[0] + ".npz")
        if not sidecar.exists():  # a first save writes the rows, then the index file
            return "rows without their index file" if time.time() - path.stat().st_mtime > TMP_AGE else None
        try:
            with np.load(sidecar) as data:
                gen = int(data["meta"][3])
        except Exception:
            return "rows of an unreadable index file"
        file_gen = int(path.name.rsplit(".", 2)[1])
        return "rows of an older generation" if file_gen < gen else None  # newer: a save going on
    if _SEGMENT.search(path.name):
        return _check_segment(store, path, runs, keyword_format)
    try:
        with np.load(path) as data:
            if ".index-" in path.name:
                fmt, lib = int(data["x_format"][0]), data["x_library"].tobytes().decode()
                file_runs = data["x_runs"].tolist() if "x_runs" in data.files else []
                fmt_ok = fmt == keyword_format
            else:
                fmt, lib = int(data["meta"][0]), data["library"].tobytes().decode()
                file_runs = data["runs"].tolist() if "runs" in data.files else []
                fmt_ok = fmt == semantic_format
                embedder = data["embedder"].tobytes().decode()
                if Path(embedder).is_absolute() and not Path(embedder).exists():
                    return "made with an embedder folder that no longer exists"
    except Exception:
        return "unreadable, or written by an older version"
    if not fmt_ok:
        return "written in an older format"
    if lib != library_id(store):
        return FOREIGN
    if any(r not in runs for r in file_runs):
        return "made for runs that no longer exist"
    return None


def _check_segment(store: Store, path: Path, runs: set[int], keyword_format: int) -> str | None:
    """Why a keyword index segment is unusable, or None."""
    from ..search.index.store_index import chained_segments

    try:
        with np.load(path) as data:
            fmt, lib = int(data["format"][0]), data["library"].tobytes().decode()
            file_runs = data["runs"].tolist()
    except Exception:
        return "unreadable, or written by an older version"
    if fmt != keyword_format:
        return "written in an older format"
    if lib != library_id(store):
        return FOREIGN
    if any(r not in runs for r in file_runs):
        return "made for runs that no longer exist"
    base = path.with_name(path.name.rsplit(".", 2)[0] + ".npz")
    return None if path in chained_segments(base) else "a segment that does not continue its index file"


def remove_unusable(report: DerivedReport) -> list[Path]:
    """Delete the unusable derived files, and the locks of index files deleted; returns what was deleted."""
    gone = []
    for f in report.unusable:
        if f.problem == ORPHAN_LOCK:
            continue
        try:
            f.path.unlink()
            gone.append(f.path)
        except FileNotFoundError:
            continue
        except OSError as e:
            log.warning("could not remove %s: %s", f.path, e.strerror or e)
    locks = {f.path for f in report.unusable if f.problem == ORPHAN_LOCK}
    locks |= {p.with_name(f"{p.name}.lock") for p in gone if p.suffix == ".npz"}
    return gone + [p for p in sorted(locks) if _remove_idle_lock(p)]


def _remove_idle_lock(path: Path) -> bool:
    """Delete a lock file whose index file is gone, unless a process holds it (it may be saving anew)."""
    try:
        import fcntl
    except ImportError:
        return False
    try:
        fd = os.open(path, os.O_RDWR)  # never creates it
    except FileNotFoundError:
        return False
    except OSError as e:
        log.warning("could not remove %s: %s", path, e.strerror or e)
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if path.with_suffix("").exists():
            return False
        path.unlink()
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
