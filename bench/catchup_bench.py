"""Keyword index catch-up after new captions: sync (in memory) and save, per 1,000 new images.

    python bench/catchup_bench.py --sizes 100000 --rounds 5
    python bench/catchup_bench.py --sizes 100000 300000 1000000 --db /tmp/lib.db   # grows one library

Builds (or reuses, or grows) a generated library of each size (bench/library_bench.py `fill`: full
image + 4 tiles, COCO-vocabulary captions) and its keyword index, then, round after round, captions
1,000 more images and times the catch-up: `sync` (the change log applied in memory), `save` (what
reaches the disk) and the first search after it. "before" saves the way the index used to (the whole
.npz rewritten after every catch-up), "after" the way it does now (a small segment file; the base is
rewritten only when segments reach a quarter of it: amortised, about "before" save / (0.25 x size/1k)).
Target (issue 16): sync + save <= 50 ms per 1k images at 1M, independent of library size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from library_bench import fill, timed  # noqa: E402

from mllm_retrieval.library.store import Store  # noqa: E402
from mllm_retrieval.search.index.store_index import StoreIndex  # noqa: E402


def catch_up(store: Store, index: StoreIndex, start: int, seed: int, how: str) -> tuple[float, float, float]:
    """Caption 1,000 more images, then (sync s, save s, first search s) with `how` = before | after."""
    fill(store, start, 1000, seed=seed)
    save = index._save
    index._save = lambda: None  # time the disk apart from the in-memory catch-up
    try:
        _, t_sync = timed(index.sync)
    finally:
        del index._save
    _, t_save = timed(getattr(index, "_write_base", save) if how == "before" else save)
    _, t_search = timed(lambda: index.search(["dog", "frisbee"], 10))
    return t_sync, t_save, t_search


def grow(store: Store, index: StoreIndex, have: int, target: int, chunk: int = 50_000) -> None:
    """Fill the library up to `target` images, the index following chunk by chunk (bounded memory)."""
    for at in range(have, target, chunk):
        fill(store, at, min(chunk, target - at), seed=1 + at)
        index.sync()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000], help="library sizes, grown in turn")
    p.add_argument("--rounds", type=int, default=5, help="1k-image catch-ups timed per way")
    p.add_argument("--db", type=Path, help="library to build once and reuse (default: a temporary one)")
    args = p.parse_args()
    db = args.db or Path(tempfile.mkdtemp()) / "library.db"
    table = []
    with Store(db) as store:
        index = StoreIndex(store)
        for size in args.sizes:
            have = store.db.execute("SELECT count(*) FROM images").fetchone()[0]
            _, t_grow = timed(lambda size=size, have=have: grow(store, index, have, size))
            have = store.db.execute("SELECT count(*) FROM images").fetchone()[0]
            print(f"library: {have:,} images (grown in {t_grow:.0f} s)", flush=True)
            for how in ("before", "after"):
                times = []
                for _ in range(args.rounds):
                    times.append(catch_up(store, index, have, seed=10_000_000 + have, how=how))
                    have += 1000
                sync, save, search = np.median(np.asarray(times) * 1000, axis=0)
                table.append(f"| {size:,} | {how} | {sync:.0f} | {save:.0f} | {sync + save:.0f} | "
                             f"{search:.0f} |")
                print(table[-1], flush=True)
    print(f"\ncatch-up per 1,000 new images (median of {args.rounds} rounds, ms)")
    print("| images | way | sync | save | sync + save | next search |")
    print("|---|---|---|---|---|---|")
    print("\n".join(table))


if __name__ == "__main__":
    main()
