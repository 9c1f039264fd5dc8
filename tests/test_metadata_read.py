"""`mllmret tags read`: a person's keywords, titles and descriptions (sidecar, embedded XMP, IPTC, EXIF)
become searchable; ours are never read back as theirs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cli_helpers import mllmret
from PIL import Image
from test_sidecars import need_exiftool

from mllm_retrieval.library.store import Store
from mllm_retrieval.metadata.read import read_photo_text
from mllm_retrieval.metadata.xmp import merge

PACKET = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
          '<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" '
          'xmlns:lr="http://ns.adobe.com/lightroom/1.0/">'
          '<dc:subject><rdf:Bag>{subjects}</rdf:Bag></dc:subject>'
          '<lr:hierarchicalSubject><rdf:Bag><rdf:li>Places|Brittany</rdf:li></rdf:Bag></lr:hierarchicalSubject>'
          '<dc:title><rdf:Alt><rdf:li xml:lang="x-default">{title}</rdf:li></rdf:Alt></dc:title>'
          '</rdf:Description></rdf:RDF></x:xmpmeta>')


def packet(subjects: list[str], title: str = "") -> bytes:
    return PACKET.format(subjects="".join(f"<rdf:li>{s}</rdf:li>" for s in subjects), title=title).encode()


def photo(path: Path, xmp: bytes | None = None, description: str | None = None) -> Path:
    image = Image.new("RGB", (32, 24), (90, 120, 200))
    exif = Image.Exif()
    if description is not None:
        exif[0x010E] = description
    image.save(path, "JPEG", exif=exif, **({"xmp": xmp} if xmp else {}))
    return path


def test_a_sidecar_gives_the_persons_keywords_and_title_never_ours(tmp_path):
    image = photo(tmp_path / "coast.jpg")
    theirs = packet(["Lighthouse", "storm"], "Pointe du Raz")
    ours, _ = merge(theirs, ["dog", "sea"])  # what `tags write` leaves in the sidecar
    (tmp_path / "coast.jpg.xmp").write_bytes(ours)
    text = read_photo_text(image)
    assert set(text.keywords) == {"Lighthouse", "storm", "Brittany"}  # not dog, not sea
    assert text.title == "Pointe du Raz" and text.caption == "Pointe du Raz."
    assert text.sources == ("sidecar coast.jpg.xmp",)


def test_embedded_xmp_and_exif_description_but_not_a_cameras_filler(tmp_path):
    text = read_photo_text(photo(tmp_path / "a.jpg", packet(["harbour"]), "Boats at dawn in Concarneau"))
    assert text.keywords == ("harbour", "Brittany") and text.description == "Boats at dawn in Concarneau"
    assert set(text.sources) == {"embedded XMP", "EXIF"}
    assert read_photo_text(photo(tmp_path / "b.jpg", description="OLYMPUS DIGITAL CAMERA")).empty


def test_a_damaged_sidecar_is_ignored_and_an_unreadable_photo_is_an_image_error(tmp_path):
    from mllm_retrieval.errors import ImageError

    image = photo(tmp_path / "c.jpg", description="A red tram")
    (tmp_path / "c.jpg.xmp").write_bytes(b"<x:xmpmeta><unclosed")
    assert read_photo_text(image).description == "A red tram"
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(ImageError):
        read_photo_text(tmp_path / "broken.jpg")


def test_iptc_keywords_written_by_exiftool(tmp_path):
    image = photo(tmp_path / "d.jpg")
    subprocess.run([need_exiftool(), "-q", "-overwrite_original", "-IPTC:Keywords=alpaca",
                    "-IPTC:Keywords=andes", "-IPTC:Caption-Abstract=Alpacas grazing", str(image)], check=True)
    text = read_photo_text(image)
    assert set(text.keywords) == {"alpaca", "andes"} and text.description == "Alpacas grazing"


def test_tags_read_makes_them_searchable_resumes_and_stays_out_of_eval_by_default(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    photo(folder / "coast.jpg", packet(["lighthouse"], "Pointe du Raz"))
    photo(folder / "tram.jpg", description="A red tram in Lisbon")
    photo(folder / "plain.jpg")
    db = tmp_path / "lib.db"
    r = mllmret("tags", "read", folder, "-q", "--db", db)
    assert "read metadata of 3 images" in r.output
    hits = mllmret("search", "lighthouses", "--mode", "keyword", "--db", db).output
    assert "coast.jpg" in hits and "tram.jpg" not in hits
    assert "in photo metadata: lighthouses" in hits  # said as such, in the words typed
    [hit] = [json.loads(line) for line in
             mllmret("search", "lighthouse", "--mode", "keyword", "--json", "--db", db).stdout.splitlines()]
    assert hit["in_metadata"] == ["lighthouse"] and hit["text_in_photo"] == []
    assert "tram.jpg" in mllmret("search", "lisbon", "--mode", "keyword", "--db", db).output
    again = mllmret("tags", "read", folder, "-q", "--db", db)
    assert "read metadata of 0 images" in again.output and "3 already" in again.output
    with Store(db) as store:
        [(run_id, model, kind)] = store.run_models()
        assert kind == "metadata" and model == "xmp+iptc+exif"
    from mllm_retrieval.evaluation.datasets import load_coco
    from mllm_retrieval.evaluation.sources import EvalSourceError, db_sources

    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"images": [{"id": 1, "file_name": "coast.jpg"}],
                                  "categories": [{"id": 1, "name": "lighthouse"}], "annotations": []}))
    evalset = load_coco(labels)
    with Store(db) as store:
        with pytest.raises(EvalSourceError, match="no captions"):
            db_sources(store, evalset)  # a person's keywords are not a captioner's text
        [src] = db_sources(store, evalset, model="xmp+iptc+exif")
    assert [u.tags for u in src.units["1"]] == [("lighthouse", "Brittany")]


def test_export_and_import_keep_a_persons_metadata_a_metadata_run(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    photo(folder / "coast.jpg", packet(["lighthouse"], "Pointe du Raz"))
    mllmret("tags", "read", folder, "-q", "--db", tmp_path / "a.db")
    exported = tmp_path / "a.jsonl"
    mllmret("export", "-o", exported, "--db", tmp_path / "a.db")
    assert '"kind": "metadata"' in exported.read_text()
    mllmret("import", exported, "-q", "--db", tmp_path / "b.db")
    with Store(tmp_path / "b.db") as store:
        assert [kind for _, _, kind in store.run_models()] == ["metadata"]


def test_caption_reads_metadata_by_default_in_the_same_run_unless_no_metadata(tmp_path):
    from fakes import FakeCaptioner

    from mllm_retrieval.capture.captioners import register, unregister

    register("fake", lambda **kw: FakeCaptioner(**kw))
    try:
        folder = tmp_path / "photos"
        folder.mkdir()
        photo(folder / "coast.jpg", packet(["lighthouse"]))
        r = mllmret("caption", folder, "--backend", "fake", "-q", "--no-embed", "--db", tmp_path / "lib.db")
        assert "read metadata of 1 images" in r.output
        with Store(tmp_path / "lib.db") as store:
            assert sorted(kind for _, _, kind in store.run_models()) == ["caption", "metadata"]
            assert store.latest_captioned_run().backend == "fake"  # --like still captions with the model
        hits = mllmret("search", "lighthouse", "--mode", "keyword", "--db", tmp_path / "lib.db").stdout
        assert "coast.jpg" in hits and "in photo metadata: lighthouse" in hits

        off = mllmret("caption", folder, "--backend", "fake", "--no-metadata", "-q", "--no-embed",
                      "--db", tmp_path / "off.db")
        assert "metadata" not in off.output
        with Store(tmp_path / "off.db") as store:
            assert [kind for _, _, kind in store.run_models()] == ["caption"]
    finally:
        unregister("fake")
