"""Search engines side by side: build time, peak RSS, add 1k, p50/p99 latency, speed vs rank-bm25.

    python bench/search_bench.py                     # 10k, 100k, 1M documents (several minutes)
    python bench/search_bench.py --sizes 2000 --queries 50      # smoke size (CI uses this)

Corpora are generated from the COCO human-caption vocabulary in ../shared/data (word frequencies
as in real captions, so word use is Zipfian) as tile-like short documents of 6-30 tokens; without
that file a synthetic Zipf vocabulary is used. Each engine and size runs in its own process so
peak RSS is its own. Targets (issue 5, 2-core machine, 1M docs): p50 <= 10 ms, p99 <= 50 ms,
build <= 60 s, add 1k <= 1 s, peak RSS <= 2 GB; >= 50x rank-bm25's query speed at 100k.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
CAPTIONS = ROOT.parent / "shared" / "data" / "coco" / "annotations" / "captions_val2017.json"
TARGETS = {"p50_ms": 10.0, "p99_ms": 50.0, "build_s": 60.0, "add1k_s": 1.0, "rss_mb": 2048.0}
REFERENCE_MAX_DOCS = 100_000  # rank-bm25 beyond this takes too long to be worth waiting for


def vocabulary() -> tuple[list[str], np.ndarray]:
    """Words and their probabilities, from real COCO captions when available."""
    from mllm_retrieval.search.text import tokenize

    if CAPTIONS.exists():
        data = json.loads(CAPTIONS.read_text())
        counts = Counter(t for a in data["annotations"] for t in tokenize(a["caption"]))
    else:
        counts = Counter({f"w{i}": 1_000_000 // (i + 1) for i in range(20_000)})
    words, freq = zip(*counts.most_common(), strict=True)
    p = np.asarray(freq, dtype=np.float64)
    return list(words), p / p.sum()


def corpus(n: int, seed: int) -> list[list[str]]:
    """n tile-like documents of 6-30 tokens drawn from the vocabulary's distribution."""
    words, p = vocabulary()
    rng = np.random.default_rng(seed)
    lengths = rng.integers(6, 31, size=n)
    ids = rng.choice(len(words), size=int(lengths.sum()), p=p)
    out, pos = [], 0
    for length in lengths.tolist():
        out.append([words[i] for i in ids[pos : pos + length]])
        pos += length
    return out


def queries(n: int, seed: int) -> list[list[str]]:
    """1-3 word queries over the 3,000 most common words (weighted by sqrt frequency)."""
    words, p = vocabulary()
    top = min(3000, len(words))
    q = np.sqrt(p[:top])
    q /= q.sum()
    rng = np.random.default_rng(seed)
    return [[words[i] for i in rng.choice(top, size=rng.integers(1, 4), replace=False, p=q)]
            for _ in range(n)]


def make_engine(name: str):
    """A product engine by name, or a candidate from candidates.py."""
    from mllm_retrieval.search.index import ENGINES, get_engine

    if name in ENGINES:
        return get_engine(name)
    import candidates

    return {"fts5": candidates.FTS5Engine, "bm25s": candidates.BM25sEngine}[name]()


def available(name: str) -> bool:
    """Whether a candidate engine's package is installed."""
    return name != "bm25s" or importlib.util.find_spec("bm25s") is not None


def worker(engine_name: str, size: int, n_queries: int) -> dict:
    """Measure one engine at one size (run in a fresh process)."""
    docs = corpus(size, seed=1)
    extra = corpus(1000, seed=2)
    qs = queries(n_queries, seed=3)
    engine = make_engine(engine_name)
    t0 = time.perf_counter()
    engine.add(docs)
    build = time.perf_counter() - t0
    latencies, tops = [], []
    for q in qs:
        t0 = time.perf_counter()
        hits = engine.search(q, 10)
        latencies.append(time.perf_counter() - t0)
        tops.append([d for d, _ in hits])
    t0 = time.perf_counter()
    engine.add(extra)
    add1k = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine.search(qs[0], 10)  # the first query after an add pays for the new statistics
    after_add = time.perf_counter() - t0
    ms = np.asarray(latencies) * 1000
    return {
        "engine": engine_name, "docs": size, "build_s": build, "add1k_s": add1k,
        "first_query_after_add_ms": after_add * 1000,
        "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "tops": tops,
    }


def run(engine: str, size: int, n_queries: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", engine, str(size), str(n_queries)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def overlap(a: list[list[int]], b: list[list[int]]) -> float:
    """Mean top-10 overlap of two engines on the same queries (queries with no hits skipped)."""
    vals = [len(set(x) & set(y)) / len(y) for x, y in zip(a, b, strict=False) if y]
    return float(np.mean(vals)) if vals else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--reference-queries", type=int, default=60, help="queries for rank-bm25 (slow)")
    p.add_argument("--candidates", default="fts5,bm25s", help="other engines to compare ('' for none)")
    p.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        engine, size, n = args.worker
        print(json.dumps(worker(engine, int(size), int(n))))
        return
    header = (f"{'docs':>9} {'engine':>10} {'build s':>8} {'add1k s':>8} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'RSS MB':>7} {'speed-up':>9} {'top10 overlap':>13}")
    print(header)
    for size in [int(s) for s in args.sizes.split(",")]:
        fast = run("sparse", size, args.queries)
        ref = run("rank-bm25", size, args.reference_queries) if size <= REFERENCE_MAX_DOCS else None
        others = [run(c, size, args.queries) for c in args.candidates.split(",") if c and available(c)]
        for r in [fast, *others] + ([ref] if ref else []):
            speed = f"{ref['p50_ms'] / r['p50_ms']:8.1f}x" if ref else f"{'n/a':>9}"
            ov = f"{overlap(r['tops'], ref['tops']):13.3f}" if ref and r is not ref else f"{'':>13}"
            print(f"{size:>9} {r['engine']:>10} {r['build_s']:8.2f} {r['add1k_s']:8.3f} {r['p50_ms']:8.2f} "
                  f"{r['p99_ms']:8.2f} {r['rss_mb']:7.0f} {speed} {ov}")
        if size >= 1_000_000:
            checks = {k: fast[k] <= v for k, v in TARGETS.items()}
            print(f"targets at {size:,} docs: " + ", ".join(
                f"{k} {fast[k]:.3g} <= {v:g}: {'met' if ok else 'NOT met'}" for (k, v), ok in
                zip(TARGETS.items(), checks.values(), strict=True)))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
