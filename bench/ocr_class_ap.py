"""Do the words OCR reads change class-name AP? The 154 COCO photos, human captions with and without OCR.

    python bench/ocr_class_ap.py                 # ~5-10 min (OCR of 154 photos), prints one table
    python bench/ocr_class_ap.py --db lib.db     # keep (or reuse) the library

Builds a library of the 154 photos in ../shared/data/coco/images: one imported run holding each photo's five
human captions (as one caption, so the keyword document and embedding text equal `--source human`'s), and
an OCR run (`mllmret caption --ocr-only`). Then `mllmret eval --source db` ranks with both runs (OCR joins
the caption run, as it does in search), with the captions alone (`--run`) and with OCR alone, in every mode.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
COCO = ROOT.parent / "shared" / "data" / "coco"
LABELS = COCO / "annotations" / "instances_val2017.json"
MODES = ("keyword", "semantic", "hybrid")


def mllmret(*args: str, db: Path) -> str:
    """Run the CLI on the library; its output."""
    env = {**os.environ, "MLLMRET_DB": str(db)}
    out = subprocess.run([str(Path(sys.executable).parent / "mllmret"), *args], env=env, check=True,
                         capture_output=True, text=True)
    return out.stdout


def build(db: Path, folder: Path) -> None:
    """The library: one run of human captions (five per photo, joined), then an OCR run."""
    photos = {i["id"]: i["file_name"] for i in json.loads(LABELS.read_text())["images"]}
    captions = defaultdict(list)
    for a in json.loads((COCO / "annotations" / "captions_val2017.json").read_text())["annotations"]:
        if a["image_id"] in photos:
            captions[a["image_id"]].append(a["caption"].strip())
    lines = folder / "human.jsonl"
    rows = ({"file_name": photos[i], "caption": " ".join(c), "model": "coco-human"}
            for i, c in captions.items())
    lines.write_text("".join(json.dumps(r) + "\n" for r in rows))
    mllmret("caption", str(COCO / "images"), "--backend", "import", "--captions", str(lines), db=db)
    mllmret("caption", str(COCO / "images"), "--ocr-only", db=db)


def macro_ap(db: Path, out: Path, run: int | None) -> list[float]:
    """Macro AP per mode of `mllmret eval --source db` (one run, or all)."""
    mllmret("eval", "--dataset", "coco", "--annotations", str(LABELS), "--source", "db", "--quiet",
            "--modes", ",".join(MODES), "--out", str(out), *(["--run", str(run)] if run else []), db=db)
    conditions = json.loads((out / "results.json").read_text())["conditions"]
    return [next(c["macro_ap"] for c in conditions if c["mode"] == m) for m in MODES]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", type=Path, help="library to build once and reuse (default: a temporary one)")
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp())
    db = args.db or folder / "library.db"
    if not db.exists():
        build(db, folder)
    from mllm_retrieval.library.store import Store

    with Store(db) as store:
        runs = {kind: run for run, _, kind in store.run_models()}
    human, ocr = runs["caption"], runs["ocr"]
    rows = [("human captions", macro_ap(db, folder / "human", human)),
            ("human captions + OCR", macro_ap(db, folder / "both", None)),
            ("OCR alone", macro_ap(db, folder / "ocr", ocr))]
    print("| text | " + " | ".join(MODES) + " |\n|---|" + "---|" * len(MODES))
    for label, aps in rows:
        print(f"| {label} | " + " | ".join(f"{a:.3f}" for a in aps) + " |")


if __name__ == "__main__":
    main()
