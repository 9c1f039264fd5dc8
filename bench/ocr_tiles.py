"""Does reading the 2x2 tiles as well as the whole photo find more text? Hand-labelled COCO photos.

    python bench/ocr_tiles.py                # 37 labelled photos + 20 text-free ones (~10 min, busy CPU)
    python bench/ocr_tiles.py --text-free 5    # quicker

Recall of the labelled words (eval/ocr_coco_labels.json, words of >= 3 letters) from the whole photo alone
and from the whole photo plus its 2x2 tiles (tiling.grid_boxes, as `mllmret caption` cuts them), the
text-free photos where a dictionary word is read (bench/ocr_eval.py's list), and seconds per photo.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from ocr_eval import IMAGES, LABELS, dictionary, holds, pct, tokens_for  # noqa: E402

from mllm_retrieval.capture.images import open_image  # noqa: E402
from mllm_retrieval.capture.ocr import MIN_CONFIDENCE, OcrEngine  # noqa: E402
from mllm_retrieval.capture.tiling import grid_boxes  # noqa: E402
from mllm_retrieval.search.text import tokenize  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=Path, default=IMAGES)
    ap.add_argument("--text-free", type=int, default=20, help="Text-free photos to read too (false matches).")
    args = ap.parse_args()
    labels = json.loads(LABELS.read_text())["photos"]
    photos = sorted(args.images.glob("*.jpg"))
    labelled = [p for p in photos if p.name in labels]
    free = [p for p in photos if p.name not in labels][: args.text_free]
    engine = OcrEngine()
    engine.read(open_image(labelled[0]))  # warm-up
    whole: dict[str, list[str]] = {}
    tiled: dict[str, list[str]] = {}
    secs = {"whole": [], "tiles": []}
    for i, path in enumerate([*labelled, *free]):
        image = open_image(path)
        t0 = time.perf_counter()
        lines = engine.read(image)
        secs["whole"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        in_tiles = [line for box in grid_boxes(image.width, image.height, "2x2", 0.0)[1:]
                    for line in engine.read(image.crop((box.x0, box.y0, box.x1, box.y1)))]
        secs["tiles"].append(time.perf_counter() - t0)
        whole[path.name] = tokens_for(lines, MIN_CONFIDENCE, "wordninja")
        tiled[path.name] = tokens_for(lines + in_tiles, MIN_CONFIDENCE, "wordninja")
        print(f"\rread {i + 1}/{len(labelled) + len(free)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    words = [(p.name, w) for p in labelled
             for w in dict.fromkeys(t for line in labels[p.name] for t in tokenize(line) if len(t) >= 3)]
    vocab = set(dictionary())
    for name, docs in (("whole photo", whole), ("whole photo + 2x2 tiles", tiled)):
        false = [bool(vocab & set(docs[p.name])) for p in free]
        print(f"{name:24s} labelled words {pct([holds(docs[n], w, 'wordninja') for n, w in words])}  "
              f"text-free photos with a dictionary word {pct(false)}")
    print(f"seconds per photo: whole {sum(secs['whole']) / len(secs['whole']):.2f}, "
          f"4 tiles {sum(secs['tiles']) / len(secs['tiles']):.2f}")


if __name__ == "__main__":
    main()
