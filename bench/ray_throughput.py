"""Captioning on Ray vs the local pipeline: wall time with 1 and 2 workers, and Ray's overhead per image.

    python bench/ray_throughput.py                 # tiny random LLaVA, 24 COCO photos, full + 2x2 tiles
    python bench/ray_throughput.py --photos 48 --tokens 16

Each case captions the same photos into a fresh library. "model" cases use a tiny random LLaVA built
here (tests/tiny_models.py; answers pinned to --tokens new tokens), so the numbers are cost, never
quality. The "no model" cases use a captioner that answers at once (tests/fakes.py), so their time is
the pipeline itself: scan, plan, decode and crop, and for Ray the cluster start, actor start-up,
transfer and the driver's commits. Ray is started once per case (as `mllmret caption --ray local` does).
A Ray actor with one CPU runs torch on one thread; "local, 1 torch thread" is the same on the local path
(on a loaded 2-core machine torch's default of 2 threads can be many times slower than 1).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("PYTHONPATH", "")
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), str(ROOT), os.environ["PYTHONPATH"]])

from mllm_retrieval.capture.captioners import get_captioner, register  # noqa: E402
from mllm_retrieval.capture.distributed import caption_with_ray  # noqa: E402
from mllm_retrieval.capture.pipeline import CaptionSettings, caption_paths  # noqa: E402
from mllm_retrieval.capture.prompts import load_prompt  # noqa: E402
from mllm_retrieval.library.store import Store  # noqa: E402


def local(folder: Path, backend: str, options: dict, batch: int, threads: int | None = None) -> float:
    import torch

    default = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)  # as a Ray actor with 1 CPU (Ray sets OMP_NUM_THREADS=1)
    with Store(memory=True) as store:
        t0 = time.perf_counter()
        caption_paths(store, [folder], get_captioner(backend, **options), load_prompt(),
                      CaptionSettings(batch_size=batch), progress=False)
        seconds = time.perf_counter() - t0
    torch.set_num_threads(default)
    return seconds


def on_ray(folder: Path, backend: str, options: dict, batch: int, workers: int) -> float:
    with Store(memory=True) as store:
        t0 = time.perf_counter()
        s = caption_with_ray(store, [folder], backend, options, load_prompt(),
                             CaptionSettings(batch_size=batch), workers=workers, progress=False)
        assert not s.failed, s.failed
        return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", default=str(ROOT.parent / "shared" / "data" / "coco" / "images"))
    p.add_argument("--photos", type=int, default=24)
    p.add_argument("--tokens", type=int, default=16, help="new tokens per answer (pinned)")
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    folder = tmp / "photos"
    folder.mkdir()
    for src in sorted(Path(args.images).glob("*.jpg"))[: args.photos]:
        shutil.copy(src, folder / src.name)
    n = len(list(folder.iterdir()))
    from tiny_models import build_tiny_llava

    model = str(build_tiny_llava(tmp / "tiny-llava"))
    register("instant", "fakes:FakeCaptioner")
    tiny = {"model": model, "max_new_tokens": args.tokens, "min_new_tokens": args.tokens, "device": "cpu",
            "dtype": "float32"}
    print(f"{n} photos, full + 2x2 tiles, batch {args.batch_size}, {os.cpu_count()} CPUs\n")
    print("| captioner | executor | s | images/s |")
    print("|---|---|---|---|")
    for label, backend, options in (("no model", "instant", {}), ("tiny LLaVA", "transformers", tiny)):
        cases = [("local", lambda b=backend, o=options: local(folder, b, o, args.batch_size)),
                 ("local, 1 torch thread",
                  lambda b=backend, o=options: local(folder, b, o, args.batch_size, 1))]
        cases += [(f"ray, {w} worker{'s' * (w > 1)}",
                   lambda b=backend, o=options, w=w: on_ray(folder, b, o, args.batch_size, w))
                  for w in (1, 2)]
        for name, run in cases:
            seconds = run()
            print(f"| {label} | {name} | {seconds:.1f} | {n / seconds:.2f} |", flush=True)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
