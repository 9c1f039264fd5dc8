"""Keyword index catch-up after new captions: sync (in memory) and save, per 1,000 new images.

    python bench/catchup_bench.py --images 100000 --rounds 5
    python bench/catchup_bench.py --images 300000 --db /tmp/lib300k.db   # keeps the library for a rerun

Builds (or reuses) a generated library of N images (bench/library_bench.py `fill`: full image + 4 tiles,
COCO-vocabulary captions) and its keyword index, then, round after round, captions 1,000 more images and
times the catch-up: `sync` (the change log applied in memory), `save` (what reaches the disk) and the
first search after it. "before" saves the way the index used to (the whole .npz rewritten after every
catch-up), "after" the way it does now (a small segment file; the base rewritten only when it pays).
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=5, help="1k-image catch-ups timed per way")
    p.add_argument("--db", type=Path, help="library to build once and reuse (default: a temporary one)")
    args = p.parse_args()
    db = args.db or Path(tempfile.mkdtemp()) / "library.db"
    with Store(db) as store:
        have = store.db.execute("SELECT count(*) FROM images").fetchone()[0]
        if have < args.images:
            _, t_fill = timed(lambda: fill(store, have, args.images - have, seed=1))
            print(f"filled {args.images - have:,} images in {t_fill:.0f} s", flush=True)
        index = StoreIndex(store)
        _, t_open = timed(index.sync)
        have = store.db.execute("SELECT count(*) FROM images").fetchone()[0]
        print(f"library: {have:,} images; index ready in {t_open:.1f} s", flush=True)
        rows = {}
        for how in ("before", "after"):
            times = []
            for r in range(args.rounds):
                seed = 100 + r + (0 if how == "before" else 50)
                times.append(catch_up(store, index, have, seed=seed, how=how))
                have += 1000
            rows[how] = np.asarray(times) * 1000
    print(f"\ncatch-up per 1,000 new images at ~{args.images:,} images (median of {args.rounds} rounds, ms)")
    print("| way | sync | save | sync + save | next search |")
    print("|---|---|---|---|---|")
    for how, ms in rows.items():
        sync, save, search = np.median(ms, axis=0)
        print(f"| {how} | {sync:.0f} | {save:.0f} | {sync + save:.0f} | {search:.0f} |")


if __name__ == "__main__":
    main()
