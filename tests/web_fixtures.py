"""A small library for the web tests: four photos captioned by FakeCaptioner, plus hostile captions."""

from __future__ import annotations

import json
from pathlib import Path

from fakes import FakeCaptioner
from PIL import Image

from mllm_retrieval.capture.pipeline import CaptionSettings, caption_paths
from mllm_retrieval.capture.prompts import load_prompt
from mllm_retrieval.library.jsonl import import_jsonl
from mllm_retrieval.library.store import Store

SCRIPT_TAG = "<script>alert(1)</script>"
IMG_TAG = "<img src=x onerror=alert(1)>"


def make_photos(folder: Path) -> Path:
    """red.png, green.png, split.png (left red, right green) and blue.jpg (400x300)."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), (220, 30, 30)).save(folder / "red.png")
    Image.new("RGB", (48, 64), (30, 200, 40)).save(folder / "green.png")
    split = Image.new("RGB", (64, 64), (220, 30, 30))
    split.paste((30, 200, 40), (32, 0, 64, 64))
    split.save(folder / "split.png")
    Image.new("RGB", (400, 300), (40, 60, 210)).save(folder / "blue.jpg", quality=90)
    return folder


def build_library(tmp_path: Path) -> tuple[Path, Path]:
    """(database, photo folder): a `mllmret caption` run with 2x2 tiles, then an imported run whose
    text tries HTML/JS injection, and one external image whose "path" points at /etc/passwd."""
    photos = make_photos(tmp_path / "photos")
    db = tmp_path / "web.db"
    with Store(db) as store:
        caption_paths(store, [photos], FakeCaptioner(), load_prompt(), CaptionSettings(grid="2x2"),
                      progress=False)
        evil = tmp_path / "evil.jsonl"
        evil.write_text("\n".join(json.dumps(r) for r in [
            {"path": str(photos / "blue.jpg"), "model": "evil-model",
             "tags": [SCRIPT_TAG, "evil"], "caption": f"{IMG_TAG} an evil tile",
             "text": f"Tags: {SCRIPT_TAG}, evil\nCaption: {IMG_TAG} an evil tile"},
            {"image_id": "outside", "file_name": "/etc/passwd", "model": "evil-model",
             "text": "Tags: passwd\nCaption: a file that was never indexed"},
        ]) + "\n")
        summary = import_jsonl(store, evil, progress=False)
        assert summary.added == 2 and not summary.skipped
    return db, photos
