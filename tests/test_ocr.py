"""OCR: the stage (resume, dedupe, bad input, its own run), tokens of run-together words, search, export."""

import io
import json
import os
import shutil
from pathlib import Path

import pytest
from cli_helpers import mllmret
from fakes import FakeCaptioner, FakeOcr
from PIL import Image, ImageDraw, ImageFont

from mllm_retrieval.capture import ocr
from mllm_retrieval.capture.ocr import misread_words, ocr_tokens, split_run_together
from mllm_retrieval.capture.ocr_pipeline import ocr_paths
from mllm_retrieval.capture.pipeline import CaptionSettings, caption_paths
from mllm_retrieval.capture.prompts import load_prompt
from mllm_retrieval.library.jsonl import export_jsonl, import_jsonl
from mllm_retrieval.library.store import Store
from mllm_retrieval.search.searcher import Searcher
from mllm_retrieval.search.text import stem

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
CJK_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")


def skip_or_fail(reason: str) -> None:
    """Skip locally; in CI (CI=true, where .ci/run installs the [ocr] extra and fonts) fail."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must run the OCR tests")
    pytest.skip(reason)


def test_ocr_stage_stores_lines_in_its_own_run_and_resumes(store, photos):
    engine = FakeOcr()
    s = ocr_paths(store, [photos], engine, progress=False)
    assert (s.images, s.captioned_images, engine.calls) == (4, 4, 4)
    assert store.run(s.run_id).kind == "ocr"
    raw, caption = store.db.execute("SELECT raw, caption FROM captions WHERE caption LIKE 'RED%'").fetchone()
    assert caption == "REDSHOP open daily"  # the unsure line is stored, not searchable
    assert [line["text"] for line in json.loads(raw)["lines"]] == ["REDSHOP open daily", "zebra"]
    assert json.loads(raw)["lines"][0]["box"] == [[1, 2], [30, 2], [30, 12], [1, 12]]
    again = ocr_paths(store, [photos], engine, progress=False)
    assert (again.run_id, again.captioned_images, again.already_done, engine.calls) == (s.run_id, 0, 4, 4)


def test_ocr_is_added_to_a_captioned_library_without_captioning_again(store, photos):
    captioner = FakeCaptioner()
    caption_paths(store, [photos], captioner, load_prompt(), CaptionSettings(grid="none"), progress=False)
    calls = len(captioner.calls)
    s = ocr_paths(store, [photos], FakeOcr(), progress=False)
    assert len(captioner.calls) == calls and s.captioned_images == 4
    kinds = [r["kind"] for r in store.stats()["runs"]]
    assert kinds == ["caption", "ocr"]


def test_duplicates_and_bad_files_are_handled_as_for_captions(store, photos):
    shutil.copy(photos / "red.jpg", photos / "red-copy.jpg")
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    engine = FakeOcr()
    s = ocr_paths(store, [photos], engine, progress=False)
    assert (s.duplicates, engine.calls) == (1, 4)
    assert [Path(f.path).name for f in s.failed] == ["broken.jpg"]


def test_search_finds_run_together_ocr_words_and_says_text_in_photo(store, photos):
    caption_paths(store, [photos], FakeCaptioner(), load_prompt(), CaptionSettings(grid="none"),
                  progress=False)
    ocr_paths(store, [photos], FakeOcr(), progress=False)
    searcher = Searcher(store, persist=False)
    [hit] = searcher.search("shop red", k=1)
    assert hit.in_photo == ("shop", "red") and hit.to_dict()["text_in_photo"] == ["shop", "red"]
    assert searcher.search("zebra") == []  # below the confidence threshold
    assert [r.path.endswith("blue.webp") for r in searcher.search('"open daily" blueshop', k=1)] == [True]
    plain = searcher.search("tile", k=1)[0]  # a caption word: not text in the photo
    assert plain.in_photo == ()


def test_export_and_import_carry_ocr_rows(store, photos, tmp_path):
    ocr_paths(store, [photos], FakeOcr(), progress=False)
    out = io.StringIO()
    assert export_jsonl(store, out) == 4
    first = json.loads(out.getvalue().splitlines()[0])
    assert first["kind"] == "ocr" and first["lines"][1] == {
        "text": "zebra", "box": [[1, 2], [30, 2], [30, 12], [1, 12]], "confidence": 0.3}
    path = tmp_path / "out.jsonl"
    path.write_text(out.getvalue())
    with Store(memory=True) as other:
        s = import_jsonl(other, path, progress=False)
        assert (s.added, s.skipped) == (4, [])
        again = io.StringIO()
        export_jsonl(other, again)
        assert again.getvalue() == out.getvalue()
        assert Searcher(other, persist=False).search("shop")[0].in_photo == ("shop",)


def test_import_refuses_bad_ocr_lines(store, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"image_id": "x1", "kind": "ocr", "lines": [{"text": "hi"}]}) + "\n")
    s = import_jsonl(store, path, progress=False)
    assert s.added == 0 and "bad \"lines\"" in s.skipped[0].reason


@pytest.mark.parametrize("token,parts", [
    ("freshfruit", ["fresh", "fruit"]), ("niceairport", ["nice", "airport"]),
    ("makepovertyhistory", ["make", "poverty", "history"]),
    ("bridgestonewmia", ["bridgestone", "wmi"]), ("3motorcyclelmit", ["motorcycle"]),  # scraps dropped
    ("airport", []), ("football", []), ("stop", []), ("marlboro", []),  # one word: left whole
])
def test_run_together_words_are_split(token, parts):
    pytest.importorskip("wordninja")
    assert split_run_together(token) == [stem(w) for w in parts]


def test_ocr_tokens_keep_the_whole_token_then_its_parts():
    pytest.importorskip("wordninja")
    assert ocr_tokens("FRESHFRUIT market\nSTOP") == ["freshfruit", "fresh", "fruit", "market", "stop"]


@pytest.mark.parametrize("word,found", [
    ("niceaurport", ["airport"]), ("rgbinson", ["robinson"]), ("stadiun", ["stadium"]),  # one letter misread
    ("airport", []), ("robinson", []),  # spelled right
    ("makepovertyhistory", []), ("bridgestonewmia", []),  # parts that are words are not read again
    ("omb", []), ("hhg", []), ("uosoar", []),  # too short, or no common word one letter away
])
def test_misread_words_are_corrected_to_a_common_word_one_letter_away(word, found):
    pytest.importorskip("wordninja")
    assert misread_words(word) == [stem(w) for w in found]


def test_run_together_words_are_split_before_stemming():
    pytest.importorskip("wordninja")  # the stem of ricatourism is ricatour: rica + tour, not tourism
    assert ocr_tokens("RICATOURISM VISITSTROKE") == ["ricatour", "rica", "tourism", "visitstrok", "visit",
                                                      "stroke"]


def test_ocr_tokens_add_the_word_a_misread_letter_hides():
    pytest.importorskip("wordninja")
    assert "airport" in ocr_tokens("NICEAURPORT")
    assert "airport" not in ocr_tokens("NICEAURPORT", fuzzy=False)


def test_missing_extra_fails_with_one_line_naming_it(monkeypatch, tmp_path, photos):
    import builtins

    real_import = builtins.__import__

    def no_rapidocr(name, *args, **kwargs):
        if name.startswith("rapidocr_onnxruntime"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_rapidocr)
    result = mllmret("caption", photos, "--ocr-only", "--db", tmp_path / "x.db", ok=False)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: {ocr.EXTRA_HINT}"]


def _sign(path: Path, lines: list[tuple[str, Path, int]], size=(640, 360)) -> None:
    image = Image.new("RGB", size, (70, 90, 110))
    draw = ImageDraw.Draw(image)
    y = 30
    for text, font, px in lines:
        draw.text((40, y), text, font=ImageFont.truetype(str(font), px), fill=(250, 250, 240))
        y += int(px * 1.8)
    image.save(path)


def test_rapidocr_reads_english_run_together_and_chinese_text_end_to_end(tmp_path):
    try:
        ocr.OcrEngine()
    except Exception as e:  # the [ocr] extra is missing
        skip_or_fail(str(e))
    if not FONT.exists() or not CJK_FONT.exists():
        skip_or_fail("fonts-dejavu / fonts-noto-cjk are not installed")
    folder = tmp_path / "signs"
    folder.mkdir()
    _sign(folder / "bakery.png", [("FRESHFRUIT", FONT, 48), ("Bakery Street", FONT, 40)])
    _sign(folder / "library.png", [("北京大学图书馆", CJK_FONT, 48)])
    _sign(folder / "blank.png", [])
    db = tmp_path / "lib.db"
    mllmret("caption", folder, "--ocr-only", "--quiet", "--db", db)
    with Store(db) as store:
        [run] = store.stats()["runs"]
        assert run["kind"] == "ocr" and run["backend"] == "rapidocr" and "PP-OCRv4" in run["model"]
        searcher = Searcher(store, persist=False)
        assert [Path(r.path).name for r in searcher.search("fruit")] == ["bakery.png"]
        assert [Path(r.path).name for r in searcher.search('"bakery street"')] == ["bakery.png"]
        assert [Path(r.path).name for r in searcher.search("大学")] == ["library.png"]
        boxes = [json.loads(raw)["lines"] for (raw,) in store.db.execute("SELECT raw FROM captions")]
    assert all(0 <= x <= 640 and 0 <= y <= 360 for lines in boxes for ln in lines for x, y in ln["box"])
    # read with two box widths, a line read the same twice is stored once
    assert all(len({ln["text"] for ln in lines}) == len(lines) for lines in boxes)
    out = mllmret("search", "fruit", "--mode", "keyword", "--db", db).output
    assert "bakery.png" in out and "text in photo: fruit" in out


def test_a_second_unclip_ratio_reuses_the_detection_of_the_same_image():
    np = pytest.importorskip("numpy")
    calls = []
    infer = ocr._remember_last(lambda x: calls.append(x.sum()) or x.sum())
    a, b = np.ones((2, 3), dtype=np.float32), np.zeros((2, 3), dtype=np.float32)
    assert [infer(a), infer(a.copy()), infer(b), infer(a)] == [6, 6, 0, 6]
    assert calls == [6, 0, 6]


def test_image_detail_lists_read_lines_with_boxes_for_the_page(store, photos):
    from mllm_retrieval.library.details import image_detail

    ocr_paths(store, [photos / "red.jpg"], FakeOcr(), progress=False)
    [caption] = image_detail(store, 1)["tiles"][0]["captions"]
    assert caption["kind"] == "ocr" and caption["lines"] == [
        {"text": "REDSHOP open daily", "confidence": 0.97, "searchable": True, "box": [1, 2, 30, 12]},
        {"text": "zebra", "confidence": 0.3, "searchable": False, "box": [1, 2, 30, 12]}]


def test_ocr_grid_reads_tiles_too_with_boxes_in_the_whole_photo(store, photos):
    engine = FakeOcr()
    s = ocr_paths(store, [photos / "red.jpg"], engine, progress=False, grid="2x2")
    assert (s.captioned_images, s.captioned_tiles, engine.calls) == (1, 5, 5)
    boxes = {key: json.loads(raw)["lines"][0]["box"][0] for key, raw in store.db.execute(
        "SELECT t.key, c.raw FROM captions c JOIN tiles t ON t.id = c.tile_id")}
    assert boxes == {"full": [1, 2], "0,0,32,24": [1, 2], "32,0,64,24": [33, 2], "0,24,32,48": [1, 26],
                     "32,24,64,48": [33, 26]}  # the fake reads at (1, 2) of what it is shown
    again = ocr_paths(store, [photos / "red.jpg"], engine, progress=False, grid="2x2")
    assert (again.captioned_tiles, again.already_done, engine.calls) == (0, 1, 5)


def test_a_bad_grid_or_path_makes_no_ocr_run(tmp_path, store):
    from types import SimpleNamespace

    from mllm_retrieval.capture.ocr_pipeline import ocr_paths
    from mllm_retrieval.errors import MllmretError

    engine = SimpleNamespace(backend="rapidocr", model_id="m", params=dict)
    with pytest.raises(MllmretError):
        ocr_paths(store, [tmp_path], engine, grid="4y4", progress=False)
    with pytest.raises(MllmretError):
        ocr_paths(store, [tmp_path / "mistyped"], engine, progress=False)
    assert store.run_models() == []
