import os

import pytest
from PIL import Image

from mllm_retrieval.capture.images import Skipped, open_image, sha256_file, walk
from mllm_retrieval.errors import ImageError


def test_walk_finds_images_recursively_in_any_case(photos):
    found = sorted(p.name for p in walk([photos]))
    assert found == ["blue.webp", "green.PNG", "palette.gif", "red.jpg"]


def test_walk_reports_missing_paths_and_broken_symlinks(tmp_path, photos):
    os.symlink(tmp_path / "nowhere.jpg", photos / "dangling.jpg")
    skipped: list[Skipped] = []
    found = list(walk([photos, tmp_path / "missing", photos / "notes.txt"], skipped))
    assert len(found) == 4
    reasons = {s.path.split("/")[-1]: s.reason for s in skipped}
    assert reasons == {
        "dangling.jpg": "broken symlink",
        "missing": "no such file or folder",
        "notes.txt": "not an image file type",
    }


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.new("RGB", (60, 20), "red").save(path, exif=exif)
    assert open_image(path).size == (20, 60)


@pytest.mark.parametrize("mode,value", [
    ("P", 3), ("RGBA", (10, 20, 30, 0)), ("LA", (100, 50)), ("CMYK", (0, 255, 0, 0)),
    ("I;16", 40000), ("L", 128), ("1", 1), ("I", 70000), ("F", 0.5),
])
def test_every_mode_becomes_rgb(tmp_path, mode, value):
    im = Image.new(mode, (8, 8), value)
    path = tmp_path / ("x.tiff" if mode in ("CMYK", "I;16", "I", "F") else "x.png")
    im.save(path)
    out = open_image(path)
    assert out.mode == "RGB" and out.size == (8, 8)


def test_transparent_pixels_become_white(tmp_path):
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    assert open_image(tmp_path / "clear.png").getpixel((0, 0)) == (255, 255, 255)


def test_bad_files_raise_one_line_image_errors(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    Image.new("RGB", (200, 200), "blue").save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    for name, message in [("empty.jpg", "empty"), ("text.jpg", "not a readable image"),
                          ("truncated.jpg", "truncated")]:
        with pytest.raises(ImageError, match=message) as info:
            open_image(tmp_path / name)
        assert "\n" not in str(info.value)


def test_images_over_the_pixel_limit_are_refused(tmp_path):
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    with pytest.raises(ImageError, match="too large"):
        open_image(tmp_path / "big.png", max_pixels=5000)


def test_decompression_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (15000, 15000)).save(path)  # 225 Mpx, a few KB on disk
    with pytest.raises(ImageError, match="too large"):
        open_image(path)


def test_sha256_is_content_based(tmp_path):
    (tmp_path / "a").write_bytes(b"same")
    (tmp_path / "b").write_bytes(b"same")
    assert sha256_file(tmp_path / "a") == sha256_file(tmp_path / "b")
    with pytest.raises(ImageError):
        sha256_file(tmp_path / "missing")
