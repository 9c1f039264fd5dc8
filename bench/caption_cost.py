"""What captioning costs at a real model size, against this machine's own limits.

    python bench/caption_cost.py                          # SmolVLM-256M shape, 2 COCO photos
    python bench/caption_cost.py --shape smolvlm-2b --photos 1 --batch-sizes 4
    python bench/caption_cost.py --shape smoke --photos 1  # seconds: what CI runs

A model of the published architecture and size with random weights (bench/real_shapes.py, no download)
captions real photos with the default prompt; every answer is pinned to --tokens new tokens
(min_new_tokens = max_new_tokens), so the numbers measure cost, never quality. Printed side by side:
1. the machine: float32 matmul GFLOP/s (the compute roofline) and memory read GB/s (the bandwidth
   roofline), measured in this run;
2. one tile through the model, with the model's own image splitting on (as published) and off: image
   tokens, vision tower and prefill seconds with their GFLOP/s and fraction of the matmul roofline, decode
   tokens/s at batch 1 and its fraction of the bandwidth roofline (every weight read once per token);
3. whole photos (full image + grid tiles) through `caption_paths`, per batch size: seconds per photo,
   images/hour and peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from real_shapes import SHAPES, build_idefics3, count_params  # noqa: E402

from mllm_retrieval.capture.captioners import get_captioner  # noqa: E402
from mllm_retrieval.capture.images import open_image  # noqa: E402
from mllm_retrieval.capture.pipeline import CaptionSettings, caption_paths  # noqa: E402
from mllm_retrieval.capture.prompts import load_prompt  # noqa: E402
from mllm_retrieval.capture.tiling import grid_boxes  # noqa: E402
from mllm_retrieval.library.store import Store  # noqa: E402


def matmul_gflops(n: int = 2048, repeat: int = 6, dtype: str = "float32") -> float:
    """n x n matmul throughput in `dtype` with torch's threads: the compute roofline."""
    import torch

    a, b = torch.randn(n, n).to(getattr(torch, dtype)), torch.randn(n, n).to(getattr(torch, dtype))
    a @ b
    t = time.perf_counter()
    for _ in range(repeat):
        a @ b
    return 2 * n**3 * repeat / (time.perf_counter() - t) / 1e9


def read_gbs(mib: int = 512, repeat: int = 5) -> float:
    """Bytes per second summing a large float32 tensor: the bandwidth roofline for decode."""
    import torch

    x = torch.ones(mib * 1024 * 1024 // 4)
    x.sum()
    t = time.perf_counter()
    for _ in range(repeat):
        x.sum()
    return x.numel() * 4 * repeat / (time.perf_counter() - t) / 1e9


def _flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def _timed(fn, repeat: int = 2, warm_up: bool = True) -> float:
    """Best of `repeat` runs (after one untimed run unless warm_up is False)."""
    if warm_up:
        fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def tile_costs(captioner, image, prompt: str, tokens: int, splitting: bool, peak: float, bw: float,
               base: dict | None = None) -> dict:
    """Image tokens, vision/prefill/decode cost of one tile at batch 1.

    With `base` (the same tile without splitting), FLOPs are scaled from it by the number of sub-images
    and decode is not measured again: each extra run of a split tile costs minutes on a CPU.
    """
    import torch

    from mllm_retrieval.capture.captioners.hf import _chat_prompt

    processor, model = captioner._processor, captioner._model
    inputs = processor(images=[[image]], text=[_chat_prompt(processor, prompt)], return_tensors="pt",
                       do_image_splitting=splitting)
    n_image = int((inputs["input_ids"] == model.config.image_token_id).sum())
    sub_images = int(inputs["pixel_values"].shape[1])

    def vision():
        with torch.inference_mode():
            model.model.get_image_features(inputs["pixel_values"], inputs.get("pixel_attention_mask"))

    def prefill():
        with torch.inference_mode():
            model(**inputs, use_cache=True, logits_to_keep=1)

    def generate(n):
        with torch.inference_mode():
            model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False)

    # a split tile costs minutes per run on a CPU: timed once, the model already warm from `base`
    repeat = 1 if base else 2
    v_s, p_s = _timed(vision, repeat, not base), _timed(prefill, repeat, not base)
    if base:
        scale = sub_images / base["sub_images"]
        v_f, p_f = base["vision_flops"] * scale, base["prefill_flops"] * scale
        per_token = 1 / base["decode_tok_s"]
    else:
        v_f, p_f = _flops(vision), _flops(prefill)
        g1 = _timed(lambda: generate(1), 2, warm_up=False)
        per_token = max(_timed(lambda: generate(tokens + 1), 2, warm_up=False) - g1, 1e-9) / tokens
    # bytes a decode step must read: every text-model weight but the embedding table (one row is read),
    # plus the output layer
    text = model.model.text_model
    text_bytes = sum(
        p.numel() * p.element_size() for n, p in text.named_parameters() if "embed_tokens" not in n
    )
    text_bytes += model.lm_head.weight.numel() * model.lm_head.weight.element_size()
    return {
        "splitting": "on" if splitting else "off", "sub_images": sub_images, "image_tokens": n_image,
        "seq": int(inputs["input_ids"].shape[1]), "vision_s": v_s, "vision_flops": v_f,
        "vision_frac": v_f / v_s / 1e9 / peak, "prefill_s": p_s, "prefill_flops": p_f,
        "prefill_frac": p_f / p_s / 1e9 / peak, "decode_tok_s": 1 / per_token,
        "decode_frac": text_bytes / per_token / 1e9 / bw,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="smolvlm-256m", choices=sorted(SHAPES))
    p.add_argument("--model-dir", help="where to build/keep the model [default: a temp folder]")
    p.add_argument("--images", default=str(ROOT.parent / "shared" / "data" / "coco" / "images"))
    p.add_argument("--photos", type=int, default=2, help="photos for the end-to-end rows")
    p.add_argument("--batch-sizes", default="1,4,8,16")
    p.add_argument("--tokens", type=int, default=32, help="new tokens per answer (pinned)")
    p.add_argument("--grid", default="2x2")
    p.add_argument("--splitting", default="off", help="end-to-end rows: model splitting on/off/both")
    p.add_argument("--skip-tile", action="store_true", help="skip the per-tile breakdown")
    p.add_argument("--dtype", default="float32",
                   help="weights dtype(s), comma-separated: float32, bfloat16 (native on CPUs with "
                   "AVX512-BF16 or AMX), or auto (what `caption` picks here)")
    args = p.parse_args()

    import torch

    folder = Path(args.model_dir or tempfile.mkdtemp()) / args.shape
    build_idefics3(folder, args.shape)
    sources = sorted(Path(args.images).glob("*.jpg"))[: max(args.photos, 1)]
    if not sources:
        sys.exit(f"no .jpg images in {args.images}")
    prompt = load_prompt()
    dtypes = args.dtype.split(",")
    resolved = {d: get_captioner("transformers", model=str(folder), dtype=d).resolved_dtype() for d in dtypes}
    peaks = {d: matmul_gflops(dtype=d) for d in sorted(set(resolved.values()))}
    bw = read_gbs()
    print(f"shape={args.shape} params={count_params(folder) / 1e6:.0f}M threads={torch.get_num_threads()} "
          f"tokens/answer={args.tokens} grid={args.grid}")
    print("machine: " + ", ".join(f"{d} matmul {g:.0f} GFLOP/s" for d, g in peaks.items())
          + f", memory read {bw:.1f} GB/s")

    for dtype in [] if args.skip_tile else dtypes:
        peak = peaks[resolved[dtype]]
        captioner = get_captioner("transformers", model=str(folder), dtype=dtype)
        captioner.load()
        with open_image(sources[0]) as im:
            box = grid_boxes(im.width, im.height, args.grid)[1]
            tile = im.crop((box.x0, box.y0, box.x1, box.y1))
        print(f"\none tile ({tile.width}x{tile.height}), batch 1, {resolved[dtype]}:")
        print(f"{'splitting':>9} {'sub-imgs':>8} {'img tok':>7} {'seq':>5} {'vision s':>8} {'%peak':>6} "
              f"{'prefill s':>9} {'%peak':>6} {'decode tok/s':>12} {'%bw':>5}")
        off = tile_costs(captioner, tile, prompt.text, args.tokens, False, peak, bw)
        for r in (tile_costs(captioner, tile, prompt.text, args.tokens, True, peak, bw, base=off), off):
            print(f"{r['splitting']:>9} {r['sub_images']:>8} {r['image_tokens']:>7} {r['seq']:>5} "
                  f"{r['vision_s']:>8.2f} {100 * r['vision_frac']:>5.0f}% {r['prefill_s']:>9.2f} "
                  f"{100 * r['prefill_frac']:>5.0f}% {r['decode_tok_s']:>12.1f} "
                  f"{100 * r['decode_frac']:>4.0f}%")
        del captioner

    tmp = Path(tempfile.mkdtemp())
    for src in sources[: args.photos]:
        (tmp / src.name).symlink_to(src)
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.splitting]
    print(f"\n{args.photos} photos, full + {args.grid} tiles, through caption_paths:")
    print(f"{'dtype':>8} {'splitting':>9} {'batch':>5} {'s/photo':>8} {'images/hour':>11} "
          f"{'peak RSS MB':>11}")
    for dtype, splitting in [(d, s) for d in dtypes for s in modes]:
        captioner = get_captioner("transformers", model=str(folder), dtype=dtype,
                                  image_splitting=splitting, max_new_tokens=args.tokens,
                                  min_new_tokens=args.tokens)
        captioner.load()
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            with Store(memory=True) as store:
                t = time.perf_counter()
                s = caption_paths(store, [tmp], captioner, prompt,
                                  CaptionSettings(grid=args.grid, batch_size=bs), progress=False)
                dt = time.perf_counter() - t
            per = dt / max(s.captioned_images, 1)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"{resolved[dtype]:>8} {'on' if splitting else 'off':>9} {bs:>5} {per:>8.1f} "
                  f"{3600 / per:>11.0f} {rss:>11.0f}")


if __name__ == "__main__":
    main()
