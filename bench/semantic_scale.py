"""Hybrid search at a million images: the exact float32 scan against the int8 scan with exact re-scoring.

    python bench/semantic_scale.py --images 1000000 --library /tmp/lib1m   # built once (~20 min here)
    python bench/semantic_scale.py --images 20000 --queries 20 --approx-from 0   # a quick smoke run
    python bench/semantic_scale.py --real 25000                              # int8 on real embeddings

1. Latency (`--images`): a generated SQLite library (as bench/semantic_bench.py: full image + 2x2 tile
   captions, random unit image vectors, queries embedded by the packaged model through numpy, no torch;
   meaning-only results cut as `mllmret search` cuts them, search.cutoff, except in semantic mode: with
   random vectors the cut would leave it nothing),
   kept in --library DIR for the next run. Each path runs in a fresh process, so that peak RSS is its own:
   "exact" forces the float32 scan at every size (what search did before), "int8" is the default
   (semantic_index.APPROX_FROM). Reported: p50/p99 of hybrid with feedback (the default), hybrid
   --no-feedback, semantic and keyword search, the first search (indexes loaded, int8 rows made), peak
   RSS, the load average around the run, and how many of each query's top 10 the two paths share.
2. Real embeddings (`--real N`): N COCO captions (../shared/data) embedded by the real model, the int8
   scan forced on (APPROX_FROM=0); recall of the exact top 10 by the bare int8 scan and by search
   (semantic and hybrid), over held-out captions as queries.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from library_bench import fill  # noqa: E402
from search_bench import queries  # noqa: E402
from semantic_bench import DATA, RandomDocuments  # noqa: E402

from mllm_retrieval.library.store import Store  # noqa: E402
from mllm_retrieval.search.cutoff import MIN_RELATIVE, MIN_SIMILARITY  # noqa: E402
from mllm_retrieval.search.embedding import Embedder  # noqa: E402
from mllm_retrieval.search.index import semantic_index  # noqa: E402
from mllm_retrieval.search.searcher import Searcher  # noqa: E402

MODES = ("hybrid", "hybrid --no-feedback", "semantic", "keyword")
PATHS = ("exact", "int8")


def searcher(store: Store) -> Searcher:
    """Hybrid search over random document vectors, queries by the packaged model, meaning-only results cut
    as `mllmret search` cuts them."""
    return Searcher(store, mode="hybrid", embedder=RandomDocuments(Embedder(), 384),
                    min_similarity=MIN_SIMILARITY, min_relative=MIN_RELATIVE)


def build(db: Path, images: int, step: int = 100_000) -> None:
    """The library, its keyword index and its semantic index, unless db.built says they are there. It grows
    `step` images at a time, both indexes following each step, never rebuilt from all text (a keyword
    index rebuild at 650k images passed 7.8 GB, a first build of 1M at once 12 GB); killed, it goes on."""
    from mllm_retrieval.search.index import store_index

    done = db.with_name(db.name + ".built")
    if done.exists():
        return
    store_index.REBUILD_FRACTION = semantic_index.REBUILD_FRACTION = 1.0
    db.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with Store(db) as store:
        s = searcher(store)
        s.search("dog")  # the indexes catch up with a killed build's last step
        have = store.db.execute("SELECT count(*) FROM images").fetchone()[0]
        for at in range(have, images, step):
            fill(store, at, min(step, images - at), seed=1 + at)
            s.search("dog")
            print(f"  {min(at + step, images):,} images, {time.perf_counter() - t0:.0f} s, "
                  f"peak RSS {rss_mb()[1]:.0f} MB", flush=True)
        s.search("dog")
    done.touch()
    print(f"built {images:,} images in {time.perf_counter() - t0:.0f} s", flush=True)


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set of this process in MB (VmHWM: ru_maxrss would count the parent's)."""
    with open("/proc/self/status") as f:
        kb = {line.split(":")[0]: int(line.split()[1]) for line in f if line.startswith(("VmRSS", "VmHWM"))}
    return kb["VmRSS"] / 1024, kb["VmHWM"] / 1024


def child(db: Path, path: str, n_queries: int, approx_from: int | None) -> None:
    """One path's timings as a JSON line (run in its own process)."""
    if approx_from is not None:
        semantic_index.APPROX_FROM = approx_from
    if path == "exact":
        semantic_index.APPROX_FROM = 1 << 62
    qs = [" ".join(q) for q in queries(n_queries, seed=3)]
    load = [os.getloadavg()[0]]
    with Store(db) as store:
        s = searcher(store)
        t0 = time.perf_counter()
        s.search(qs[0])
        first = time.perf_counter() - t0
        times: dict[str, list[float]] = {m: [] for m in MODES}
        tops: dict[str, list[list[int]]] = {m: [] for m in MODES}
        for q in qs:
            for mode in MODES:
                s.feedback = False if mode.endswith("--no-feedback") else None
                cut = mode != "semantic"  # random vectors: the cut would leave semantic search nothing
                s.min_similarity, s.min_relative = (MIN_SIMILARITY, MIN_RELATIVE) if cut else (None, None)
                t0 = time.perf_counter()
                found = s.search(q, 10, mode=mode.split()[0])
                times[mode].append(1000 * (time.perf_counter() - t0))
                tops[mode].append([r.image_id for r in found])
        load.append(os.getloadavg()[0])
        now, peak = rss_mb()
    print(json.dumps({"path": path, "first_s": first, "times": times, "tops": tops, "rss": now, "peak": peak,
                      "load": load}))


def latency(db: Path, n_queries: int, approx_from: int | None) -> None:
    runs = {}
    for path in PATHS:
        more = [] if approx_from is None else ["--approx-from", str(approx_from)]
        out = subprocess.run([sys.executable, __file__, "--child", path, "--db", str(db),
                              "--queries", str(n_queries), *more], capture_output=True, text=True, check=True)
        runs[path] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\n{db}: {n_queries} queries, top 10, ms")
    print("| path | hybrid p50 / p99 | hybrid --no-feedback p50 / p99 | semantic p50 / p99 "
          "| keyword p50 / p99 | first search s | RSS after MB | peak RSS MB | load 1 min (start-end) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for path, r in runs.items():
        cells = [f"{np.percentile(r['times'][m], 50):.1f} / {np.percentile(r['times'][m], 99):.1f}"
                 for m in MODES]
        print(f"| {path} | " + " | ".join(cells) + f" | {r['first_s']:.1f} | {r['rss']:.0f} "
              f"| {r['peak']:.0f} | {r['load'][0]:.1f}-{r['load'][1]:.1f} |")
    for m in MODES:
        pairs = list(zip(runs["exact"]["tops"][m], runs["int8"]["tops"][m], strict=True))
        shared = [len(set(a) & set(b)) / max(len(a), 1) for a, b in pairs]
        same = np.mean([a == b for a, b in pairs])
        print(f"{m}: top-10 overlap int8 vs exact {np.mean(shared):.4f}, same order {same:.3f}")


def real(n: int, n_queries: int) -> None:
    """Recall of the exact top 10 on real caption embeddings, int8 forced (see the module docstring)."""
    from mllm_retrieval.capture.parsing import Parsed
    from mllm_retrieval.search.index.quantized import Int8Rows

    caps = json.loads((DATA / "coco" / "annotations" / "captions_val2017.json").read_text())["annotations"]
    texts, held_out = [c["caption"] for c in caps[:n]], [c["caption"] for c in caps[n : n + n_queries]]
    embedder = Embedder()
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "library.db") as store:
        run = store.get_or_create_run("bench", "coco", {})
        with store.atomic():
            for i, text in enumerate(texts):
                image = store.add_image(f"sha-{i}", f"/photos/{i}.jpg", 640, 480)
                ((tile, _),) = store.ensure_tiles(image, [None], 640, 480)
                store.add_captions(run.id, [(tile, text, Parsed((), text), None)])
        t0 = time.perf_counter()
        exact = Searcher(store, mode="hybrid", embedder=embedder)
        exact.semantic.sync()
        print(f"\nreal embeddings: {n:,} COCO captions embedded in {time.perf_counter() - t0:.0f} s")
        vectors = exact.semantic.vectors
        int8 = Int8Rows(vectors.shape[1])
        int8.extend(vectors)
        want = {m: [[r.image_id for r in exact.search(q, 10, mode=m)] for q in held_out]
                for m in ("semantic", "hybrid")}
        qvecs = embedder.encode(held_out, query=True)
        bare, errors = [], []
        for qv in qvecs:
            approx, error = int8.scores(qv)
            exact_s = vectors @ qv
            bare.append(len(set(np.argsort(-approx)[:10]) & set(np.argsort(-exact_s)[:10])) / 10)
            errors.append((np.abs(approx - exact_s).max(), error))
        semantic_index.APPROX_FROM = 0
        forced = Searcher(store, mode="hybrid", embedder=embedder)
        worst, bound = max(e for e, _ in errors), max(b for _, b in errors)
        print(f"int8 error: max observed {worst:.4f}, bound {bound:.4f}")
        print(f"bare int8 scan, recall of the exact top 10: {np.mean(bare):.4f}")
        for m, tops in want.items():
            got = [[r.image_id for r in forced.search(q, 10, mode=m)] for q in held_out]
            recall = np.mean([len(set(a) & set(b)) / max(len(a), 1) for a, b in zip(tops, got, strict=True)])
            same = np.mean([a == b for a, b in zip(tops, got, strict=True)])
            print(f"search --mode {m} (int8 + exact re-scoring): recall of the exact top 10 {recall:.4f}, "
                  f"same order {same:.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=1_000_000)
    p.add_argument("--library", type=Path, default=None, help="folder that keeps the library between runs")
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--real", type=int, default=0, help="COCO captions for the real-embedding check (0: skip)")
    p.add_argument("--approx-from", type=int, default=None,
                   help="int8 above this many images [default: semantic_index.APPROX_FROM]")
    p.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    p.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.db, args.child, args.queries, args.approx_from)
    if args.real:
        return real(args.real, args.queries)
    folder = args.library or Path(tempfile.mkdtemp())
    db = folder / "library.db"  # one size per folder
    build(db, args.images)
    latency(db, args.queries, args.approx_from)


if __name__ == "__main__":
    main()
