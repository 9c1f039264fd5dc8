import io
import json

import pytest
from fakes import FakeCaptioner

from mllm_retrieval.capture.pipeline import caption_paths
from mllm_retrieval.capture.prompts import load_prompt
from mllm_retrieval.errors import ImportFormatError
from mllm_retrieval.library.jsonl import export_jsonl, import_jsonl
from mllm_retrieval.library.store import Store
from mllm_retrieval.search.searcher import search


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def export_text(store):
    out = io.StringIO()
    export_jsonl(store, out)
    return out.getvalue()


def test_export_then_import_round_trips_unchanged(store, photos, tmp_path):
    caption_paths(store, [photos], FakeCaptioner(), load_prompt(), progress=False)
    first = export_text(store)
    assert len(first.splitlines()) == 20
    (tmp_path / "export.jsonl").write_text(first)
    with Store(tmp_path / "copy.db") as copy:
        summary = import_jsonl(copy, tmp_path / "export.jsonl", progress=False)
        assert (summary.added, summary.images, summary.skipped) == (20, 4, [])
        assert export_text(copy) == first
        again = import_jsonl(copy, tmp_path / "export.jsonl", progress=False)
        assert (again.added, again.already_present) == (0, 20)


def test_import_published_captions_without_the_images(store, tmp_path):
    src = write(tmp_path / "llava.jsonl", [
        {"image_id": 350289, "file_name": "COCO_val2014_000000350289.jpg", "model": "llava-v1.5-7b",
         "prompt": "Please describe this image in detail.",
         "text": "The image captures a beach scene with two men walking along the shore."},
        {"image_id": 2239, "file_name": "000000002239.jpg", "model": "llava-v1.5-7b",
         "prompt": "Please describe this image in detail.", "text": "A young girl holding a tennis racket."},
        {"image_id": 2239, "file_name": "000000002239.jpg", "model": "minigpt4",
         "text": "A girl plays tennis."},
    ])
    s = import_jsonl(store, src, progress=False)
    assert (s.added, s.images, len(s.runs)) == (3, 2, 2)
    [hit] = search(store, "tennis racket")
    assert hit.external_id == "2239" and hit.matched == ("tennis", "racket")


def test_file_name_resolves_against_an_images_folder(store, photos, tmp_path):
    src = write(tmp_path / "c.jsonl", [{"file_name": "red.jpg", "text": "Tags: red square"}])
    import_jsonl(store, src, images_dir=photos, progress=False)
    row = store.db.execute("SELECT path, sha256, width, status FROM images").fetchone()
    assert row[0].endswith("red.jpg") and row[1] and row[2] == 64 and row[3] == "ok"


def test_tiles_and_explicit_tags(store, tmp_path):
    src = write(tmp_path / "t.jsonl", [
        {"image_id": 1, "text": "A street.", "width": 100, "height": 80},
        {"image_id": 1, "box": [50, 0, 100, 40], "tags": ["pigeon"], "caption": "A pigeon."},
    ])
    import_jsonl(store, src, progress=False)
    [hit] = search(store, "pigeon")
    assert hit.tile_key == "50,0,100,40"


def test_bad_lines_are_skipped_with_line_numbers(store, tmp_path):
    src = write(tmp_path / "bad.jsonl", [
        {"image_id": 1, "text": "ok"},
        {"text": "names no image"},
        {"image_id": 2},
        {"image_id": 3, "text": "x", "box": [5, 5, 1, 1]},
    ])
    s = import_jsonl(store, src, progress=False)
    assert s.added == 1
    assert [k.path.rsplit(":", 1)[1] for k in s.skipped] == ["2", "3", "4"]


def test_malformed_json_lines_are_skipped_and_reported(store, tmp_path):
    src = tmp_path / "broken.jsonl"
    src.write_text('{"image_id": 1, "text": "a cat"}\n{"image_id": 2, "text": \n[1, 2]\n')
    s = import_jsonl(store, src, progress=False)
    assert s.added == 1
    assert [(k.path.rsplit(":", 1)[1], k.reason.split(" (")[0]) for k in s.skipped] == [
        ("2", "not valid JSON"), ("3", "expected a JSON object per line")]
    with pytest.raises(ImportFormatError, match="cannot read"):
        import_jsonl(store, tmp_path / "missing.jsonl", progress=False)
