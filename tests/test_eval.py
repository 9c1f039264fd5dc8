"""`mllmret eval`: sources, documents and ablations, hand-computed AP, outputs, and a real-data smoke test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mllm_retrieval.capture.parsing import Parsed
from mllm_retrieval.capture.tiling import Box
from mllm_retrieval.cli import app
from mllm_retrieval.evaluation.datasets import load_coco
from mllm_retrieval.evaluation.runner import (
    EvalConfig,
    EvalConfigError,
    Variant,
    documents,
    evaluate_condition,
    run_eval,
    variants,
)
from mllm_retrieval.evaluation.sources import (
    HUMAN_LABEL,
    EvalSourceError,
    db_sources,
    human_source,
    jsonl_sources,
    parse_spec,
)
from mllm_retrieval.library.store import Store

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
runner = CliRunner()

# Six images; cat is relevant to 1 and 2 (5 has only a crowd cat), dog to 2, 3 and 6 (6 has no caption).
CAPTIONS = {
    1: "a cat sits",
    2: "a dog and a cat play in the big green garden",
    3: "a dog running",
    4: "cat cat cat",
    5: "a bird in the sky",
}


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def tiny(tmp_path) -> tuple[Path, Path]:
    """A hand-made COCO-format set (labels with a crowd region, one class without images) and captions."""
    labels = {
        "images": [{"id": i, "file_name": f"img{i}.jpg"} for i in range(1, 7)],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "cow"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 1, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 2, "iscrowd": 0},
            {"id": 4, "image_id": 3, "category_id": 2, "iscrowd": 0},
            {"id": 5, "image_id": 5, "category_id": 1, "iscrowd": 1},
            {"id": 6, "image_id": 6, "category_id": 2},
        ],
    }
    captions = {"annotations": [{"id": i, "image_id": i, "caption": c} for i, c in CAPTIONS.items()]}
    return write_json(tmp_path / "labels.json", labels), write_json(tmp_path / "captions.json", captions)


def test_hand_computed_ap_coverage_and_ties(tiny):
    labels, captions = tiny
    evalset = load_coco(labels, captions)
    c = evaluate_condition(evalset, human_source(evalset), Variant(), expand=False)
    rows = {r.result.name: r for r in c.rows}
    # cat: BM25 ranks 4 ("cat cat cat", irrelevant), 1, 2; then 3, 5, 6 tie at -inf.
    # AP = (1/2 + 2/3) / 2 = 7/12.
    assert rows["cat"].result.ap == pytest.approx(7 / 12)
    assert rows["cat"].result.prevalence == pytest.approx(2 / 6)
    assert (rows["cat"].no_match, rows["cat"].relevant_no_match) == (3, 0)
    # dog: 2 and 3 match (both relevant); image 6 has no text and sits in the -inf block of 4 images
    # with 1, 4, 5, where precision ends at 3/6. AP = (1 + 1 + 1/2) / 3.
    assert rows["dog"].result.ap == pytest.approx(2.5 / 3)
    assert (rows["dog"].no_match, rows["dog"].relevant_no_match) == (4, 1)
    assert np.isnan(rows["cow"].result.ap) and c.summary["skipped"] == ["cow"]
    assert c.summary["macro_ap"] == pytest.approx((7 / 12 + 2.5 / 3) / 2)
    assert (c.n_images, c.n_with_text, c.n_with_document) == (6, 5, 5)
    assert c.coverage == pytest.approx(5 / 6) and c.label == HUMAN_LABEL
    assert c.missed_relevant_share == pytest.approx(1 / 5)


def test_ap_agrees_with_sklearn(tiny):
    from sklearn.metrics import average_precision_score

    labels, captions = tiny
    evalset = load_coco(labels, captions)
    c = evaluate_condition(evalset, human_source(evalset), Variant(), expand=False)
    for r in c.rows[:2]:
        relevant = [r.result.name in evalset.labels[i] for i in evalset.image_ids]
        ranks = [{"1": 2.0, "2": 1.0, "4": 3.0}, {"2": 2.0, "3": 2.0}][c.rows.index(r)]
        scores = [ranks.get(i, -1.0) for i in evalset.image_ids]  # BM25 order, -inf as one low tie
        assert r.result.ap == pytest.approx(average_precision_score(relevant, scores))


def test_expand_is_its_own_condition(tiny):
    labels, captions = tiny
    cfg = EvalConfig(annotations=labels, captions=captions, expand=True, progress=False)
    report = run_eval(cfg)
    plain, expanded = report.conditions
    assert not plain.expand and expanded.expand and "+synonyms" in expanded.label
    assert "+synonyms" not in plain.label
    assert report.expanded_queries["dog"] == "dog puppy" and report.queries["dog"] == "dog"


def make_tiled_store(path: Path) -> Path:
    """A database with tiles and tags: image 1 by external id, image 2 by file name, one stranger."""
    with Store(path) as store:
        run = store.get_or_create_run("fake", "fake-model", {})
        one = store.add_image(None, "somewhere/else.jpg", 20, 20, external_id="1")
        two = store.add_image("ab" * 32, "/photos/img2.jpg", 20, 20)
        other = store.add_image("cd" * 32, "/photos/unknown.jpg", 20, 20)
        for image, full, tile in (
            (one, (("cat",), "A room."), (("sofa",), "A dog toy.")),
            (two, (("dog",), "A garden."), (("cat",), "A cat.")),
            (other, (("cat",), "A cat."), (("cat",), "A cat.")),
        ):
            tiles = store.ensure_tiles(image, [None, Box(0, 0, 10, 10)], 20, 20)
            store.add_captions(run.id, [(tiles[0][0], "raw", Parsed(*full), None),
                                        (tiles[1][0], "raw", Parsed(*tile), None)])
    return path


def test_db_source_and_ablation_documents(tiny, tmp_path):
    labels, captions = tiny
    evalset = load_coco(labels, captions)
    with Store(make_tiled_store(tmp_path / "lib.db")) as store:
        [src] = db_sources(store, evalset)
    assert set(src.units) == {"1", "2"} and src.has_tiles and src.has_tags
    assert any("1 captioned images in the database are not in the evaluation set" in n for n in src.notes)
    docs = {v: documents(src, v) for v in variants(src, ablate=True)}
    assert len(docs) == 5
    by_image = {v: dict(zip(*d, strict=True)) for v, d in docs.items() if v.unit == "image"}
    assert by_image[Variant()]["1"] == ["cat", "room", "sofa", "dog", "toy"]
    assert by_image[Variant(view="full")]["1"] == ["cat", "room"]
    assert by_image[Variant(fields="tags")]["1"] == ["cat", "sofa"]
    assert by_image[Variant(fields="caption")]["1"] == ["room", "dog", "toy"]
    owners, tile_docs = docs[Variant(unit="tile")]
    assert owners == ["1", "1", "2", "2"] and tile_docs[0] == ["cat", "room"]
    assert variants(src, ablate=False) == [Variant()]


def test_ocr_text_joins_the_caption_models_condition(tiny, tmp_path):
    labels, captions = tiny
    evalset = load_coco(labels, captions)
    with Store(make_tiled_store(tmp_path / "lib.db")) as store:
        ocr = store.get_or_create_run("rapidocr", "ocr-model", {}, kind="ocr")
        [(tile, _)] = store.ensure_tiles(2, [None], 20, 20)  # img2's whole image
        store.add_captions(ocr.id, [(tile, '{"lines": []}', Parsed((), "COW FARM"), None)])
        [src] = db_sources(store, evalset)  # two models, yet one condition: OCR is not a caption model
        [alone] = db_sources(store, evalset, run=ocr.id)
    assert "fake-model + OCR" in src.label
    units = [(u.tile_key, u.tags, u.caption, u.kind) for u in src.units["2"]]
    assert ("full", (), "COW FARM", "ocr") in units
    assert set(alone.units) == {"2"} and "+ OCR" not in alone.label


def test_best_tile_scores_are_the_max_over_tiles(tiny, tmp_path):
    labels, captions = tiny
    evalset = load_coco(labels, captions)
    with Store(make_tiled_store(tmp_path / "lib.db")) as store:
        [src] = db_sources(store, evalset)
    image_doc = evaluate_condition(evalset, src, Variant(), expand=False)
    best_tile = evaluate_condition(evalset, src, Variant(unit="tile"), expand=False)
    full_only = evaluate_condition(evalset, src, Variant(view="full"), expand=False)
    assert "best tile" in best_tile.label and "full image only" in full_only.label
    assert best_tile.n_documents == 4 and image_doc.n_documents == 2
    # dog: full-only text mentions dog only for image 2, with tiles image 1 ("A dog toy.") matches too.
    dog = [c.rows[1] for c in (image_doc, full_only)]
    assert dog[0].no_match == 4 and dog[1].no_match == 5


@pytest.fixture
def two_colour_photos(tmp_path) -> tuple[Path, Path]:
    """Three PNGs and their labels; b.png is red overall but its right tiles are green."""
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (64, 64), (255, 0, 0)).save(folder / "a.png")
    b = Image.new("RGB", (64, 64), (255, 0, 0))
    b.paste((0, 255, 0), (40, 0, 64, 64))
    b.save(folder / "b.png")
    Image.new("RGB", (64, 64), (0, 0, 255)).save(folder / "c.png")
    labels = write_json(tmp_path / "colours.json", {
        "images": [{"id": n, "file_name": f} for n, f in enumerate(["a.png", "b.png", "c.png"], 1)],
        "categories": [{"id": 1, "name": "red"}, {"id": 2, "name": "green"}, {"id": 3, "name": "blue"}],
        "annotations": [{"id": n, "image_id": i, "category_id": c}
                        for n, (i, c) in enumerate([(1, 1), (2, 1), (2, 2), (3, 3)], 1)],
    })
    return folder, labels


def test_db_source_from_the_caption_pipeline(two_colour_photos, tmp_path):
    from fakes import FakeCaptioner

    from mllm_retrieval.capture.pipeline import caption_paths
    from mllm_retrieval.capture.prompts import load_prompt

    folder, labels = two_colour_photos
    db = tmp_path / "pipe.db"
    with Store(db) as store:
        caption_paths(store, [folder], FakeCaptioner(), load_prompt("tags_caption"), progress=False)
    report = run_eval(EvalConfig(annotations=labels, sources=["db"], db=db, ablate=True, progress=False))
    by_variant = {c.variant: c for c in report.conditions}
    assert len(report.conditions) == 5 and all(c.coverage == 1.0 for c in report.conditions)
    green = {v: c.rows[1].result.ap for v, c in by_variant.items()}
    assert green[Variant()] == 1.0 and green[Variant(unit="tile")] == 1.0
    assert green[Variant(view="full")] == pytest.approx(1 / 3)  # no full image says green: all tie
    assert by_variant[Variant()].summary["macro_ap"] == 1.0


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n", encoding="utf-8")
    return path


def test_jsonl_source_models_matching_and_notes(tiny, tmp_path):
    labels, captions = tiny
    evalset = load_coco(labels, captions)
    path = write_jsonl(tmp_path / "caps.jsonl", [
        {"image_id": 1, "model": "m1", "text": "A cat."},
        {"file_name": "img3.jpg", "model": "m1", "text": "A dog."},
        {"path": "/x/img2.jpg", "model": "m1", "tags": ["dog", "cat"], "caption": "Pets.", "tile": "0,0,5,5"},
        {"image_id": 99, "model": "m1", "text": "A stranger."},
        {"image_id": 1, "model": "m2", "text": "A cow."},
    ])
    with pytest.raises(EvalSourceError, match="holds 2 models .*--per-model"):
        jsonl_sources(path, evalset)
    with pytest.raises(EvalSourceError, match="no text of model 'm3'"):
        jsonl_sources(path, evalset, model="m3")
    [m1] = jsonl_sources(path, evalset, model="m1")
    assert set(m1.units) == {"1", "2", "3"} and m1.has_tiles and m1.has_tags
    assert any("1 lines skipped" in n for n in m1.notes)
    assert any("1 lines name images outside" in n for n in m1.notes)
    both = jsonl_sources(path, evalset, per_model=True)
    assert [s.label for s in both] == ["jsonl:caps.jsonl [m1]", "jsonl:caps.jsonl [m2]"]
    assert set(both[1].units) == {"1"}
    assert parse_spec("jsonl:" + str(path)) == ("jsonl", path)
    with pytest.raises(EvalSourceError, match="unknown --source"):
        parse_spec("clip")


def test_vlm_eval_set_is_the_images_with_text(tmp_path):
    root = tmp_path / "data"
    (root / "vlm_captions").mkdir(parents=True)
    write_json(root / "vlm_captions" / "labels.json", {
        "images": [{"id": i, "file_name": f"COCO_{i}.jpg"} for i in (1, 2, 3, 4)],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [{"id": n, "image_id": i, "category_id": 1} for n, i in ((1, 1), (2, 3))],
    })
    path = write_jsonl(root / "vlm_captions" / "x.jsonl", [
        {"image_id": 1, "model": "a", "text": "a cat"}, {"image_id": 2, "model": "a", "text": "a sofa"},
        {"image_id": 3, "model": "b", "text": "a cat"}, {"image_id": 7, "model": "a", "text": "no labels"},
    ])
    with pytest.raises(EvalConfigError, match="give --source jsonl:PATH .*x.jsonl"):
        run_eval(EvalConfig(dataset="vlm", data_dir=root, progress=False))
    own = run_eval(EvalConfig(dataset="vlm", data_dir=root, sources=[f"jsonl:{path}"], model="a",
                              progress=False))
    assert own.image_ids == ("1", "2") and "the 2 images of labels.json" in own.description
    assert "1 images with text have no labels and are not evaluated" in own.description
    assert any("1 lines name images outside the evaluation set" in n for n in own.conditions[0].notes)
    both = run_eval(EvalConfig(dataset="vlm", data_dir=root, sources=[f"jsonl:{path}"], per_model=True,
                               progress=False))
    assert both.image_ids == ("1", "2", "3")
    assert [c.n_with_document for c in both.conditions] == [2, 1]  # model b: 1 of 3, the rest -inf


def test_voc_root_with_a_jsonl_source(tmp_path):
    root = tmp_path / "VOC"
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "val.txt").write_text("2008_000001\n2008_000002\n")
    for name, cls in (("2008_000001", "sofa"), ("2008_000002", "cat")):
        (root / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><object><name>{cls}</name>"
            "<difficult>0</difficult></object></annotation>")
    path = write_jsonl(tmp_path / "v.jsonl", [{"file_name": "2008_000001.jpg", "text": "a couch"},
                                             {"file_name": "2008_000002.jpg", "text": "a cat"}])
    report = run_eval(EvalConfig(voc_root=root, sources=[f"jsonl:{path}"], expand=True, progress=False))
    sofa = [c.rows[report.classes.index("sofa")].result.ap for c in report.conditions]
    assert sofa == [pytest.approx(0.5), 1.0]  # "couch" only found by the synonym condition
    with pytest.raises(EvalSourceError, match="no human captions"):
        run_eval(EvalConfig(voc_root=root, sources=["human"], progress=False))


def cli(*args, ok: bool = True):
    result = runner.invoke(app, ["eval", *map(str, args)])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def test_cli_writes_json_plots_and_markdown(tiny, tmp_path):
    labels, captions = tiny
    jsonl = write_jsonl(tmp_path / "caps.jsonl", [{"image_id": 2, "model": "m1", "text": "A dog and a cat."}])
    out, md = tmp_path / "out", tmp_path / "RESULTS.md"
    r = cli("--annotations", labels, "--captions", captions, "--source", "human", "--source",
            f"jsonl:{jsonl}", "--expand", "--out", out, "--results-md", md, "-q")
    assert "human captions (upper bound)" in r.stdout and "random AP" in r.stdout
    data = json.loads((out / "results.json").read_text())
    assert len(data["conditions"]) == 4 and data["evalset"]["n_images"] == 6
    cat = data["conditions"][0]["classes"][0]
    assert cat["name"] == "cat" and cat["ap"] == pytest.approx(7 / 12) and cat["no_match"] == 3
    assert data["conditions"][2]["coverage"] == pytest.approx(1 / 6)
    assert set(data["data_files_sha256"]) == {str(labels), str(captions), str(jsonl)}
    assert data["versions"]["numpy"] == np.__version__ and data["command"].startswith("mllmret eval ")
    for png in ("pr_curves.png", "pr_per_class.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = md.read_text()
    assert text.startswith("# Evaluation results") and "GENERATED" in text
    assert "`mllmret eval --annotations" in text and "0.583" in text and "| random AP (prevalence) |" in text
    cli("--annotations", labels, "--captions", captions, "--out", out, "--results-md", md, "-q")
    cli("--annotations", labels, "--captions", captions, "--out", out, "--results-md", md, "-q")
    assert md.read_text().count("<!-- BEGIN mllmret-eval") == 2  # the rerun replaced its own section


def test_cli_without_out_writes_into_the_data_dir_and_says_where(tiny, tmp_path, monkeypatch):
    labels, captions = tiny
    monkeypatch.chdir(tmp_path)
    r = cli("--annotations", labels, "--captions", captions, "-q")
    results = tmp_path / "data" / "eval" / "retrieval-custom" / "results.json"
    assert json.loads(results.read_text())["evalset"]["n_images"] == 6
    assert not (tmp_path / "eval").exists(), "nothing written relative to the current folder"
    assert f"wrote {results}" in r.stderr


def test_cli_errors_are_one_line(tiny, tmp_path):
    labels, captions = tiny
    tiny_set = ("--annotations", labels, "--captions", captions)
    r = cli("--out", tmp_path, ok=False)
    assert r.exit_code == 1 and "Error: name an evaluation set" in r.output
    r = cli(*tiny_set, "--source", "db", "--db", tmp_path / "no.db", ok=False)
    assert r.exit_code == 1 and "not found" in r.output
    r = cli(*tiny_set, "--baseline", "clip", "--out", tmp_path, ok=False)
    assert r.exit_code == 1 and "--baseline clip needs the image files: give --images DIR" in r.output
    (tmp_path / "RESULTS.md").write_text("hand-written notes\n")
    r = cli(*tiny_set, "--out", tmp_path / "o", "--results-md", tmp_path / "RESULTS.md", ok=False)
    assert r.exit_code == 1 and "was not written by `mllmret eval`" in r.output


def test_clip_baseline_condition(tiny, tmp_path, monkeypatch):
    import mllm_retrieval.evaluation.clip_baseline as clip

    labels, captions = tiny
    images = tmp_path / "images"
    images.mkdir()
    for i in (1, 2, 3):
        Image.new("RGB", (8, 8)).save(images / f"img{i}.jpg")
    seen = {}

    def fake(paths, queries, model, device="auto", batch_size=16, progress=True):
        seen.update(paths=[p.name for p in paths], model=model)
        return {k: np.linspace(0.9, 0.1, len(paths)) if k == "cat" else np.zeros(len(paths)) for k in queries}

    monkeypatch.setattr(clip, "clip_scores", fake)
    report = run_eval(EvalConfig(annotations=labels, captions=captions, baseline="clip", images=images,
                                 clip_model="tiny", progress=False))
    base = report.conditions[-1]
    assert seen == {"paths": ["img1.jpg", "img2.jpg", "img3.jpg"], "model": "tiny"}
    assert base.label.startswith("CLIP baseline [tiny]") and base.n_with_document == 3
    assert base.rows[0].result.ap == 1.0 and base.rows[0].no_match == 3
    assert any("3 evaluation images have no file" in n for n in base.notes)


@pytest.mark.skipif(not (SHARED / "voc_sentences" / "labels.json").is_file(), reason="real VOC data absent")
def test_real_voc_sentences_beat_random():
    report = run_eval(EvalConfig(dataset="voc", data_dir=SHARED, progress=False))
    [c] = report.conditions
    assert len(report.image_ids) == 792 and c.coverage == 1.0 and c.label == HUMAN_LABEL
    assert c.summary["n_evaluated"] == 20
    assert c.summary["macro_ap"] > c.summary["macro_prevalence"] + 0.3
    assert c.micro_ap > c.micro_prevalence + 0.3
    assert sum(r.result.ap > r.result.prevalence for r in c.rows) >= 19


def test_cli_clip_baseline_with_a_tiny_clip(tiny, tmp_path):
    from tiny_clip import build_tiny_clip

    labels, captions = tiny
    model = build_tiny_clip(tmp_path / "clip")
    images = tmp_path / "images"
    images.mkdir()
    for i in (1, 2, 4):
        Image.new("RGB", (40, 30), (60 * i, 20, 200)).save(images / f"img{i}.jpg")
    (images / "img3.jpg").write_bytes(b"not a jpeg")
    cli("--annotations", labels, "--captions", captions, "--baseline", "clip", "--images", images,
        "--clip-model", model, "--device", "cpu", "--out", tmp_path / "out", "-q")
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    clip = data["conditions"][-1]
    assert clip["source"].startswith("CLIP baseline") and clip["n_images_with_document"] == 3
    assert clip["coverage"] == pytest.approx(3 / 6) and clip["classes"][0]["no_match"] == 3
