"""Server captioning wall time: requests in flight per batch (before) vs across photos (after).

    python bench/server_concurrency.py                # 17 COCO photos, full + 2x2 tiles, a local stub server
    python bench/server_concurrency.py --photos 40 --median 0.5

The stub server (tests/stub_server.py) answers every request after a latency drawn from a fixed,
seeded distribution (lognormal around --median seconds, so a few answers are several times slower),
like a model server that batches whatever it has in flight and so has no queue of its own. "before" is
the pipeline's batch path (a batch's requests go out together and the next batch waits for its slowest
answer), "after" the streaming path (capture/streaming.py).
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from stub_server import Reply, serve  # noqa: E402

from mllm_retrieval.capture.captioners.openai_compat import OpenAICaptioner  # noqa: E402
from mllm_retrieval.capture.pipeline import CaptionSettings, caption_paths  # noqa: E402
from mllm_retrieval.capture.prompts import load_prompt  # noqa: E402
from mllm_retrieval.defaults import CAPTION_BATCH  # noqa: E402
from mllm_retrieval.library.store import Store  # noqa: E402

CASES = [("default", 4, CAPTION_BATCH), ("--concurrency 16", 16, CAPTION_BATCH),
         ("--concurrency 16 --batch-size 4", 16, 4), ("--concurrency 16 --batch-size 16", 16, 16)]


class Batched:
    """The captioner without `describe_one`: the pipeline takes its batch path (the code before)."""

    def __init__(self, inner: OpenAICaptioner) -> None:
        self.inner, self.backend, self.model_id = inner, inner.backend, inner.model_id

    def params(self) -> dict:
        return self.inner.params()

    def describe(self, images, prompt):
        return self.inner.describe(images, prompt)


def latencies(n: int, median: float, seed: int = 0) -> list[float]:
    """n request latencies, lognormal around `median` (sigma 0.6: the slowest of 85 is ~4x the median)."""
    rng = random.Random(seed)
    return [median * rng.lognormvariate(0.0, 0.6) for _ in range(n)]


def run_case(photos: Path, concurrency: int, batch: int, streamed: bool, median: float) -> float:
    """Seconds to caption the folder once on a fresh library."""
    delays = iter(latencies(10_000, median))
    with serve() as server, Store(memory=True) as store:
        server.responder = lambda body: Reply(delay=next(delays))
        captioner = OpenAICaptioner(model="stub", base_url=server.base_url, concurrency=concurrency)
        t0 = time.perf_counter()
        caption_paths(store, [photos], captioner if streamed else Batched(captioner), load_prompt(),
                      CaptionSettings(batch_size=batch), progress=False)
        return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", default=str(ROOT.parent / "shared" / "data" / "coco" / "images"))
    p.add_argument("--photos", type=int, default=17)
    p.add_argument("--median", type=float, default=0.5, help="median seconds per request")
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp()) / "photos"
    folder.mkdir()
    for src in sorted(Path(args.images).glob("*.jpg"))[: args.photos]:
        shutil.copy(src, folder / src.name)
    n = len(list(folder.iterdir()))
    print(f"{n} photos, full + 2x2 tiles, median request {args.median:g}s\n")
    print("| options | before (batched) s | after (streamed) s |")
    print("|---|---|---|")
    for name, concurrency, batch in CASES:
        before = run_case(folder, concurrency, batch, False, args.median)
        after = run_case(folder, concurrency, batch, True, args.median)
        print(f"| `{name}` | {before:.1f} | {after:.1f} |", flush=True)
    shutil.rmtree(folder.parent)


if __name__ == "__main__":
    main()
