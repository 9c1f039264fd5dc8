"""An int8 copy of the semantic index's rows, for a fast approximate cosine scan of large libraries.

Each row v is stored as round(v x s) in int8 with its own scale s = 127 / max|v| (so rows can be added
one chunk at a time without re-quantising the others), plus the norm of what rounding lost, r = |v - v8/s|.
A query q is quantised the same way; simsimd's int8 dot product (AVX-512 VNNI where the CPU has it) then
scores every row. By Cauchy-Schwarz an approximate score is off by at most r |q| + |v8/s| |q - q8/s_q|;
that worst case needs the rounding errors to line up with the other vector, and rounding errors are
small independent steps, so an error is nearly normal with a standard deviation 1/sqrt(dim) of that
bound. `error` is SIGMAS such deviations (with the largest r and |v8/s| of any row), capped by the worst
case: what the index re-scores exactly around every similarity that could change an answer
(semantic_index.SemanticIndex). bench/semantic_scale.py compares it with the errors measured.

numpy has no fast int8 matrix-vector product, so without simsimd there is no quantised scan: `available`
is False and the index scans float32 exactly, as it does below its size threshold.
"""

from __future__ import annotations

import functools
import mmap
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIGMAS = 8.0  # a normal tail this far out: about 1e-15 per row and query
THREADED_FROM = 256 * 1024  # rows from which simsimd scans on 2 threads (below, starting them costs more)


@functools.lru_cache(maxsize=1)
def _simsimd():
    try:
        import simsimd
    except ImportError:
        return None
    return simsimd


def available() -> bool:
    """Whether the int8 scan can run (simsimd is installed)."""
    return _simsimd() is not None


def quantise(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(int8 rows, 1/scale per row, rounding-loss norm per row) of float32 rows."""
    vectors = np.asarray(vectors, dtype=np.float32)
    peak = np.abs(vectors).max(axis=1) if vectors.size else np.zeros(len(vectors), dtype=np.float32)
    scale = np.where(peak > 0, 127.0 / np.maximum(peak, 1e-30), 1.0).astype(np.float32)
    codes = np.rint(vectors * scale[:, None]).astype(np.int8)
    inverse = (1.0 / scale).astype(np.float32)
    loss = np.linalg.norm(vectors - codes * inverse[:, None], axis=1).astype(np.float32)
    return codes, inverse, loss


class Int8Rows:
    """int8 rows with their scales, grown by `extend`; `scores` approximates rows @ query."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.codes = np.zeros((0, dim), dtype=np.int8)
        self.inverse = np.zeros(0, dtype=np.float32)
        self.loss_max = 0.0
        self.norm_max = 0.0  # largest |v8/s|: rows are unit length, this is about 1
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def extend(self, vectors: np.ndarray, chunk: int = 8192) -> None:
        """Append the quantised form of these float32 rows (`chunk` rows at a time: 12 MB stay in cache,
        2.5x faster than 100 MB chunks)."""
        need = self._n + len(vectors)
        if need > len(self.codes):
            codes = np.zeros((max(need, len(self.codes) + len(self.codes) // 4), self.dim), dtype=np.int8)
            codes[: self._n] = self.codes[: self._n]
            inverse = np.zeros(len(codes), dtype=np.float32)
            inverse[: self._n] = self.inverse[: self._n]
            self.codes, self.inverse = codes, inverse
        for at in range(0, len(vectors), chunk):
            part = vectors[at : at + chunk]
            codes, inverse, loss = quantise(part)
            rows = slice(self._n, self._n + len(part))
            self.codes[rows], self.inverse[rows] = codes, inverse
            self.loss_max = max(self.loss_max, float(loss.max(initial=0.0)))
            norms = np.linalg.norm(codes.astype(np.float32), axis=1) * inverse
            self.norm_max = max(self.norm_max, float(norms.max(initial=0.0)))
            self._n += len(part)

    def scores(self, query: np.ndarray) -> tuple[np.ndarray, float]:
        """(approximate rows @ query as float32, how far off any of them may be: see the module docstring)."""
        code, inverse, loss = quantise(np.asarray(query, dtype=np.float32).reshape(1, -1))
        dots = _simsimd().cdist(code, self.codes[: self._n], metric="dot", out_dtype="float32",
                                threads=2 if self._n >= THREADED_FROM else 1)
        sims = np.asarray(dots, dtype=np.float32).reshape(-1)
        sims *= self.inverse[: self._n]
        sims *= inverse[0]
        worst = self.loss_max * float(np.linalg.norm(query)) + self.norm_max * float(loss[0])
        error = min(worst, SIGMAS * worst / np.sqrt(self.dim))
        return sims, error * 1.001 + 1e-6  # and float32 rounding of the products themselves


def release(rows: np.ndarray) -> None:
    """Give back the pages of mapped rows (`mapped_rows`) that reading them brought into this process's
    memory; they stay in the page cache, so the next read of them is still cheap. No-op for other arrays."""
    base = rows
    while isinstance(base, np.ndarray):
        base = base.base
    base = base.obj if isinstance(base, memoryview) else base
    if isinstance(base, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        base.madvise(mmap.MADV_DONTNEED)


def mapped_rows(path: Path, n: int, dim: int, int8: Int8Rows, chunk: int = 8192) -> tuple[np.ndarray, int]:
    """The first n float32 rows of a file, mapped read-only instead of read into memory, and their CRC-32.
    The rows are quantised into `int8` on the way, `chunk` at a time, and each chunk's pages are released
    once read: only the rows re-scored later come back into memory (1M rows: 1.5 GB not held)."""
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), n * dim * 4, access=mmap.ACCESS_READ)
    if hasattr(mmap, "MADV_RANDOM"):
        mm.madvise(mmap.MADV_RANDOM)  # re-scoring reads scattered rows: no read-ahead around them
    rows = np.frombuffer(mm, dtype=np.float32, count=n * dim).reshape(n, dim)
    crc, step = 0, chunk * dim * 4  # a multiple of the page size
    for at in range(0, n, chunk):
        part = rows[at : at + chunk]
        crc = zlib.crc32(part, crc)
        int8.extend(part, chunk)
        if hasattr(mmap, "MADV_DONTNEED"):
            mm.madvise(mmap.MADV_DONTNEED, at // chunk * step, part.nbytes)
    return rows, crc


@dataclass
class Similarities:
    """One scan's similarities: `ids` (image ids allowed by the query's filters, in row order) and `sims`
    (their cosine to `query`). `error` is how far a similarity may be from the exact one (0: all are exact;
    see the module docstring); `exact` re-scores chosen images in float32 so that theirs are."""

    ids: np.ndarray
    sims: np.ndarray
    rows: np.ndarray  # each image's row of `vectors`, ascending
    vectors: np.ndarray  # the index's float32 rows
    query: np.ndarray
    error: float = 0.0

    @property
    def pair(self) -> tuple[np.ndarray, np.ndarray]:
        """(image ids, similarities), as fusion takes a ranking."""
        return self.ids, self.sims

    def exact(self, positions: np.ndarray) -> None:
        """Re-score the images at these positions of `ids` exactly (float32, as the exact scan)."""
        positions = np.unique(np.asarray(positions, dtype=np.int64))
        if self.error and len(positions):
            from ..blas import one_thread

            with one_thread():
                self.sims[positions] = self.vectors[self.rows[positions]] @ self.query
            release(self.vectors)  # each page read maps its neighbours too: 1M rows' searches filled 1.3 GB

    def exact_ids(self, image_ids: np.ndarray) -> None:
        """Re-score these image ids exactly (ids this scan does not hold are skipped)."""
        if not self.error or not len(image_ids) or not len(self.ids):
            return
        from ..fusion import positions  # a lookup table for dense ids: no sort of a million ids per call

        at = positions(self.ids, np.asarray(image_ids, dtype=np.int64))
        self.exact(at[at >= 0])

    def settle(self, top: int, min_similarity: float = -1.0) -> None:
        """Make exact every similarity that could be among the `top` best or be the lowest, and those within
        the error of `min_similarity`: the best `top` and the min-max span are then those of an exact scan."""
        if not self.error or not len(self.sims):
            return
        s, margin = self.sims, 2 * self.error
        near = s <= s.min() + margin
        if len(s) > top:
            near |= s >= np.partition(s, len(s) - top)[len(s) - top] - margin
        else:
            near[:] = True
        if min_similarity > -1.0:
            near |= np.abs(s - min_similarity) <= margin
        self.exact(np.flatnonzero(near))
