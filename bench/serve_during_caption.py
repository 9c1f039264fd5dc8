"""`serve` search latency while `caption` writes the same library, against the same server idle.

    python bench/serve_during_caption.py                       # 20k-image library, 200 photos captioned
    python bench/serve_during_caption.py --images 100000 --before

A generated library (bench/library_bench.py `fill`) is served in-process (the app of `mllmret serve`,
through the framework's test client, --clients threads searching by keyword and fetching a thumbnail's
lookup); a `mllmret caption` process (the fake captioner of the tests, --delay seconds per model call,
so the run is the pipeline's real hashing, tiling and writing) captions --photos new photos meanwhile.
Prints p50/p99 of searches idle and during the run, how many were answered from a catching-up index
(`stale`), and the target (issue 16): p99 during captioning <= 2 x idle + 50 ms. --before: every
catch-up inline on the search thread, the whole index file rewritten each time (as before issue 16).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

from library_bench import fill  # noqa: E402
from PIL import Image  # noqa: E402
from search_bench import queries  # noqa: E402

from mllm_retrieval.library.store import Store  # noqa: E402
from mllm_retrieval.search.index.store_index import StoreIndex  # noqa: E402

CAPTION = ("import sys; from mllm_retrieval.capture.captioners import register; "
           "register('fake', lambda **kw: __import__('fakes').FakeCaptioner(delay={delay}, **kw)); "
           "from mllm_retrieval.cli import app; sys.argv[0] = 'mllmret'; app()")


def searching(client, qs: list[str], stop: threading.Event, out: list[tuple[float, bool]], seed: int) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        t0 = time.perf_counter()
        r = client.get("/api/search", params={"q": rng.choice(qs), "mode": "keyword", "k": 24})
        dt = time.perf_counter() - t0
        if r.status_code != 200:
            raise SystemExit(f"search failed: {r.status_code} {r.text[:200]}")
        page = r.json()
        if page["results"]:
            client.get(f"/api/images/{page['results'][0]['image_id']}")
        out.append((dt * 1000, page["stale"]))


def measure(client, qs: list[str], clients: int, until) -> list[tuple[float, bool]]:
    out: list[tuple[float, bool]] = []
    stop = threading.Event()
    threads = [threading.Thread(target=searching, args=(client, qs, stop, out, s)) for s in range(clients)]
    for t in threads:
        t.start()
    until()
    stop.set()
    for t in threads:
        t.join()
    return out


def describe(name: str, rows: list[tuple[float, bool]]) -> tuple[float, float]:
    ms = np.asarray([m for m, _ in rows])
    p50, p99 = np.percentile(ms, 50), np.percentile(ms, 99)
    stale = sum(s for _, s in rows)
    print(f"| {name} | {len(ms)} | {p50:.0f} | {p99:.0f} | {ms.max():.0f} | {stale} |", flush=True)
    return p50, p99


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=20_000)
    p.add_argument("--photos", type=int, default=200)
    p.add_argument("--delay", type=float, default=0.02, help="seconds per model call of the fake captioner")
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--idle", type=float, default=15.0, help="seconds of searching with nothing captioned")
    p.add_argument("--before", action="store_true", help="inline catch-ups, whole file rewritten each time")
    args = p.parse_args()
    from fastapi.testclient import TestClient

    from mllm_retrieval.web import library as web_library
    from mllm_retrieval.web.app import create_app

    if args.before:
        StoreIndex._write_segment = StoreIndex._write_base
        web_library.INLINE_CATCH_UP = 1 << 60
    work = Path(tempfile.mkdtemp())
    db, photos = work / "library.db", work / "photos"
    photos.mkdir()
    rng = random.Random(0)
    for i in range(args.photos):
        Image.new("RGB", (64, 48), tuple(rng.randrange(256) for _ in range(3))).save(photos / f"{i:04}.png")
    with Store(db) as store:
        fill(store, 0, args.images, seed=1)
        StoreIndex(store).sync()
    qs = [" ".join(q) for q in queries(200, seed=3)] + ["red", "green tile", "blue"]
    print(f"{args.images:,} images served; {args.photos} photos captioned (full + 2x2, fake captioner, "
          f"{args.delay:g} s a call); {args.clients} clients; {'before' if args.before else 'after'}\n")
    print("| when | searches | p50 ms | p99 ms | max ms | stale |")
    print("|---|---|---|---|---|---|")
    with TestClient(create_app(db, mode="keyword"), base_url="http://127.0.0.1") as client:
        client.get("/api/search", params={"q": "dog", "mode": "keyword"})  # loads the index
        idle = describe("idle", measure(client, qs, args.clients, lambda: time.sleep(args.idle)))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT), *sys.path])}
        cmd = [sys.executable, "-c", CAPTION.format(delay=args.delay), "caption", str(photos), "--backend",
               "fake", "--batch-size", "4", "-q", "--no-embed", "--db", str(db)]
        proc = None

        def run_caption() -> None:
            nonlocal proc
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            print(f"(caption run: {time.perf_counter() - t0:.1f} s, exit {proc.returncode})", file=sys.stderr)

        busy = describe("during captioning", measure(client, qs, args.clients, run_caption))
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-2000:])
    target = 2 * idle[1] + 50
    print(f"\np99 during captioning {busy[1]:.0f} ms; target <= 2 x idle p99 + 50 ms = {target:.0f} ms: "
          f"{'met' if busy[1] <= target else 'NOT met'}")


if __name__ == "__main__":
    main()
