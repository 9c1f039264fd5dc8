"""Captioning throughput: images/s and tiles/s per batch size, same images, same model.

    python bench/caption_throughput.py                      # tiny random LLaVA, 12 COCO photos
    python bench/caption_throughput.py --model llava-hf/llava-1.5-7b-hf --device cuda --n 64

The reference is batch size 1 (one image per model call); batching must beat it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from mllm_retrieval.capture.captioners import get_captioner  # noqa: E402
from mllm_retrieval.capture.pipeline import CaptionSettings, caption_paths  # noqa: E402
from mllm_retrieval.capture.prompts import load_prompt  # noqa: E402
from mllm_retrieval.library.store import Store  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model folder or hub id [default: a tiny random LLaVA built here]")
    p.add_argument("--images", default=str(ROOT.parent / "shared" / "data" / "coco" / "images"))
    p.add_argument("--n", type=int, default=12, help="how many images")
    p.add_argument("--batch-sizes", default="1,4,8")
    p.add_argument("--grid", default="2x2")
    p.add_argument("--tokens", type=int, default=32, help="new tokens per answer (pinned)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp())
    model = args.model
    if model is None:
        from tiny_models import build_tiny_llava

        model = str(build_tiny_llava(tmp / "tiny"))
    folder = tmp / "images"
    folder.mkdir()
    sources = sorted(Path(args.images).glob("*.jpg"))[: args.n]
    if not sources:
        sys.exit(f"no .jpg images in {args.images}")
    for src in sources:
        (folder / src.name).symlink_to(src)

    captioner = get_captioner("transformers", model=model, device=args.device, dtype=args.dtype,
                              max_new_tokens=args.tokens, min_new_tokens=args.tokens)
    captioner.load()
    captioner.describe([__import__("PIL.Image").Image.new("RGB", (64, 64))], "warm up")
    print(f"model={model} images={len(sources)} grid={args.grid} tokens/answer={args.tokens}")
    print(f"{'batch':>5} {'seconds':>8} {'images/s':>9} {'tiles/s':>8} {'vs batch 1':>10}")
    base = None
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        with Store(memory=True) as store:
            t0 = time.perf_counter()
            s = caption_paths(store, [folder], captioner, load_prompt(),
                              CaptionSettings(grid=args.grid, batch_size=bs), progress=False)
            dt = time.perf_counter() - t0
        ips = s.captioned_images / dt
        base = base or ips
        print(f"{bs:>5} {dt:>8.2f} {ips:>9.2f} {s.captioned_tiles / dt:>8.2f} {ips / base:>9.2f}x")


if __name__ == "__main__":
    main()
