"""Evaluation sets: COCO-format labels, PASCAL VOC XML and image-level label files as one `EvalSet`.

Every loader returns an `EvalSet`: the images of the evaluation set (ids as strings, in file order), their
file names, the dataset's class names as the dataset spells them, the set of classes present in each image
(an empty set for an image with no labels: it is a negative for every class) and, when a captions file is
given, the human captions of each image.

Relevance rules
---------------
- COCO (`load_coco`, `load_coco_style_labels`): an image is relevant to a class when it has at least one
  annotation of that class with ``iscrowd`` 0 (or no ``iscrowd`` field). Crowd regions (``iscrowd == 1``)
  are ignored, as COCO's own evaluation ignores them; an image whose only instances of a class are crowd
  regions counts as non-relevant for that class. Images without any annotation stay in the set.
- VOC (`load_voc`): an object marked ``<difficult>1</difficult>`` does not make its image relevant unless
  ``keep_difficult=True``. With the default, an image whose only instances of a class are difficult counts
  as NON-relevant for that class. VOC's own protocol ignores such images (neither positive nor negative);
  image-level relevance has no "ignore", so this is the closest it allows.

Class names to queries
----------------------
`class_queries` turns class names into keyword queries. COCO's names are already natural ("sports ball",
"hair drier", "cell phone", "tv") and pass through unchanged. `QUERY_NAMES` holds the query words of the
names that need a decision, all from VOC:

==============  ===============  ====================================================
class name      query            why
==============  ===============  ====================================================
diningtable     dining table     VOC joins the words; split them
pottedplant     potted plant     VOC joins the words; split them
tvmonitor       tv monitor       VOC joins the words; split them
aeroplane       aeroplane        kept: the dataset's spelling (airplane is a synonym)
motorbike       motorbike        kept: a common word (motorcycle is a synonym)
sofa            sofa             kept: a common word (couch is a synonym)
==============  ===============  ====================================================

The default queries only repair spelling that no caption would use (joined words); they never swap one word
for another. Word choice (airplane for aeroplane, couch for sofa, television for tv) belongs to the
optional expansion condition, `class_queries(classes, expand=True)`, which appends the curated `SYNONYMS`.
Any other name passes through with underscores and hyphens replaced by spaces.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MllmretError

MAX_XML_BYTES = 1 << 20  # a VOC annotation is about 1 KB; refuse anything over 1 MiB

COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)

QUERY_NAMES: dict[str, tuple[str, ...]] = {
    "diningtable": ("dining", "table"),
    "pottedplant": ("potted", "plant"),
    "tvmonitor": ("tv", "monitor"),
    "aeroplane": ("aeroplane",),
    "motorbike": ("motorbike",),
    "sofa": ("sofa",),
}
"""Class name -> the words of its default query, for names that need a decision (see the module docstring)."""

_PERSON = ("man", "woman", "people", "child", "boy", "girl", "kid", "guy", "lady", "player")
_PLANE = ("plane", "jet", "aircraft", "airliner")
_PLANT = ("plant", "houseplant", "flowerpot")
_TABLE = ("table",)

SYNONYMS: dict[str, tuple[str, ...]] = {
    # shared by COCO and VOC
    "person": _PERSON,
    "bicycle": ("bike",),
    "bird": ("seagull", "gull", "pigeon", "duck", "parrot"),
    "boat": ("ship", "sailboat", "canoe", "kayak", "yacht"),
    "car": ("automobile", "sedan", "taxi"),
    "cat": ("kitten", "kitty"),
    "cow": ("cattle", "bull", "calf"),
    "dog": ("puppy",),
    "horse": ("pony",),
    "sheep": ("lamb",),
    "train": ("locomotive",),
    # COCO only
    "airplane": ("aeroplane", *_PLANE),
    "motorcycle": ("motorbike",),
    "truck": ("lorry",),
    "traffic light": ("stoplight", "traffic signal"),
    "fire hydrant": ("hydrant",),
    "parking meter": ("meter",),
    "backpack": ("rucksack",),
    "umbrella": ("parasol",),
    "handbag": ("purse", "bag"),
    "tie": ("necktie",),
    "suitcase": ("luggage",),
    "skis": ("ski",),
    "sports ball": ("football", "soccer", "basketball", "volleyball"),
    "baseball bat": ("bat",),
    "baseball glove": ("glove", "mitt"),
    "tennis racket": ("racket", "racquet"),
    "wine glass": ("glass", "wineglass"),
    "cup": ("mug",),
    "hot dog": ("hotdog",),
    "donut": ("doughnut",),
    "couch": ("sofa", "settee"),
    "potted plant": _PLANT,
    "dining table": _TABLE,
    "tv": ("television",),
    "laptop": ("computer", "notebook"),
    "remote": ("remote control", "controller"),
    "cell phone": ("phone", "smartphone", "cellphone", "mobile"),
    "oven": ("stove",),
    "refrigerator": ("fridge",),
    "teddy bear": ("teddy", "stuffed animal"),
    "hair drier": ("hair dryer", "hairdryer", "blow dryer"),
    "toothbrush": ("tooth brush",),
    # VOC only
    "aeroplane": ("airplane", *_PLANE),
    "motorbike": ("motorcycle",),
    "sofa": ("couch", "settee"),
    "pottedplant": _PLANT,
    "diningtable": _TABLE,
    "tvmonitor": ("television", "tv", "monitor", "screen"),
}
"""Class name -> extra query words for the OPTIONAL expansion condition; not used by default."""


class DatasetError(MllmretError):
    """An evaluation data file is missing, malformed or not in the expected format."""


@dataclass(frozen=True)
class EvalSet:
    """One evaluation set: images, file names, classes, image-level labels and optional human captions."""

    name: str
    image_ids: tuple[str, ...]
    file_names: dict[str, str]
    classes: tuple[str, ...]
    labels: dict[str, frozenset[str]]
    captions: dict[str, tuple[str, ...]]


def default_data_root() -> Path | None:
    """$MLLMRET_EVAL_DATA if set, else ../shared/data next to the repository when it exists, else None."""
    env = os.environ.get("MLLMRET_EVAL_DATA")
    if env:
        return Path(env).expanduser()
    shared = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return shared if shared.is_dir() else None


def class_queries(classes: Iterable[str], *, expand: bool = False) -> dict[str, str]:
    """Class name -> keyword query (see the module docstring); expand=True appends `SYNONYMS`."""
    queries = {}
    for name in classes:
        words = QUERY_NAMES.get(name) or tuple(re.sub(r"[_-]+", " ", name).split())
        if expand:
            words += tuple(w for phrase in SYNONYMS.get(name, ()) for w in phrase.split())
        queries[name] = " ".join(dict.fromkeys(words))
    return queries


def load_coco(annotations: Path, captions: Path | None = None, images: set[str] | None = None) -> EvalSet:
    """A COCO-format instances/labels json (+ optional COCO captions json) as an `EvalSet` named "coco".

    The evaluation set is the images of the annotations file (restricted to `images`, ids or file names,
    when given); captions of other images are dropped. Crowd annotations (iscrowd == 1) are ignored.
    """
    return _load_coco_format("coco", annotations, captions, images)


def load_coco_style_labels(
    labels: Path, captions: Path | None = None, images: set[str] | None = None, *, name: str | None = None
) -> EvalSet:
    """COCO-style image-level labels (no boxes) + optional COCO captions; named after the labels' folder."""
    return _load_coco_format(name or Path(labels).resolve().parent.name, labels, captions, images)


def load_voc(root: Path, split: str = "val", keep_difficult: bool = False) -> EvalSet:
    """A PASCAL VOC folder (Annotations/*.xml, ImageSets/Main/{split}.txt) as an `EvalSet` named "voc".

    Image ids are the names listed in the split file (e.g. "2008_000123"); file names are the XML's
    <filename> (relative to JPEGImages/). Only the split's XML files are read. Difficult objects do not
    make an image relevant unless keep_difficult (see the module docstring).
    """
    root = Path(root)
    if not re.fullmatch(r"[\w.-]+", split) or split.startswith("."):
        raise DatasetError(f"VOC split must be a plain name like 'val' or 'trainval', got {split!r}")
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        raise DatasetError(f"VOC split file not found: {str(split_file)!r}; is {str(root)!r} a VOC folder?")
    try:
        lines = split_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read VOC split file {str(split_file)!r}: {_one_line(e)}") from e
    ids = tuple(dict.fromkeys(line.split()[0] for line in lines if line.strip()))
    if not ids:
        raise DatasetError(f"VOC split file {str(split_file)!r} lists no images")
    file_names: dict[str, str] = {}
    labels: dict[str, frozenset[str]] = {}
    for image_id in ids:
        file_names[image_id], labels[image_id] = _voc_annotation(
            root / "Annotations" / f"{image_id}.xml", image_id, keep_difficult
        )
    return EvalSet("voc", ids, file_names, VOC_CLASSES, labels, {})


def _voc_annotation(path: Path, image_id: str, keep_difficult: bool) -> tuple[str, frozenset[str]]:
    """File name and relevant classes of one VOC annotation XML."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DatasetError(f"VOC annotation not found: {str(path)!r} (listed in the split file)") from None
    except OSError as e:
        raise DatasetError(f"cannot read VOC annotation {str(path)!r}: {_one_line(e)}") from e
    if size > MAX_XML_BYTES:
        raise DatasetError(f"VOC annotation {str(path)!r} is {size:,} bytes, over {MAX_XML_BYTES:,}")
    try:
        root = ET.fromstring(path.read_bytes())
    except (OSError, ET.ParseError) as e:
        raise DatasetError(f"malformed VOC annotation {str(path)!r}: {_one_line(e)}") from e
    if root.tag != "annotation":
        raise DatasetError(f"{str(path)!r} is not a VOC annotation: root element is <{root.tag}>")
    file_name = (root.findtext("filename") or "").strip() or f"{image_id}.jpg"
    present = set()
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            raise DatasetError(f"{str(path)!r}: object class {name!r} is not one of the 20 VOC classes")
        difficult = (obj.findtext("difficult") or "0").strip()
        if difficult not in ("0", "1"):
            raise DatasetError(f"{str(path)!r}: <difficult> must be 0 or 1, got {difficult!r}")
        if keep_difficult or difficult == "0":
            present.add(name)
    return file_name, frozenset(present)


def _load_coco_format(
    name: str, annotations: Path, captions: Path | None, images: set[str] | None
) -> EvalSet:
    """Shared loader for COCO instances, COCO box labels and COCO-style image-level labels."""
    data = _read_json(Path(annotations), "annotations")
    where = repr(str(annotations))
    image_rows = _list_field(data, "images", where)
    category_rows = _list_field(data, "categories", where)
    annotation_rows = _list_field(data, "annotations", where)

    file_names: dict[str, str] = {}
    for row in image_rows:
        if not isinstance(row, dict) or "id" not in row or not isinstance(row.get("file_name"), str):
            raise DatasetError(f"{where}: each of 'images' needs an 'id' and a 'file_name', got {row!r:.50}")
        image_id = str(row["id"])
        if image_id in file_names:
            raise DatasetError(f"{where}: image id {image_id} appears twice in 'images'")
        file_names[image_id] = row["file_name"]

    class_of: dict[str, str] = {}
    for row in category_rows:
        if not isinstance(row, dict) or "id" not in row or not isinstance(row.get("name"), str):
            raise DatasetError(f"{where}: each of 'categories' needs an 'id' and a 'name', got {row!r:.50}")
        if row["name"] in class_of.values() or str(row["id"]) in class_of:
            raise DatasetError(f"{where}: category {row['name']!r} (id {row['id']}) appears twice")
        class_of[str(row["id"])] = row["name"]

    present: dict[str, set[str]] = {image_id: set() for image_id in file_names}
    for row in annotation_rows:
        if not isinstance(row, dict) or "image_id" not in row or "category_id" not in row:
            raise DatasetError(f"{where}: an annotation needs 'image_id' and 'category_id', got {row!r:.50}")
        image_id, category_id = str(row["image_id"]), str(row["category_id"])
        if image_id not in present:
            raise DatasetError(f"{where}: an annotation names image {image_id}, which is not in 'images'")
        if category_id not in class_of:
            raise DatasetError(f"{where}: an annotation names category {category_id}, not in 'categories'")
        if not row.get("iscrowd"):
            present[image_id].add(class_of[category_id])

    image_ids = tuple(file_names)
    if images is not None:
        wanted = {str(i) for i in images}
        image_ids = tuple(i for i in image_ids if i in wanted or file_names[i] in wanted)
        if not image_ids:
            raise DatasetError(f"none of the {len(wanted)} requested ids or file names is in {where}")

    merged: dict[str, tuple[str, ...]] = {}
    if captions is not None:
        merged = _read_captions(Path(captions), image_ids)

    return EvalSet(
        name=name,
        image_ids=image_ids,
        file_names={i: file_names[i] for i in image_ids},
        classes=tuple(class_of.values()),
        labels={i: frozenset(present[i]) for i in image_ids},
        captions=merged,
    )


def _read_captions(path: Path, image_ids: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Image id -> captions from a COCO captions json, for the given images only, in their order."""
    data = _read_json(path, "captions")
    where = repr(str(path))
    wanted = set(image_ids)
    found: dict[str, list[str]] = {}
    for row in _list_field(data, "annotations", where):
        if not isinstance(row, dict) or "image_id" not in row or not isinstance(row.get("caption"), str):
            raise DatasetError(f"{where}: a caption needs 'image_id' and a 'caption' string, got {row!r:.50}")
        image_id = str(row["image_id"])
        if image_id in wanted:
            found.setdefault(image_id, []).append(row["caption"].strip())
    if image_ids and not found:
        raise DatasetError(f"{where}: no caption is for an image of the evaluation set; wrong captions file?")
    return {i: tuple(found[i]) for i in image_ids if i in found}


def _read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from a file, or a one-line DatasetError."""
    if not path.is_file():
        raise DatasetError(f"{what} file not found: {str(path)!r}")
    try:
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetError(
            f"malformed JSON in {what} file {str(path)!r}: line {e.lineno}, column {e.colno}: {e.msg}"
        ) from e
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read {what} file {str(path)!r}: {_one_line(e)}") from e
    if not isinstance(data, dict):
        raise DatasetError(f"{what} file {str(path)!r} is not COCO format: expected a JSON object at the top")
    return data


def _list_field(data: dict[str, Any], field: str, where: str) -> list[Any]:
    """data[field] as a list, or a DatasetError naming the file."""
    value = data.get(field)
    if not isinstance(value, list):
        raise DatasetError(f"{where} is not COCO format: it has no {field!r} list")
    return value


def _one_line(e: BaseException) -> str:
    """An exception's message on one line."""
    return " ".join(str(e).split()) or type(e).__name__
