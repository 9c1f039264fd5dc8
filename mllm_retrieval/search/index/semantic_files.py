"""A semantic index's files: `<db>.semantic-<key>.<gen>.f32` holds the rows (raw float32, appended as images
are embedded) and `<db>.semantic-<key>.npz` the image ids, text hashes, live flags, watermark and how many
rows of which .f32 generation are valid; the sidecar is written atomically after the rows, so a crash loses
at most unrecorded rows. A damaged, truncated, stale or foreign file is never trusted (library/identity.py).
"""

from __future__ import annotations

import hashlib
import logging
import os
import zlib
from pathlib import Path

import numpy as np

from ...library.identity import FOREIGN, Stamp, derived_path, file_stamp, locked, stamp, write_atomic
from ..documents import DOCUMENT_VERSION
from . import quantized

log = logging.getLogger(__name__)

FORMAT = 2  # 2: the library's identity, a change-log fingerprint and a CRC of the rows (library/identity.py)


class SemanticFiles:
    """Saving and loading `SemanticIndex` rows (a mix-in: the index's own state, read and written here)."""

    def _path(self) -> Path | None:
        if self.store.path is None:
            return None
        runs = "all" if self.run_ids is None else ",".join(map(str, self.run_ids))
        ident = f"{FORMAT}:{DOCUMENT_VERSION}:{runs}:{self.embedder.name}"
        key = hashlib.sha256(ident.encode()).hexdigest()[:12]
        return derived_path(self.store, f"{self.store.path.name}.semantic-{key}.npz")

    def _vec_path(self, gen: int) -> Path:
        return self.path.with_name(f"{self.path.stem}.{gen}.f32")

    def _save(self) -> None:
        if self.path is None or self.n == 0 and not self.complete:
            return
        self._compact_if_due()
        try:
            with locked(self.path):
                if file_stamp(self.path) != self._stamp:  # another process wrote since: a generation of ours
                    self._gen, self._saved_rows = max(self._gen, _disk_gen(self.path)) + 1, 0
                vec_path = self._vec_path(self._gen)
                if self._saved_rows == 0 or not vec_path.exists():
                    write_atomic(vec_path, self.vectors.tofile)
                    self._crc = zlib.crc32(self.vectors)
                elif self.n > self._saved_rows:
                    new_rows = self.vectors[self._saved_rows :]
                    with vec_path.open("r+b") as f:
                        f.truncate(self._saved_rows * self.dim * 4)  # drop rows a crash left unrecorded
                        f.seek(0, os.SEEK_END)
                        f.write(new_rows.tobytes())
                        os.fsync(f.fileno())  # the rows are on disk before the sidecar counts them
                    self._crc = zlib.crc32(np.ascontiguousarray(new_rows), self._crc)
                meta = np.asarray([FORMAT, self.watermark, int(self.complete), self._gen, self.n, self.dim])
                name = np.frombuffer(self.embedder.name.encode(), dtype=np.uint8)
                made = stamp(self.store, self.watermark)
                arrays = {"image_of": self.image_of, "hashes": self.hashes, "alive": self.alive, "meta": meta,
                          "embedder": name, "library": np.frombuffer(made.library.encode(), dtype=np.uint8),
                          "check": np.asarray([made.tail, self._crc], dtype=np.int64),
                          "runs": np.asarray(self.run_ids or [], dtype=np.int64)}  # none: all runs
                write_atomic(self.path, lambda tmp: np.savez(tmp, **arrays), suffix=".tmp.npz")
                self._saved_rows, self._stamp = self.n, file_stamp(self.path)
                for old in self.path.parent.glob(f"{self.path.stem}.*.f32"):
                    if old != vec_path:
                        old.unlink(missing_ok=True)
        except OSError as e:  # a read-only folder only costs re-embedding next time
            log.warning("could not save the semantic index to %s: %s", self.path, e)

    def _load(self, head: int) -> bool:
        if self.path is None or not self.path.exists():
            return False
        try:
            with locked(self.path):
                seen = file_stamp(self.path)
                with np.load(self.path) as data:
                    fmt, watermark, complete, gen, n, dim = (int(v) for v in data["meta"])
                    name = data["embedder"].tobytes().decode()
                    image_of, hashes, alive = data["image_of"], data["hashes"], data["alive"].copy()
                    tail, crc = (int(v) for v in data["check"])
                    made = Stamp(data["library"].tobytes().decode(), watermark, tail)
                vec_path = self._vec_path(gen)
                if fmt != FORMAT or name != self.embedder.name or len(image_of) != n:
                    raise ValueError("written for another format or embedder")
                why = made.mismatch(self.store, head)
                if why == FOREIGN:
                    raise ValueError(why)
                if vec_path.stat().st_size < n * dim * 4:
                    raise ValueError(f"{vec_path.name} is shorter than recorded")
                int8 = self._int8_for(int(alive.sum()), dim)  # as the scan decides: by live images
                if int8 is not None:  # scanned in int8: the float32 rows stay on disk, mapped for re-scoring
                    vectors, got = quantized.mapped_rows(vec_path, n, dim, int8)
                else:
                    vectors = np.fromfile(vec_path, dtype=np.float32, count=n * dim).reshape(n, dim)
                    got = zlib.crc32(vectors)
                if got & 0xFFFFFFFF != crc & 0xFFFFFFFF:
                    raise ValueError(f"{vec_path.name} does not match its checksum")
        except Exception as e:  # a damaged, truncated, stale or foreign file is rebuilt, never trusted
            log.warning("re-embedding: the semantic index %s is unusable (%s)", self.path.name, e)
            return False
        if why is not None:  # another state of this library: every row is checked against the text now,
            log.info("checking every image text: the semantic index %s was %s", self.path.name, why)
            complete = False  # and rows whose text is unchanged are kept (rows are keyed by text hash)
        self._buf, self.n, self.dim, self._int8 = vectors, n, dim, int8  # new rows: _put copies to memory
        self.image_of, self.hashes, self.alive = image_of, hashes, alive
        self.row_of = {int(i): r for r, i in enumerate(image_of.tolist()) if alive[r]}
        self._dead = {i: r for r, i in enumerate(image_of.tolist()) if not alive[r] and i not in self.row_of}
        self.watermark, self.complete = watermark, bool(complete)
        self._gen, self._saved_rows, self._crc, self._stamp = gen, n, crc & 0xFFFFFFFF, seen
        return True


def _disk_gen(path: Path) -> int:
    try:
        with np.load(path) as data:
            return int(data["meta"][3])
    except Exception:
        return 0



