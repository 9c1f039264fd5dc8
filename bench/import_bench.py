"""`mllmret import` throughput: lines per second into a fresh library file (validation included).

    python bench/import_bench.py                    # 20k generated lines, 3 repeats
    python bench/import_bench.py --lines 2000 --repeats 1
    python bench/import_bench.py --source ../shared/data/vlm_captions/halc_greedy64_val2014.jsonl

The generated file mixes the shapes real files have: published captions naming an image by id and
file_name (no image files, as most imports are), `tags`/`caption` given apart, tiles with boxes, and
the full export format (path, sha256, width, height, params). Each repeat imports into a new database
file in a temporary folder (WAL, one transaction per 500 lines, as the CLI does); the best repeat is
reported. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = ("dog cat person beach park street car bicycle tree sky water boat table chair kitchen pizza "
         "train bus horse bird umbrella surfboard kite snow skis laptop phone clock bench grass field "
         "red blue green white black wooden large small young old sitting standing walking").split()


def generate(n: int, seed: int = 0) -> list[str]:
    """n JSONL lines of the four shapes, in proportion 4:2:2:2."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = rng.sample(WORDS, 12)
        caption = f"A {words[0]} and a {words[1]} near the {words[2]}, with {words[3]} {words[4]}."
        kind = i % 10
        image = i
        if kind < 4:
            rec = {"image_id": 100000 + image, "file_name": f"COCO_val2014_{image:012d}.jpg",
                   "model": rng.choice(["llava-v1.5-7b", "minigpt4"]),
                   "prompt": "Please describe this image in detail.", "text": caption * 3}
        elif kind < 6:
            rec = {"image_id": f"img-{image}", "tags": words[5:11], "caption": caption, "model": "qwen2-vl"}
        elif kind < 8:
            rec = {"image_id": f"img-{image}", "width": 640, "height": 480, "box": [0, 0, 320, 240],
                   "text": f"Tags: {', '.join(words[5:10])}\nCaption: {caption}", "model": "qwen2-vl"}
        else:
            rec = {"path": f"/photos/{image:06d}.jpg", "sha256": f"{rng.getrandbits(256):064x}",
                   "image_id": None, "width": 4032, "height": 3024, "tile": "full", "box": None,
                   "backend": "transformers", "model": "HuggingFaceTB/SmolVLM-256M-Instruct",
                   "prompt_name": "tags_caption", "prompt": "Describe the photo.",
                   "params": {"max_new_tokens": 256, "grid": "2x2"},
                   "text": f"Tags: {', '.join(words[5:10])}\nCaption: {caption}",
                   "tags": words[5:10], "caption": caption}
        out.append(json.dumps(rec) + "\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--source", type=Path, help="import this file instead of a generated one")
    args = ap.parse_args()

    from mllm_retrieval.library.jsonl import import_jsonl
    from mllm_retrieval.library.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        src = args.source or Path(tmp, "generated.jsonl")
        if args.source is None:
            src.write_text("".join(generate(args.lines)), encoding="utf-8")
        n_lines = sum(1 for _ in src.open(encoding="utf-8", errors="replace"))
        best = None
        for rep in range(args.repeats):
            with Store(Path(tmp, f"bench-{rep}.db")) as store:
                t0 = time.perf_counter()
                summary = import_jsonl(store, src, progress=False)
                seconds = time.perf_counter() - t0
            best = seconds if best is None else min(best, seconds)
        print(json.dumps({"file": str(args.source or f"generated ({args.lines} lines)"), "lines": n_lines,
                          "added": summary.added, "skipped": len(summary.skipped),
                          "best_seconds": round(best, 3), "lines_per_s": round(n_lines / best)}))


if __name__ == "__main__":
    main()
