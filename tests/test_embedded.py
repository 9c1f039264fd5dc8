"""`mllmret tags write --embed`: keywords inside JPEG/PNG/TIFF/WebP, read back by exiftool; a person's
keywords kept; the image data unchanged; the library still knows the photo. Needs pyexiv2 ([xmp]) and
exiftool: skipped locally without them, failures in CI."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import mllmret
from photo_files import need
from PIL import Image, PngImagePlugin
from test_sidecars import exiftool_read, exiftool_write, need_exiftool

from mllm_retrieval.capture.images import sha256_file
from mllm_retrieval.library.store import Store
from mllm_retrieval.metadata.read import read_photo_text

FORMATS = ("jpg", "png", "tif", "webp")


def scan_data(jpeg: bytes) -> bytes:
    """A JPEG's entropy-coded image data: from the start-of-scan marker to the end."""
    return jpeg[jpeg.index(b"\xff\xda"):]


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def pixels_of(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def exiftool_iptc(path: Path) -> list[str]:
    out = subprocess.run([need_exiftool(), "-j", "-IPTC:Keywords", str(path)], capture_output=True, text=True,
                         check=True)
    value = json.loads(out.stdout)[0].get("Keywords", [])
    return value if isinstance(value, list) else [value]


@pytest.fixture
def photos(tmp_path) -> tuple[Path, Path]:
    """(folder with one noisy photo per format, captioned by `mllmret import`, database)."""
    need("pyexiv2", "xmp")
    need_exiftool()
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(19)
    lines = []
    for i, fmt in enumerate(FORMATS):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / f"p{i}.{fmt}")
        lines += [{"path": str(folder / f"p{i}.{fmt}"), "tags": ["Dog", "grass"], "caption": "A dog."},
                  {"path": str(folder / f"p{i}.{fmt}"), "tile": "0,0,32,24", "tags": ["dog", "ball"]}]
    src = tmp_path / "captions.jsonl"
    src.write_text("".join(json.dumps(line) + "\n" for line in lines))
    db = tmp_path / "lib.db"
    mllmret("import", src, "--db", db, "--no-embed")
    return folder, db


def test_exiftool_reads_back_what_we_embedded_and_the_image_data_is_unchanged(photos):
    folder, db = photos
    before = {p: p.read_bytes() for p in folder.iterdir()}
    dry = mllmret("tags", "write", "--embed", "--caption", "--dry-run", "--db", db)
    assert "4 photos to change" in dry.stderr and {p: p.read_bytes() for p in folder.iterdir()} == before

    r = mllmret("tags", "write", "--embed", "--caption", "--db", db)
    assert "4 photos changed, 0 unchanged, 0 skipped" in r.stderr
    for p in sorted(folder.iterdir()):
        assert exiftool_read(p) == {"Subject": ["dog", "grass", "ball"],
                                    "HierarchicalSubject": ["mllmret|dog", "mllmret|grass", "mllmret|ball"],
                                    "Description": "A dog."}, p.name
        assert p.read_bytes() != before[p] and np.array_equal(pixels(p), pixels_of(before[p])), p.name
    jpg = folder / "p0.jpg"
    assert scan_data(jpg.read_bytes()) == scan_data(before[jpg])
    names = [f"p{i}.{f}" for i, f in enumerate(FORMATS)]
    assert sorted(p.name for p in folder.iterdir()) == names  # no sidecar

    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    again = mllmret("tags", "write", "--embed", "--caption", "--db", db)
    assert "0 photos changed, 4 unchanged, 0 skipped" in again.stderr and not again.stdout
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()} == after

    gone = mllmret("tags", "write", "--embed", "--remove", "--db", db)
    assert gone.stdout.count("description removed") == 4
    for p in folder.iterdir():
        assert exiftool_read(p) == {} and np.array_equal(pixels(p), pixels_of(before[p])), p.name
    assert scan_data(jpg.read_bytes()) == scan_data(before[jpg])


def test_the_library_knows_an_embedded_photo_as_the_same_image(photos):
    folder, db = photos
    with Store(db) as store:
        ids = {p: i for p, i, _ in store.indexed_files()}
    mllmret("tags", "write", "--embed", "--db", db)
    with Store(db) as store:
        files = store.indexed_files()
        assert {p: i for p, i, _ in files} == ids  # same image ids, so no text lost and nothing re-captioned
        assert all(sha == sha256_file(p) for p, _, sha in files)  # its new content hash recorded
    check = mllmret("check", "--db", db)  # exit status 1 if a photo looked changed
    assert "image files: 0 missing, 0 changed" in check.output


def test_a_persons_keywords_written_by_exiftool_survive_our_write_and_remove(photos):
    folder, db = photos
    jpg = folder / "p0.jpg"
    exiftool_write(jpg, "-XMP-dc:Subject=Rex", "-XMP-lr:HierarchicalSubject=Pets|Rex", "-IPTC:Keywords=Rex",
                   "-IPTC:Keywords=Dog", "-XMP-dc:Description=Rex in the garden", "-XMP-xmp:Rating=5")
    mllmret("import", jpg.parent.parent / "captions.jsonl", "--db", db, "--no-embed")  # its new sha captioned
    image_data = scan_data(jpg.read_bytes())

    mllmret("tags", "write", "--embed", "--caption", jpg, "--db", db)
    assert exiftool_read(jpg) == {
        "Subject": ["Rex", "grass", "ball"],  # "dog" is the person's (in IPTC): not recorded as ours
        "HierarchicalSubject": ["Pets|Rex", "mllmret|dog", "mllmret|grass", "mllmret|ball"],
        "Description": "Rex in the garden"}
    assert exiftool_iptc(jpg) == ["Rex", "Dog", "grass", "ball"]

    exiftool_write(jpg, "-XMP-dc:Subject+=Garden", "-IPTC:Keywords+=Garden")  # a person adds one after us
    mllmret("import", jpg.parent.parent / "captions.jsonl", "--db", db, "--no-embed")
    r = mllmret("tags", "write", "--embed", "--remove", jpg, "--db", db)
    assert "1 photos changed" in r.stderr
    assert exiftool_read(jpg) == {"Subject": ["Rex", "Garden"], "HierarchicalSubject": ["Pets|Rex"],
                                  "Description": "Rex in the garden"}
    assert exiftool_iptc(jpg) == ["Rex", "Dog", "Garden"]
    rating = subprocess.run([need_exiftool(), "-s3", "-XMP:Rating", str(jpg)], capture_output=True, text=True)
    assert rating.stdout.strip() == "5" and scan_data(jpg.read_bytes()) == image_data


def test_embedded_keywords_of_a_person_are_read_ours_are_not_and_search_finds_them(photos):
    folder, db = photos
    jpg = folder / "p0.jpg"
    exiftool_write(jpg, "-XMP-dc:Subject=Lighthouse", "-IPTC:Keywords=Lighthouse", "-IPTC:Keywords=Brittany")
    mllmret("import", jpg.parent.parent / "captions.jsonl", "--db", db, "--no-embed")
    mllmret("tags", "write", "--embed", jpg, "--db", db)
    assert sorted(read_photo_text(jpg).keywords) == ["Brittany", "Lighthouse"]  # not dog, grass, ball

    mllmret("tags", "read", folder, "--db", db, "--quiet")
    hits = mllmret("search", "brittany", "--mode", "keyword", "--json", "--db", db).stdout.splitlines()
    assert [json.loads(h)["path"] for h in hits] == [str(jpg)]


def test_bad_input_is_skipped_with_a_reason_and_left_alone(photos, tmp_path):
    folder, db = photos
    Image.new("RGB", (8, 8), "white").save(folder / "p4.gif")
    dup = tmp_path / "copy"
    dup.mkdir()
    (dup / "p1.png").write_bytes((folder / "p1.png").read_bytes())
    extra = [{"path": str(folder / "p4.gif"), "tags": ["snow"]}, {"path": str(dup / "p1.png"), "tags": ["x"]}]
    (tmp_path / "more.jsonl").write_text("".join(json.dumps(line) + "\n" for line in extra))
    mllmret("import", tmp_path / "more.jsonl", "--db", db, "--no-embed")
    (folder / "p2.tif").chmod(0o444)
    Image.new("RGB", (64, 48), "green").save(folder / "p3.webp")  # edited after captioning
    before = {p: p.read_bytes() for p in [*folder.iterdir(), *dup.iterdir()]}

    r = mllmret("tags", "write", "--embed", "--db", db)
    reasons = dict(line[len("  skipped "):].split(": ", 1) for line in r.stderr.splitlines()
                   if line.startswith("  skipped "))
    copies = "embedding in one copy would make them differ (its sidecar is written without --embed)"
    assert reasons == {
        str(folder / "p1.png"): f"the same photo is also at {dup / 'p1.png'}: {copies}",
        str(dup / "p1.png"): f"the same photo is also at {folder / 'p1.png'}: {copies}",
        str(folder / "p2.tif"): "read-only or a symbolic link: left as it is",
        str(folder / "p3.webp"): "changed since it was captioned (sha256 differs): caption it again first",
        str(folder / "p4.gif"): "keywords are embedded only in JPEG, PNG, TIFF and WebP files, not .gif "
                                "(its XMP sidecar is written without --embed)",
    }
    assert r.stdout.split("\t")[:2] == ["wrote", str(folder / "p0.jpg")]
    assert "1 photos changed, 0 unchanged, 5 skipped" in r.stderr
    assert {p: p.read_bytes() for p in before if p.name != "p0.jpg"} == {
        p: b for p, b in before.items() if p.name != "p0.jpg"}


def test_a_photo_whose_embedded_xmp_is_damaged_or_huge_is_skipped_untouched(tmp_path):
    need("pyexiv2", "xmp")
    folder = tmp_path / "photos"
    folder.mkdir()
    packets = {"broken.jpg": b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><oops></x:xmpmeta>',
               "doctype.jpg": b'<!DOCTYPE x [<!ENTITY a "b">]><x:xmpmeta xmlns:x="adobe:ns:meta/"/>',
               "huge.png": b'<x:xmpmeta xmlns:x="adobe:ns:meta/">' + b" " * (5 << 20) + b"</x:xmpmeta>"}
    for name, xmp in packets.items():
        png = PngImagePlugin.PngInfo()
        png.add_itxt("XML:com.adobe.xmp", xmp.decode())
        Image.new("RGB", (32, 32), "red").save(folder / name, **({"pnginfo": png} if name.endswith("png")
                                                                  else {"xmp": xmp}))
    (tmp_path / "c.jsonl").write_text("".join(
        json.dumps({"path": str(folder / name), "tags": ["dog"]}) + "\n" for name in packets))
    db = tmp_path / "lib.db"
    mllmret("import", tmp_path / "c.jsonl", "--db", db, "--no-embed")
    before = {p: p.read_bytes() for p in folder.iterdir()}
    r = mllmret("tags", "write", "--embed", "--db", db)
    assert "0 photos changed, 0 unchanged, 3 skipped" in r.stderr
    assert f"skipped {folder / 'broken.jpg'}: its embedded XMP: not XML" in r.stderr
    assert f"skipped {folder / 'doctype.jpg'}: its embedded XMP: has a DOCTYPE" in r.stderr
    assert f"skipped {folder / 'huge.png'}: its embedded XMP: too large" in r.stderr
    assert {p: p.read_bytes() for p in folder.iterdir()} == before


def test_a_photo_saved_by_someone_else_while_we_embed_keeps_their_save(photos, monkeypatch):
    from mllm_retrieval.metadata import embedded

    folder, db = photos
    jpg, real = folder / "p0.jpg", embedded.embed

    def edited_meanwhile(*args):
        out = real(*args)
        jpg.write_bytes(b"saved by a photo editor")
        return out

    monkeypatch.setattr(embedded, "embed", edited_meanwhile)
    r = mllmret("tags", "write", "--embed", jpg, "--db", db)
    assert f"skipped {jpg}: changed while we were writing to it: left as it is" in r.stderr
    assert jpg.read_bytes() == b"saved by a photo editor" and [p.name for p in folder.glob(".*")] == []


def test_without_exiv2_embed_is_one_line_naming_the_extra(photos, monkeypatch):
    folder, db = photos
    monkeypatch.setitem(sys.modules, "pyexiv2", None)
    r = mllmret("tags", "write", "--embed", "--db", db, ok=False)
    assert r.exit_code == 1 and "--embed needs exiv2: pip install 'mllm-retrieval[xmp]'" in r.output
