"""Shared fixtures: isolated data dir, a tiny LLaVA built once, small real and synthetic images."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from mllm_retrieval.library.store import Store

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COCO_IMAGES = Path(os.environ.get("MLLMRET_COCO_IMAGES", SHARED / "coco" / "images"))


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MLLMRET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MLLMRET_DB", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def no_env_keys(monkeypatch):
    """No server URL or API key from the environment: a test names its own."""
    for name in ("MLLMRET_API_KEY", "OPENAI_API_KEY", "MLLMRET_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def many_photos(tmp_path):
    """Six small PNGs of different widths."""
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(6):
        Image.new("RGB", (40 + 8 * i, 40), (20 * i, 100, 200)).save(folder / f"p{i}.png")
    return folder


@pytest.fixture
def store():
    with Store(memory=True) as s:
        yield s


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory) -> Path:
    from tiny_models import build_tiny_llava

    return build_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))


@pytest.fixture
def photos(tmp_path) -> Path:
    """A folder of small synthetic photos in several formats and modes."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (64, 48), "red").save(folder / "red.jpg")
    Image.new("RGB", (40, 40), "green").save(folder / "sub" / "green.PNG")
    Image.new("RGBA", (50, 40), (0, 0, 255, 128)).save(folder / "sub" / "blue.webp")
    Image.new("P", (32, 32), 3).save(folder / "palette.gif")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture
def coco_images(tmp_path) -> Path:
    """A few real COCO val2017 JPEGs copied from ../shared/data (skipped when absent)."""
    if not COCO_IMAGES.is_dir():
        pytest.skip(f"real COCO images not found at {COCO_IMAGES}")
    folder = tmp_path / "coco"
    folder.mkdir()
    for src in sorted(COCO_IMAGES.glob("*.jpg"))[:3]:
        shutil.copy(src, folder / src.name)
    return folder
