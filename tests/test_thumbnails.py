"""Bounded image work: sizes from headers, one thumbnail build per image, a budget over decoded pixels."""

from __future__ import annotations

import os
import threading

import pytest
from PIL import Image

from mllm_retrieval.capture.images import image_size, open_image
from mllm_retrieval.errors import ImageError
from mllm_retrieval.library import thumbnails
from mllm_retrieval.library.thumbnails import DecodeBudget, decoded_bytes, thumbnail

SHA = "ab" * 32


def _rotated_jpeg(path, orientation=6):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.new("RGB", (60, 40), "red").save(path, exif=exif)
    return path


def test_image_size_reads_the_header_as_open_image_sees_the_image(tmp_path, photos):
    files = [p for p in photos.rglob("*") if p.is_file() and p.suffix != ".txt"]
    files.append(_rotated_jpeg(tmp_path / "r.jpg"))
    for path in files:
        assert image_size(path) == open_image(path).size, path
    assert image_size(tmp_path / "r.jpg") == (40, 60)


def test_image_size_does_not_decode(tmp_path):
    path = tmp_path / "cut.png"
    Image.effect_noise((300, 200), 50).save(path)
    path.write_bytes(path.read_bytes()[:2000])  # header intact, pixel data cut short
    assert image_size(path) == (300, 200)
    with pytest.raises(ImageError):
        open_image(path)
    with pytest.raises(ImageError, match="too large"):
        image_size(path, max_pixels=1000)


def test_decode_budget_holds_no_more_than_its_limit_at_once():
    budget = DecodeBudget(100)
    inside, seen = [0], []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def work(n):
        start.wait()
        with budget.hold(n):
            with lock:
                inside[0] += n
                seen.append((n, inside[0]))
            threading.Event().wait(0.01)
            with lock:
                inside[0] -= n

    threads = [threading.Thread(target=work, args=(40,)) for _ in range(7)]
    threads.append(threading.Thread(target=work, args=(150,)))  # larger than the budget: runs alone
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8 and budget.used == 0
    assert all(total <= 100 for n, total in seen if n == 40)
    assert [total for n, total in seen if n == 150] == [150]


def test_concurrent_requests_for_one_image_build_it_once(tmp_path, monkeypatch):
    src = tmp_path / "big.png"
    Image.new("RGB", (900, 600), "blue").save(src)
    calls = []
    real = thumbnails._open_small

    def counted(path, size):
        calls.append(path)
        threading.Event().wait(0.05)  # the others arrive while this one builds
        return real(path, size)

    monkeypatch.setattr(thumbnails, "_open_small", counted)
    results, start = [], threading.Barrier(6)

    def request():
        start.wait()
        results.append(thumbnail(src, SHA, 100, cache=tmp_path / "cache"))

    threads = [threading.Thread(target=request) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(results)) == 1 and not thumbnails._builds
    assert Image.open(results[0]).size == (100, 67)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "L", "I;16", "1", "CMYK"])
def test_thumbnails_of_every_mode_within_the_budget(tmp_path, monkeypatch, mode):
    src = tmp_path / ("img.tif" if mode in ("CMYK", "I;16") else "img.png")
    Image.new("RGB", (800, 400), (200, 30, 40)).convert(mode).save(src)
    budget = DecodeBudget(1 << 30)
    monkeypatch.setattr(thumbnails, "DECODE_BUDGET", budget)
    out = thumbnail(src, SHA, 64, cache=tmp_path / "cache")
    with Image.open(out) as im:
        assert im.size == (64, 32) and im.mode == "RGB"
    with Image.open(src) as im:
        assert budget.peak == decoded_bytes(im) >= 800 * 400


def test_jpeg_decodes_at_reduced_scale_and_turns_upright(tmp_path, monkeypatch):
    src = tmp_path / "big.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (1600, 800), "green").save(src, exif=exif)
    budget = DecodeBudget(1 << 30)
    monkeypatch.setattr(thumbnails, "DECODE_BUDGET", budget)
    with Image.open(thumbnail(src, SHA, 100, cache=tmp_path / "cache")) as im:
        assert im.size == (50, 100)  # portrait, as the camera meant
    assert budget.peak <= 1600 * 800 * 3 * 5 // 4 // 16 * 4  # drafted at 1/4 scale or less


def test_the_cache_keeps_the_most_recently_used_within_its_bound(tmp_path, monkeypatch):
    from mllm_retrieval.library import thumbnails

    monkeypatch.setenv("MLLMRET_THUMBS_MB", "1")
    monkeypatch.setattr(thumbnails, "EVICT_EVERY", 1)
    cache = tmp_path / "cache"
    src = tmp_path / "noise.png"
    Image.effect_noise((600, 600), 120).convert("RGB").save(src)  # noise: thumbnails that do not compress
    made = []
    for n in range(40):
        sha = f"{n:064x}"
        made.append(thumbnail(src, sha, 320, cache=cache))
        os.utime(made[-1], (1000 + n, 1000 + n))  # made in this order, each "used" once
        if n == 2:
            os.utime(made[0], (5000, 5000))  # the first one was used again since
    total = sum(p.stat().st_size for p in cache.rglob("*.jpg"))
    assert total <= 1 << 20  # back under the bound
    assert made[0].exists() and made[-1].exists()  # recently used ones stay
    assert not made[1].exists()  # the least recently used went first
    assert thumbnail(src, f"{1:064x}", 320, cache=cache).exists()  # and is simply made again


def test_a_hit_marks_the_thumbnail_used(tmp_path):
    src = tmp_path / "a.png"
    Image.new("RGB", (64, 64), "red").save(src)
    out = thumbnail(src, SHA, 32, cache=tmp_path / "cache")
    os.utime(out, (1000, 1000))
    thumbnail(src, SHA, 32, cache=tmp_path / "cache")
    assert out.stat().st_mtime > 1000
