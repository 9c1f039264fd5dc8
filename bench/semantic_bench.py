"""Semantic and hybrid search speed: embedding throughput, and query latency at 10k and 100k images.

    python bench/semantic_bench.py                      # throughput + 10k and 100k libraries
    python bench/semantic_bench.py --sizes 2000 --texts 200 --queries 20   # a quick smoke run

1. Embedding throughput of the embedder (default: the packaged all-MiniLM-L6-v2) on real text: the
   LLaVA-1.5-7B descriptions and COCO human captions in ../shared/data when present (else generated
   captions), in captions per second on this machine's CPU (or --device).
2. Query latency, end to end through `Searcher.search` (top 10 with matched words and best tile), on a
   generated SQLite library of N images (full image + 2x2 tiles, as bench/library_bench.py): the query
   is embedded by the real model, but the N image vectors are random unit vectors (exact cosine costs
   the same whatever the values, and embedding 100k texts would take most of an hour on 2 cores).
   Reported: p50/p99 of hybrid (with its default feedback, and without), semantic and keyword search,
   the query-embedding share, and the bare scan (float32 matrix-vector product, and the int8 scan large
   libraries use) at 10k/100k/1M vectors. bench/semantic_scale.py times search end to end at 1M images,
   old (exact float32) and new (int8 + exact re-scoring) side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from library_bench import fill  # noqa: E402
from search_bench import corpus, queries  # noqa: E402

from mllm_retrieval.library.store import Store  # noqa: E402
from mllm_retrieval.search.embedding import Embedder  # noqa: E402
from mllm_retrieval.search.searcher import Searcher  # noqa: E402

MODES = ("hybrid", "hybrid --no-feedback", "semantic", "keyword")
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


class RandomDocuments:
    """The real model for queries; random unit vectors for image texts (see the module docstring)."""

    def __init__(self, real: Embedder, dim: int) -> None:
        self.real, self.dim, self.name = real, dim, f"{real.name}+random-documents"
        self.rng = np.random.default_rng(0)

    def encode(self, texts, progress=False, query=False):
        if query:
            return self.real.encode(texts, query=True)
        v = self.rng.standard_normal((len(texts), self.dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def encode_query(self, text):
        return self.real.encode_query(text)


def real_texts(n: int) -> dict[str, list[str]]:
    """Up to n M-LLM descriptions and n human captions from ../shared/data, else generated captions."""
    out = {}
    halc = DATA / "vlm_captions" / "halc_greedy64_val2014.jsonl"
    if halc.is_file():
        rows = [json.loads(line) for line in halc.open(encoding="utf-8")]
        llava = [r["text"] for r in rows if r["model"] == "llava-v1.5-7b"]
        out["LLaVA-1.5-7B descriptions (~45 words)"] = llava[:n]
    coco = DATA / "coco" / "annotations" / "captions_val2017.json"
    if coco.is_file():
        caps = json.loads(coco.read_text(encoding="utf-8"))["annotations"]
        out["COCO human captions (~10 words)"] = [c["caption"] for c in caps[:n]]
    if not out:
        out["generated captions (6-30 words)"] = [" ".join(w) for w in corpus(n, seed=5)]
    return out


def throughput(embedder: Embedder, n: int) -> None:
    t0 = time.perf_counter()
    embedder.encode(["warm up"])
    print(f"model load + first call: {time.perf_counter() - t0:.1f} s ({embedder.name})")
    print("| text | captions | captions/s |\n|---|---|---|")
    for label, texts in real_texts(n).items():
        t0 = time.perf_counter()
        embedder.encode(texts)
        dt = time.perf_counter() - t0
        print(f"| {label} | {len(texts):,} | {len(texts) / dt:.0f} |")


def percentiles(ms: list[float]) -> str:
    return f"{np.percentile(ms, 50):.1f} / {np.percentile(ms, 99):.1f}"


def latency(embedder: Embedder, sizes: list[int], n_queries: int) -> None:
    qs = [" ".join(q) for q in queries(n_queries, seed=3)]
    dim = embedder.encode_query("dim").shape[0]
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "library.db") as store:
            t0 = time.perf_counter()
            fill(store, 0, size, seed=1)
            t_fill = time.perf_counter() - t0
            searcher = Searcher(store, mode="hybrid", embedder=RandomDocuments(embedder, dim))
            t0 = time.perf_counter()
            searcher.search(qs[0])  # builds both indexes (document vectors are random: no model time)
            t_build = time.perf_counter() - t0
            times: dict[str, list[float]] = {m: [] for m in (*MODES, "query embedding")}
            for q in qs:
                for mode in MODES:
                    searcher.feedback = False if mode.endswith("--no-feedback") else None
                    t0 = time.perf_counter()
                    searcher.search(q, 10, mode=mode.split()[0])
                    times[mode].append(1000 * (time.perf_counter() - t0))
                t0 = time.perf_counter()
                embedder.encode_query(q)
                times["query embedding"].append(1000 * (time.perf_counter() - t0))
        rows.append((size, t_fill, t_build, times))
    print("\n| images | library filled s | first search (index build, no model) s | hybrid p50/p99 ms "
          "| hybrid --no-feedback p50/p99 ms | semantic p50/p99 ms | keyword p50/p99 ms "
          "| query embedding p50/p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for size, t_fill, t_build, t in rows:
        cells = [percentiles(t[m]) for m in (*MODES, "query embedding")]
        print(f"| {size:,} | {t_fill:.1f} | {t_build:.1f} | " + " | ".join(cells) + " |")


def p50_ms(score, runs: int = 20) -> float:
    """Median ms of score() + its top 10, BLAS on one thread as search runs it."""
    from mllm_retrieval.search.blas import one_thread

    ms = []
    for _ in range(runs):
        t0 = time.perf_counter()
        with one_thread():
            s = score()
        np.argpartition(-s, 10)[:10]
        ms.append(1000 * (time.perf_counter() - t0))
    return float(np.percentile(ms, 50))


def scan(dim: int, sizes: list[int]) -> None:
    """The bare scan: float32 matrix-vector product (numpy) against the int8 scan of large libraries
    (quantized.Int8Rows, simsimd), each + top 10."""
    from mllm_retrieval.search.index.quantized import Int8Rows, available

    print("\n| vectors | float32 scan p50 ms | int8 scan p50 ms | float32 MB | int8 MB |")
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    q = rng.standard_normal(dim).astype(np.float32)
    for n in sizes:
        m = rng.standard_normal((n, dim), dtype=np.float32)
        int8 = Int8Rows(dim)
        int8.extend(m)
        exact = p50_ms(lambda m=m: m @ q)
        approx = f"{p50_ms(lambda int8=int8: int8.scores(q)[0]):.1f}" if available() else "-"
        mb = m.nbytes / 2**20
        print(f"| {n:,} | {exact:.1f} | {approx} | {mb:.0f} | {int8.codes.nbytes / 2**20:.0f} |")
        del m, int8


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embedder", default=None, help="model folder or id [default: packaged all-MiniLM-L6-v2]")
    p.add_argument("--device", default="cpu")
    p.add_argument("--texts", type=int, default=1000, help="captions per throughput measurement")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--scan-sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--queries", type=int, default=200)
    args = p.parse_args()
    import torch

    print(f"CPU threads: {torch.get_num_threads()}")
    embedder = Embedder(args.embedder, device=args.device)
    throughput(embedder, args.texts)
    latency(embedder, args.sizes, args.queries)
    scan(embedder.encode_query("dim").shape[0], args.scan_sizes)


if __name__ == "__main__":
    main()
