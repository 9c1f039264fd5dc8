"""Evaluation-set loaders: COCO json, COCO-style image-level labels, VOC XML, class-name queries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mllm_retrieval.errors import MllmretError
from mllm_retrieval.evaluation.datasets import (
    COCO_CLASSES,
    QUERY_NAMES,
    SYNONYMS,
    VOC_CLASSES,
    DatasetError,
    EvalSet,
    class_queries,
    default_data_root,
    load_coco,
    load_coco_style_labels,
    load_voc,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COCO_ANN = SHARED / "coco" / "annotations"


def need(*paths: Path) -> None:
    """Skip the test when a real data file is not on this machine."""
    for path in paths:
        if not path.is_file():
            pytest.skip(f"real data not found: {path}")


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def tiny_coco(tmp_path) -> tuple[Path, Path]:
    """Three images: a person; a crowd of people plus a tv; nothing. Captions include a foreign image."""
    instances = write_json(tmp_path / "instances.json", {
        "images": [
            {"id": 1, "file_name": "000000000001.jpg"},
            {"id": 2, "file_name": "000000000002.jpg"},
            {"id": 3, "file_name": "000000000003.jpg"},
        ],
        "categories": [
            {"id": 1, "name": "person"}, {"id": 72, "name": "tv"}, {"id": 77, "name": "cell phone"}
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 1, "bbox": [5, 5, 5, 5]},
            {"id": 12, "image_id": 2, "category_id": 1, "bbox": [0, 0, 50, 50], "iscrowd": 1},
            {"id": 13, "image_id": 2, "category_id": 72, "bbox": [1, 1, 9, 9], "iscrowd": 0},
        ],
    })
    captions = write_json(tmp_path / "captions.json", {
        "images": [{"id": 1}, {"id": 2}, {"id": 99}],
        "annotations": [
            {"id": 1, "image_id": 1, "caption": "A man standing. "},
            {"id": 2, "image_id": 2, "caption": "A crowd watching television."},
            {"id": 3, "image_id": 1, "caption": "Someone outside."},
            {"id": 4, "image_id": 99, "caption": "Not in the evaluation set."},
        ],
    })
    return instances, captions


def test_coco_labels_ignore_crowd_and_keep_unannotated_images(tiny_coco):
    instances, _ = tiny_coco
    ev = load_coco(instances)
    assert isinstance(ev, EvalSet)
    assert ev.name == "coco"
    assert ev.image_ids == ("1", "2", "3")
    assert ev.file_names["2"] == "000000000002.jpg"
    assert ev.classes == ("person", "tv", "cell phone")
    assert ev.labels == {
        "1": frozenset({"person"}),
        "2": frozenset({"tv"}),  # its only person is a crowd region: not relevant to "person"
        "3": frozenset(),  # no annotation: a negative for every class
    }
    assert ev.captions == {}


def test_coco_captions_are_merged_by_image_id(tiny_coco):
    ev = load_coco(*tiny_coco)
    assert ev.image_ids == ("1", "2", "3")  # the set is the annotation file's images, not the captions'
    assert ev.captions == {
        "1": ("A man standing.", "Someone outside."),
        "2": ("A crowd watching television.",),
    }


def test_coco_can_be_restricted_to_some_images_by_id_or_file_name(tiny_coco):
    ev = load_coco(*tiny_coco, images={"1", "000000000003.jpg", "12345"})
    assert ev.image_ids == ("1", "3")
    assert set(ev.file_names) == set(ev.labels) == {"1", "3"}
    assert set(ev.captions) == {"1"}
    with pytest.raises(DatasetError, match="none of the 1 requested"):
        load_coco(tiny_coco[0], images={"nope.jpg"})


def one_line_error(call, *args, match: str, **kwargs) -> str:
    with pytest.raises(DatasetError, match=match) as info:
        call(*args, **kwargs)
    assert isinstance(info.value, MllmretError)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_coco_errors_are_one_line(tmp_path, tiny_coco):
    instances, _ = tiny_coco
    one_line_error(load_coco, tmp_path / "missing.json", match="annotations file not found")
    one_line_error(load_coco, instances, tmp_path / "missing.json", match="captions file not found")

    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [\n  {"id": 1,,}\n]}')
    message = one_line_error(load_coco, broken, match="malformed JSON")
    assert "line 2" in message and "broken.json" in message

    wrong = write_json(tmp_path / "list.json", [1, 2])
    one_line_error(load_coco, wrong, match="expected a JSON object")
    no_categories = write_json(tmp_path / "nocat.json", {"images": [], "annotations": []})
    one_line_error(load_coco, no_categories, match="no 'categories' list")

    data = json.loads(instances.read_text())
    data["annotations"].append({"id": 20, "image_id": 1, "category_id": 5})
    one_line_error(load_coco, write_json(tmp_path / "badcat.json", data), match="category 5")
    data["annotations"][-1] = {"id": 20, "image_id": 7, "category_id": 1}
    one_line_error(load_coco, write_json(tmp_path / "badimg.json", data), match="image 7")

    other = write_json(tmp_path / "other_captions.json", {"annotations": [{"image_id": 99, "caption": "x"}]})
    one_line_error(load_coco, instances, other, match="wrong captions file")


def test_coco_style_image_level_labels_without_boxes(tmp_path):
    folder = tmp_path / "voc_sentences"
    folder.mkdir()
    labels = write_json(folder / "labels.json", {
        "images": [
            {"id": 2008000001, "file_name": "2008_000001.jpg"}, {"id": 2008000002, "file_name": "x.jpg"}
        ],
        "categories": [{"id": 11, "name": "diningtable"}, {"id": 15, "name": "person"}],
        "annotations": [
            {"id": 1, "image_id": 2008000001, "category_id": 11, "iscrowd": 0},
            {"id": 2, "image_id": 2008000001, "category_id": 15, "iscrowd": 0},
        ],
    })
    ev = load_coco_style_labels(labels)
    assert ev.name == "voc_sentences"  # named after the folder unless name= is given
    assert ev.labels == {"2008000001": frozenset({"diningtable", "person"}), "2008000002": frozenset()}
    assert load_coco_style_labels(labels, name="voc").name == "voc"


# --- real data (skipped when ../shared/data is absent) ---------------------------------------------------


def test_real_coco_labels_val2017_with_captions():
    need(COCO_ANN / "labels_val2017.json", COCO_ANN / "captions_val2017.json")
    ev = load_coco(COCO_ANN / "labels_val2017.json", COCO_ANN / "captions_val2017.json")
    assert len(ev.image_ids) == 4_050
    assert ev.classes == COCO_CLASSES
    assert sum(not labels for labels in ev.labels.values()) == 38
    assert set().union(*ev.labels.values()) == set(COCO_CLASSES)  # all 80 classes occur
    assert sum(len(labels) for labels in ev.labels.values()) == 11_815  # distinct (image, class) pairs
    assert len(ev.captions) == 4_050
    assert sum(len(c) for c in ev.captions.values()) == 20_263
    assert ev.file_names["139"] == "000000000139.jpg"


def test_real_coco_instances_agree_with_box_labels():
    need(COCO_ANN / "instances_val2017.json", COCO_ANN / "labels_val2017.json")
    official = load_coco(COCO_ANN / "instances_val2017.json")
    assert len(official.image_ids) == 154
    assert set().union(*official.labels.values()) == set(COCO_CLASSES)
    per_class = {c: sum(c in labels for labels in official.labels.values()) for c in official.classes}
    assert (per_class["person"], per_class["dining table"], per_class["hair drier"]) == (80, 25, 1)

    reconstructed = load_coco(COCO_ANN / "labels_val2017.json", images=set(official.image_ids))
    assert set(reconstructed.image_ids) == set(official.image_ids)
    assert reconstructed.labels == official.labels  # the README's 154/154 agreement


def test_real_voc_sentences():
    folder = SHARED / "voc_sentences"
    need(folder / "labels.json", folder / "captions.json")
    ev = load_coco_style_labels(folder / "labels.json", folder / "captions.json")
    assert ev.name == "voc_sentences"
    assert len(ev.image_ids) == 792
    assert ev.classes == VOC_CLASSES
    assert sum(len(labels) for labels in ev.labels.values()) == 1_413
    assert all(len(c) == 50 for c in ev.captions.values()) and len(ev.captions) == 792
    assert ev.file_names["2008006488"] == "2008_006488.jpg"


def test_real_vlm_caption_labels():
    labels = SHARED / "vlm_captions" / "labels.json"
    need(labels)
    ev = load_coco_style_labels(labels)
    assert ev.name == "vlm_captions"
    assert len(ev.image_ids) == 2_923
    assert ev.classes == COCO_CLASSES
    assert sum(not labels for labels in ev.labels.values()) == 22
    assert sum(len(labels) for labels in ev.labels.values()) == 8_434
    assert ev.captions == {}


# --- PASCAL VOC XML -------------------------------------------------------------------------------------


def voc_xml(file_name: str, *objects: tuple[str, int | None]) -> str:
    parts = [f"<annotation><folder>VOC2012</folder><filename>{file_name}</filename>"]
    for name, difficult in objects:
        flag = "" if difficult is None else f"<difficult>{difficult}</difficult>"
        parts.append(f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>{flag}"
                     "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>")
    return "".join(parts) + "</annotation>"


@pytest.fixture
def voc_root(tmp_path) -> Path:
    """VOC folder: a difficult cat with a dog; a difficult and a plain person; no objects; one not in val."""
    root = tmp_path / "VOC2012"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    xml = {
        "2008_000001": voc_xml("2008_000001.jpg", ("cat", 1), ("dog", 0)),
        "2008_000002": voc_xml("2008_000002.jpg", ("person", 1), ("person", None), ("pottedplant", 1)),
        "2008_000003": voc_xml("2008_000003.jpg"),
        "2008_000004": voc_xml("2008_000004.jpg", ("not-a-voc-class", 0)),
    }
    for stem, text in xml.items():
        (root / "Annotations" / f"{stem}.xml").write_text(text)
    (root / "ImageSets" / "Main" / "val.txt").write_text("2008_000001\n2008_000002\n\n2008_000003\n")
    (root / "ImageSets" / "Main" / "train.txt").write_text("2008_000004\n")
    return root


def test_voc_difficult_objects_do_not_make_an_image_relevant(voc_root):
    ev = load_voc(voc_root)
    assert ev.name == "voc"
    assert ev.image_ids == ("2008_000001", "2008_000002", "2008_000003")  # train-only XML never read
    assert ev.classes == VOC_CLASSES
    assert ev.file_names["2008_000001"] == "2008_000001.jpg"
    assert ev.labels == {
        "2008_000001": frozenset({"dog"}),  # its only cat is difficult
        "2008_000002": frozenset({"person"}),  # one person is not difficult; the plant is
        "2008_000003": frozenset(),
    }
    assert ev.captions == {}


def test_voc_keep_difficult(voc_root):
    ev = load_voc(voc_root, keep_difficult=True)
    assert ev.labels["2008_000001"] == {"cat", "dog"}
    assert ev.labels["2008_000002"] == {"person", "pottedplant"}


def test_voc_errors_are_one_line(voc_root, tmp_path):
    one_line_error(load_voc, tmp_path, match="VOC split file not found")
    one_line_error(load_voc, voc_root, split="../val", match="plain name")
    one_line_error(load_voc, voc_root, split="train", match="'not-a-voc-class' is not one of the 20")

    (voc_root / "ImageSets" / "Main" / "test.txt").write_text("2008_000009\n")
    one_line_error(load_voc, voc_root, split="test", match="VOC annotation not found")

    (voc_root / "Annotations" / "2008_000003.xml").write_text("<annotation><object>\n<name>cat</name>")
    one_line_error(load_voc, voc_root, match="malformed VOC annotation")


# --- queries --------------------------------------------------------------------------------------------


def test_class_queries_split_joined_voc_names_and_keep_natural_ones():
    natural = ["sports ball", "hair drier", "tv", "traffic_light"]
    assert class_queries(VOC_CLASSES) | class_queries(natural) == {
        **{c: c for c in VOC_CLASSES},
        "diningtable": "dining table",
        "pottedplant": "potted plant",
        "tvmonitor": "tv monitor",
        "sports ball": "sports ball",
        "hair drier": "hair drier",
        "tv": "tv",
        "traffic_light": "traffic light",
    }
    assert class_queries(["aeroplane", "motorbike", "sofa"]) == {
        "aeroplane": "aeroplane", "motorbike": "motorbike", "sofa": "sofa"
    }
    assert class_queries(["t-shirt"]) == {"t-shirt": "t shirt"}
    assert set(QUERY_NAMES) <= set(VOC_CLASSES)


def test_synonym_expansion_is_optional_and_covers_both_datasets():
    assert class_queries(["tv"])["tv"] == "tv"
    assert class_queries(["tv"], expand=True)["tv"] == "tv television"
    assert class_queries(["diningtable"], expand=True)["diningtable"] == "dining table"  # no repeated words
    assert "airplane" in class_queries(["aeroplane"], expand=True)["aeroplane"].split()
    assert set(SYNONYMS) <= set(COCO_CLASSES) | set(VOC_CLASSES)
    assert {"person", "tv", "couch", "sofa", "motorcycle", "motorbike", "airplane", "aeroplane", "cell phone",
            "dining table", "diningtable", "bicycle"} <= set(SYNONYMS)
    assert all(name not in SYNONYMS[name] for name in SYNONYMS)


def test_default_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("MLLMRET_EVAL_DATA", str(tmp_path))
    assert default_data_root() == tmp_path
    monkeypatch.delenv("MLLMRET_EVAL_DATA")
    root = default_data_root()
    assert root is None or (root.is_dir() and root.resolve() == SHARED.resolve())
