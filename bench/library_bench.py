"""`mllmret search` end to end on a generated library: what a user waits for, database included.

    python bench/library_bench.py --images 100000

Builds a SQLite library of N images (full image + 4 tiles, a generated caption each, words from
the COCO caption vocabulary), then times: the first search (index built from the database and
saved), a search after a restart (index loaded from disk), the first search after 1,000 more
images were captioned (incremental catch-up), and p50/p99 of steady searches (index lookup plus
the rows, matched words and best tile of the top 10).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from search_bench import corpus, queries  # noqa: E402

from mllm_retrieval.capture.parsing import Parsed  # noqa: E402
from mllm_retrieval.capture.tiling import grid_boxes  # noqa: E402
from mllm_retrieval.library.store import Store  # noqa: E402
from mllm_retrieval.search.searcher import Searcher  # noqa: E402


def fill(store: Store, start: int, n: int, seed: int, chunk: int = 50_000) -> None:
    """Add n images with a caption for the full image and each 2x2 tile (texts made `chunk` images at a
    time, so that a million-image library fits in memory)."""
    for at in range(0, n, chunk):
        _fill(store, start + at, min(chunk, n - at), seed + at)


def _fill(store: Store, start: int, n: int, seed: int) -> None:
    texts = corpus(n * 5, seed=seed)
    run = store.get_or_create_run("bench", "generated", {})
    boxes = grid_boxes(640, 480, "2x2")
    with store.atomic():
        for i in range(n):
            image = store.add_image(f"sha-{start + i}", f"/photos/{start + i}.jpg", 640, 480)
            tiles = store.ensure_tiles(image, boxes, 640, 480)
            store.add_captions(run.id, [
                (tid, " ".join(words), Parsed(tuple(words[:5]), " ".join(words[5:])), None)
                for (tid, _), words in zip(tiles, texts[i * 5 : i * 5 + 5], strict=True)
            ])


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=200)
    args = p.parse_args()
    db = Path(tempfile.mkdtemp()) / "library.db"
    qs = [" ".join(q) for q in queries(args.queries, seed=3)]
    with Store(db) as store:
        _, t_fill = timed(lambda: fill(store, 0, args.images, seed=1))
        print(f"library: {args.images:,} images, {args.images * 5:,} tile captions (filled in {t_fill:.1f}s)")
        _, t_first = timed(lambda: Searcher(store).search(qs[0]))
    with Store(db) as store:
        searcher = Searcher(store)
        _, t_restart = timed(lambda: searcher.search(qs[0]))
        latencies = []
        for q in qs:
            _, dt = timed(lambda q=q: searcher.search(q, 10))
            latencies.append(dt * 1000)
        fill(store, args.images, 1000, seed=2)
        _, t_after_add = timed(lambda: searcher.search(qs[0]))
    ms = np.asarray(latencies)
    print(f"first search (build from database + save): {t_first:8.2f} s")
    print(f"first search after restart (load from disk): {t_restart:7.2f} s")
    print(f"first search after 1,000 new images:       {t_after_add:8.2f} s")
    print(f"steady search, top 10: p50 {np.percentile(ms, 50):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms")


if __name__ == "__main__":
    main()
