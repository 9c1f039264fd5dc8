"""Peak memory of `mllmret serve` while huge images are requested at once (issue 20's target: <= 1.5 GB).

    python bench/thumbnail_memory.py                       # 8 images of 64 MP, each asked 3x at once
    python bench/thumbnail_memory.py --megapixels 16 --copies 2 --route file

Eight 8000x8000 images (PNG RGB, PNG RGBA, PNG palette, two TIFFs, a 16-bit grayscale PNG and two JPEGs:
the formats that cannot be decoded at reduced size, and JPEG that can) are written to a temporary
folder and imported as a library; `mllmret serve --mode keyword` runs in its own process, every image
is requested `--copies` times at the same moment (thumbnail, or `--route file`: the file itself, which
for TIFF is a 2048-pixel JPEG preview), and the server's peak resident memory (VmHWM) is read from
/proc when they have all answered. Linux only. Generating the images takes a minute or two.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KINDS = ("png-rgb", "png-rgba", "png-p", "tiff-rgb", "tiff-lzw", "png-i16", "jpeg", "jpeg-progressive")


def make_image(kind: str, side: int, path: Path) -> Path:
    """One side x side image of this kind (a gradient with some texture, so nothing is trivially small)."""
    from PIL import Image, ImageDraw

    base = Image.linear_gradient("L").resize((side, side))
    draw = ImageDraw.Draw(base)
    for i in range(0, side, max(side // 40, 1)):
        draw.line([(i, 0), (side - i, side)], fill=(i * 7) % 256, width=3)
    if kind == "png-i16":
        im = base.convert("I").point(lambda v: v * 200).convert("I;16")
        out = path.with_suffix(".png")
        im.save(out, compress_level=1)
        return out
    rgb = Image.merge("RGB", (base, base.transpose(Image.Transpose.ROTATE_90),
                              base.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    del base
    if kind == "png-rgb":
        out = path.with_suffix(".png")
        rgb.save(out, compress_level=1)
    elif kind == "png-rgba":
        out = path.with_suffix(".png")
        rgb.putalpha(200)
        rgb.save(out, compress_level=1)
    elif kind == "png-p":
        out = path.with_suffix(".png")
        rgb.quantize(64).save(out, compress_level=1)
    elif kind == "tiff-rgb":
        out = path.with_suffix(".tif")
        rgb.save(out)
    elif kind == "tiff-lzw":
        out = path.with_suffix(".tif")
        rgb.save(out, compression="tiff_lzw")
    elif kind == "jpeg":
        out = path.with_suffix(".jpg")
        rgb.save(out, quality=90)
    else:
        out = path.with_suffix(".jpg")
        rgb.save(out, quality=90, progressive=True)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int, field: str) -> int:
    """A /proc/PID/status field in kB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def fetch(url: str) -> tuple[int, int, float]:
    t0 = time.perf_counter()
    req = urllib.request.Request(url, headers={"Host": "127.0.0.1"})
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return r.status, len(r.read()), time.perf_counter() - t0
    except urllib.error.HTTPError as e:
        return e.code, 0, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--megapixels", type=float, default=64.0, help="pixels per image, in millions")
    ap.add_argument("--copies", type=int, default=3, help="requests per image, all at once")
    ap.add_argument("--route", choices=("thumbnail", "file"), default="thumbnail")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    ap.add_argument("--keep", type=Path, help="reuse/keep the images in this folder")
    args = ap.parse_args()

    side = int((args.megapixels * 1e6) ** 0.5)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp, "images")
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        t0 = time.perf_counter()
        for i, kind in enumerate(args.kinds.split(",")):
            existing = sorted(folder.glob(f"{i}-{kind}-{side}.*"))
            files.append(existing[0] if existing else make_image(kind, side, folder / f"{i}-{kind}-{side}"))
        made = time.perf_counter() - t0
        db = Path(tmp, "library.db")
        lines = Path(tmp, "captions.jsonl")
        lines.write_text("".join(json.dumps({"path": str(f), "text": f"Tags: {f.stem}"}) + "\n"
                                 for f in files))
        env = {**os.environ, "MLLMRET_DATA_DIR": str(Path(tmp, "data")), "HF_HUB_OFFLINE": "1"}
        cli = [sys.executable, "-c", "from mllm_retrieval.cli import app; app()"]
        t0 = time.perf_counter()
        subprocess.run([*cli, "import", str(lines), "--db", str(db)], env=env, check=True, cwd=ROOT,
                       capture_output=True)
        imported = time.perf_counter() - t0
        port = free_port()
        server = subprocess.Popen([*cli, "serve", "--db", str(db), "--port", str(port), "--mode", "keyword"],
                                  env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    fetch(base + "/api/library")
                    break
                except OSError:
                    time.sleep(0.1)
            idle = proc_status(server.pid, "VmRSS")
            urls = [f"{base}/api/images/{i}/{args.route}" for i in range(1, len(files) + 1)] * args.copies
            t0 = time.perf_counter()
            with ThreadPoolExecutor(len(urls)) as pool:
                answers = list(pool.map(fetch, urls))
            wall = time.perf_counter() - t0
            peak = proc_status(server.pid, "VmHWM")
        finally:
            server.terminate()
            server.wait(30)
        statuses = sorted({a[0] for a in answers})
        print(json.dumps({
            "images": len(files), "megapixels": round(side * side / 1e6, 1), "route": args.route,
            "requests": len(urls), "statuses": statuses, "make_images_s": round(made, 1),
            "import_s": round(imported, 1), "requests_wall_s": round(wall, 1),
            "slowest_request_s": round(max(a[2] for a in answers), 1),
            "server_idle_rss_mb": round(idle / 1024), "server_peak_rss_mb": round(peak / 1024),
        }))


if __name__ == "__main__":
    main()
