"""What a user waits for from a cold start: `mllmret search` as a fresh process, ingest with embedding,
and the web API's first answer, on a generated library; this version beside a previous one.

    git archive main | tar -x -C /tmp/before        # the version to compare with (a source tree)
    python bench/cold_start_bench.py --images 100000 --before /tmp/before

1. Builds a SQLite library of N images (full image + 2x2 tiles, generated captions, as library_bench.py),
   its keyword index, and a complete semantic index whose image vectors are random unit vectors saved
   under the packaged model's name (an exact scan costs the same whatever the values; embedding 100k
   texts takes most of an hour on 2 cores, measured in step 2 instead).
2. Ten different 1-3 word queries, each `mllmret search` in a fresh Python process, keyword and hybrid
   mode: p50 and max of the wall time, for this checkout and for --before (same library files).
3. Ingest: `mllmret import` of --import-captions real captions (COCO human captions, LLaVA descriptions
   from ../shared/data), which now embeds them: import and embedding seconds, captions/s, and the cold
   hybrid search right after it.
4. `mllmret serve` on the library: seconds from the process start to the first hybrid answer of the API.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from library_bench import fill  # noqa: E402
from search_bench import queries  # noqa: E402

HERE = Path(__file__).resolve().parents[1]
DATA = HERE.parent / "shared" / "data"
CLI = "from mllm_retrieval.cli import app; app()"


class RandomDocuments:
    """Random unit vectors for image texts, under the packaged model's name (so the CLI reads them)."""

    name = "all-MiniLM-L6-v2"

    def __init__(self, dim: int = 384) -> None:
        self.dim, self.rng = dim, np.random.default_rng(0)

    def encode(self, texts, progress=False, query=False):
        v = self.rng.standard_normal((len(texts), self.dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def encode_query(self, text):
        return self.encode([text])[0]


def build(db: Path, n: int) -> None:
    from mllm_retrieval.library.embed import embed_library
    from mllm_retrieval.library.store import Store

    with Store(db) as store:
        t0 = time.perf_counter()
        for start in range(0, n, 10_000):
            fill(store, start, min(10_000, n - start), seed=start + 1)
        t1 = time.perf_counter()
        embed_library(store, RandomDocuments())
    print(f"library of {n:,} images: filled in {t1 - t0:.0f} s, indexed in {time.perf_counter() - t1:.0f} s",
          flush=True)


def env_for(tree: Path) -> dict[str, str]:
    """The tree's package first; bytecode cached as an installed package's is (this project's machines set
    PYTHONDONTWRITEBYTECODE, which would recompile every module on every start)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "MLLMRET_DATA_DIR": str(tree / ".bench-data")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def cold(tree: Path, db: Path, args: list[str], cpu: list[float] | None = None) -> float:
    """Wall seconds of one `mllmret ARGS --db DB` in a fresh process (output discarded); its CPU seconds
    (user + system) are appended to `cpu`: on a shared machine they move far less than wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", CLI, *args, "--db", str(db)], env=env_for(tree), check=True,
                   cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # cwd: `-c` puts it first
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu is not None:
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall


def cold_searches(trees: dict[str, Path], db: Path, n: int) -> None:
    qs = [" ".join(q) for q in queries(n, seed=11)]
    print("\n| version | mode | cold `mllmret search` wall p50 s | wall max s | CPU p50 s |")
    print("|---|---|---|---|---|")
    for label, tree in trees.items():
        cold(tree, db, ["search", "warm", "--mode", "keyword"])  # page cache, .pyc files
        for mode in ("keyword", "hybrid"):
            cpu: list[float] = []
            times = [cold(tree, db, ["search", *q.split(), "--mode", mode], cpu) for q in qs]
            print(f"| {label} | {mode} | {statistics.median(times):.2f} | {max(times):.2f} | "
                  f"{statistics.median(cpu):.2f} |", flush=True)


def real_captions(n: int) -> list[dict]:
    rows = []
    coco = DATA / "coco" / "annotations" / "captions_val2017.json"
    if coco.is_file():
        caps = json.loads(coco.read_text(encoding="utf-8"))["annotations"]
        rows += [{"image_id": f"coco-{c['id']}", "text": c["caption"]} for c in caps[: n // 2]]
    halc = DATA / "vlm_captions" / "halc_greedy64_val2014.jsonl"
    if halc.is_file():
        for i, line in enumerate(halc.open(encoding="utf-8")):
            if len(rows) >= n:
                break
            rows.append({"image_id": f"halc-{i}", "text": json.loads(line)["text"]})
    return rows


def ingest(tree: Path, n: int) -> None:
    rows = real_captions(n)
    with tempfile.TemporaryDirectory() as tmp:
        src, db = Path(tmp) / "captions.jsonl", Path(tmp) / "import.db"
        src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        t_plain = cold(tree, Path(tmp) / "plain.db", ["import", str(src), "--no-embed", "-q"])
        t_all = cold(tree, db, ["import", str(src), "-q"])
        t_search = cold(tree, db, ["search", "dog", "on", "a", "beach"])
    embed = t_all - t_plain
    print(f"\nimport of {len(rows):,} real captions (half COCO human, half LLaVA-1.5-7B): {t_plain:.1f} s "
          f"without embedding, {t_all:.1f} s with it: embedding {embed:.1f} s = {len(rows) / embed:.0f} "
          f"captions/s (model load included); first hybrid search after it: {t_search:.2f} s", flush=True)


def serve_first_answer(tree: Path, db: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CLI, "serve", "--db", str(db), "--port", str(port)],
                            env=env_for(tree), cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/api/search?q=dog+on+a+beach&mode=hybrid"
        while True:
            try:
                with urllib.request.urlopen(url, timeout=120) as r:
                    body = json.loads(r.read())
                break
            except OSError:
                if proc.poll() is not None:
                    raise SystemExit("serve exited") from None
                time.sleep(0.05)
        print(f"\n`mllmret serve`: first hybrid API answer {time.perf_counter() - t0:.2f} s after the "
              f"process started ({len(body['results'])} results, notice: {body.get('notice')})", flush=True)
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=10)
    p.add_argument("--before", type=Path, help="source tree of the version to compare with")
    p.add_argument("--import-captions", type=int, default=2000)
    p.add_argument("--db", type=Path, help="reuse (or keep) the generated library here")
    p.add_argument("--only-search", action="store_true", help="only step 2 (cold searches)")
    args = p.parse_args()
    db = args.db or Path(tempfile.mkdtemp()) / "library.db"
    if not db.exists():
        build(db, args.images)
    trees = {"this checkout": HERE, **({"before": args.before.resolve()} if args.before else {})}
    cold_searches(trees, db, args.queries)
    if not args.only_search:
        ingest(HERE, args.import_captions)
        serve_first_answer(HERE, db)


if __name__ == "__main__":
    main()
