"""HEIC/HEIF and camera RAW photos: captioned with their extras, listed as skipped (naming the extra)
without them, never silently ignored."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from fakes import FakeCaptioner
from photo_files import make_dng, need
from PIL import Image

from mllm_retrieval.capture.formats import PREVIEW_MIN_SIDE
from mllm_retrieval.capture.images import image_size, open_image
from mllm_retrieval.capture.pipeline import CaptionSettings, caption_paths
from mllm_retrieval.capture.prompts import load_prompt


def caption(store, *paths):
    return caption_paths(store, paths, FakeCaptioner(), load_prompt(), CaptionSettings(grid="none"),
                         progress=False)


def full_tags(store) -> dict[str, list[str]]:
    names = {i: p.rsplit("/", 1)[-1] for p, i, _ in store.indexed_files()}
    return {names[t.image_id]: list(t.tags) for t in store.tile_texts() if t.tile_key == "full"}


def test_a_heic_photo_is_captioned(store, tmp_path):
    heif = need("pillow_heif", "heif")
    heif.from_pillow(Image.new("RGB", (64, 48), (0, 200, 0))).save(tmp_path / "IMG_0001.HEIC", quality=90)
    s = caption(store, tmp_path)
    assert [f.reason for f in s.failed] == [] and s.captioned_images == 1
    assert full_tags(store)["IMG_0001.HEIC"] == ["green", "size64x48"]


def test_a_heic_photos_embedded_keywords_are_read(tmp_path):
    from test_metadata_read import packet

    from mllm_retrieval.metadata.read import read_photo_text

    heif = need("pillow_heif", "heif")
    heif.from_pillow(Image.new("RGB", (32, 32))).save(tmp_path / "a.heic", xmp=packet(["harbour"]))
    text = read_photo_text(tmp_path / "a.heic")
    assert text.keywords == ("harbour", "Brittany") and text.sources == ("embedded XMP",)


def test_a_dng_is_demosaiced_when_it_has_no_preview(store, tmp_path):
    need("rawpy", "raw")
    image = open_image(make_dng(tmp_path / "mosaic.dng"))
    assert image.size == (96, 64) == image_size(tmp_path / "mosaic.dng")
    left, right = np.asarray(image)[32, 10], np.asarray(image)[32, 85]
    assert left[0] > 200 > left[2] and right[2] > 200 > right[0]  # red half, blue half, from the mosaic

    s = caption(store, tmp_path)
    assert s.captioned_images == 1 and full_tags(store)["mosaic.dng"][1] == "size96x64"


def test_a_raw_files_embedded_preview_is_used_and_turned_upright(tmp_path):
    need("rawpy", "raw")
    preview = np.zeros((64, 96, 3), np.uint8)
    preview[..., 1] = 220  # green: unlike the red/blue mosaic, so we know which one was read
    assert PREVIEW_MIN_SIDE >= 96  # a preview as large as the sensor counts, however small the sensor
    image = open_image(make_dng(tmp_path / "p.dng", preview=preview))
    assert image.size == (96, 64) and tuple(np.asarray(image)[10, 10]) == (0, 220, 0)
    turned = open_image(make_dng(tmp_path / "t.dng", preview=preview, orientation=6))
    assert turned.size == (64, 96) == image_size(tmp_path / "t.dng")


def test_without_the_extras_heic_and_raw_are_skipped_naming_the_extra(store, tmp_path, monkeypatch):
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.jpg")
    (tmp_path / "IMG_0002.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(64))
    (tmp_path / "IMG_0003.CR2").write_bytes(b"II*\x00\x10\x00\x00\x00CR\x02\x00" + bytes(64))
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # as if the extra were not installed
    monkeypatch.setitem(sys.modules, "rawpy", None)
    s = caption(store, tmp_path)
    assert s.captioned_images == 1
    assert {f.path.rsplit("/", 1)[-1]: f.reason for f in s.failed} == {
        "IMG_0002.heic": "a HEIC/HEIF photo: install the heif extra to read it "
                         "(pip install 'mllm-retrieval[heif]')",
        "IMG_0003.CR2": "a camera RAW file: install the raw extra to read it "
                        "(pip install 'mllm-retrieval[raw]')",
    }


def test_a_damaged_raw_file_is_skipped_with_a_reason(store, tmp_path):
    need("rawpy", "raw")
    (tmp_path / "broken.nef").write_bytes(b"MM\x00*" + bytes(200))
    s = caption(store, tmp_path)
    [failed] = s.failed
    assert failed.path.endswith("broken.nef") and failed.reason.startswith("not a readable camera RAW file")


@pytest.mark.parametrize("name", ["IMG_0004.CR2", "IMG_0004.NEF"])
def test_raw_names_find_their_sidecars_by_each_tools_convention(name, tmp_path):
    from pathlib import Path

    from mllm_retrieval.metadata.sidecars import sidecar_path

    assert sidecar_path(Path(name)) == Path(f"{name}.xmp")  # darktable, digiKam
    assert sidecar_path(Path(name), "lightroom") == Path("IMG_0004.xmp")  # Lightroom, Capture One


def test_a_raw_files_sidecar_is_read_and_a_raw_jpeg_pair_shares_lightroom_sidecar_with_the_raw(tmp_path):
    need("rawpy", "raw")
    import json

    from cli_helpers import mllmret
    from test_metadata_read import packet

    from mllm_retrieval.metadata.read import read_photo_text

    raw = make_dng(tmp_path / "IMG_0005.dng")
    (tmp_path / "IMG_0005.dng.xmp").write_bytes(packet(["Lighthouse"], "Pointe du Raz"))  # darktable's name
    text = read_photo_text(raw)
    assert set(text.keywords) == {"Lighthouse", "Brittany"} and text.sources == ("sidecar IMG_0005.dng.xmp",)

    Image.new("RGB", (96, 64), "red").save(tmp_path / "IMG_0005.JPG")  # the camera's JPEG, sorted first
    lines = [{"path": str(tmp_path / name), "tags": [tag]} for name, tag in
             (("IMG_0005.dng", "sea"), ("IMG_0005.JPG", "boat"))]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    db = tmp_path / "lib.db"
    mllmret("import", tmp_path / "c.jsonl", "--db", db, "--no-embed")
    r = mllmret("tags", "write", "--sidecar-name", "lightroom", "--db", db)
    assert f"skipped {tmp_path / 'IMG_0005.JPG'}: IMG_0005.xmp is already the sidecar of {raw}" in r.stderr
    assert b"mllmret|sea" in (tmp_path / "IMG_0005.xmp").read_bytes()


def test_the_page_shows_heic_and_raw_through_a_jpeg_thumbnail(tmp_path):
    from mllm_retrieval.capture.images import sha256_file
    from mllm_retrieval.library.thumbnails import browser_type, thumbnail

    heif = need("pillow_heif", "heif")
    need("rawpy", "raw")
    heif.from_pillow(Image.new("RGB", (64, 48), (0, 0, 200))).save(tmp_path / "a.heic", quality=90)
    files = [tmp_path / "a.heic", make_dng(tmp_path / "b.dng")]
    for path in files:
        assert browser_type(path) is None  # a browser cannot show it: the page gets a JPEG
        with Image.open(thumbnail(path, sha256_file(path), 32, cache=tmp_path / "cache")) as small:
            assert small.format == "JPEG" and max(small.size) == 32
