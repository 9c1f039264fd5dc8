"""Text in photos: read lines with RapidOCR (PP-OCRv4, ONNX, CPU) and turn them into index tokens.

An OCR run is a run of kind "ocr": each tile it read holds one row in `captions` whose `raw` is the JSON
of every line found ({"lines": [{"text", "box", "confidence"}]}, boxes as four [x, y] corners in the
EXIF-oriented pixels of the image, the frame tiles use) and whose `caption` is the text of the lines
confident enough to search (MIN_CONFIDENCE), one per line. Low-confidence lines stay in `raw`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import MllmretError
from ..hashing import file_sha256
from ..search.text import tokenize

log = logging.getLogger(__name__)

BACKEND = "rapidocr"
KIND = "ocr"
EXTRA_HINT = "OCR needs the [ocr] extra: pip install -e '.[ocr]' (rapidocr-onnxruntime, wordninja)"
# Lines below this recogniser confidence are stored but not searched. Measured (bench/ocr_eval.py): at 0.7 and
# below the same hand-labelled COCO words are found and no text-free photo matches a dictionary word; 0.7
# leaves out most junk (lone CJK characters and symbols read in textures at 0.05-0.55); 0.8 loses 2% of words.
MIN_CONFIDENCE = 0.7
# Engine settings that change what is read; they are part of the run's identity.
SETTINGS: dict[str, Any] = {"text_score": 0.0, "det_limit_side_len": 736, "det_limit_type": "min",
                            "max_side_len": 2000, "use_cls": True}
MIN_SPLIT = 7  # run-together words are split only from this length (shorter ones are rarely two words)
MIN_PART = 3  # shorter parts of a split are scraps, not words


@dataclass(frozen=True)
class Line:
    """One line of text read in an image: its words, four corners in image pixels, confidence 0..1."""

    text: str
    box: tuple[tuple[int, int], ...]
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as stored in `raw`."""
        return {"text": self.text, "box": [list(p) for p in self.box],
                "confidence": round(self.confidence, 4)}


class OcrEngine:
    """RapidOCR on onnxruntime's CPU build, loaded on first use; `read` returns every line found."""

    backend = BACKEND

    def __init__(self, threads: int | None = None) -> None:
        try:
            import rapidocr_onnxruntime
        except ImportError as e:
            raise MllmretError(EXTRA_HINT) from e
        self._package = Path(rapidocr_onnxruntime.__file__).parent
        self._threads = threads
        self._engine = None

    @property
    def model_id(self) -> str:
        """Package version and the model files' names and hashes: a new model makes a new run."""
        return f"rapidocr-onnxruntime {metadata.version('rapidocr-onnxruntime')}: " + ", ".join(
            f"{p.stem} {_short_hash(p)}" for p in sorted((self._package / "models").glob("*.onnx")))

    def params(self) -> dict[str, Any]:
        """The settings that change what is read."""
        return dict(SETTINGS)

    def _load(self):
        if self._engine is None:
            from rapidocr_onnxruntime import RapidOCR

            threads = {} if self._threads is None else {"intra_op_num_threads": self._threads}
            self._engine = RapidOCR(text_score=SETTINGS["text_score"], use_cls=SETTINGS["use_cls"],
                                    max_side_len=SETTINGS["max_side_len"],
                                    det_limit_side_len=SETTINGS["det_limit_side_len"],
                                    det_limit_type=SETTINGS["det_limit_type"], **threads)
        return self._engine

    def read(self, image: Image.Image) -> list[Line]:
        """Every text line in an RGB image, top to bottom, with its box and confidence."""
        import numpy as np

        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        found, _ = self._load()(bgr)
        lines = []
        for box, text, score in found or ():
            text = " ".join(str(text).split())
            if text:
                corners = tuple((round(float(x)), round(float(y))) for x, y in box)
                lines.append(Line(text, corners, float(score)))
        return lines


@lru_cache(maxsize=8)
def _short_hash(path: Path) -> str:
    return file_sha256(path)[:12]


def lines_raw(lines: list[Line]) -> str:
    """The stored form of every line read in one tile."""
    return json.dumps({"lines": [line.to_dict() for line in lines]}, ensure_ascii=False)


def searchable_text(lines: list[Line], min_confidence: float = MIN_CONFIDENCE) -> str:
    """The text of the lines confident enough to search, one per line."""
    return "\n".join(line.text for line in lines if line.confidence >= min_confidence)


def parse_lines(raw: str) -> list[Line]:
    """Lines from their stored JSON; anything malformed is read as no lines."""
    try:
        items = json.loads(raw).get("lines", [])
        return [Line(str(i["text"]), tuple((int(x), int(y)) for x, y in i["box"]), float(i["confidence"]))
                for i in items]
    except (ValueError, TypeError, KeyError, AttributeError):
        return []


def ocr_tokens(text: str) -> list[str]:
    """Tokens of OCR text, line by line; a run-together word is followed by its parts."""
    tokens: list[str] = []
    for line in text.splitlines():
        for token in tokenize(line):
            tokens.append(token)
            tokens.extend(split_run_together(token))
    return tokens


def split_run_together(token: str) -> list[str]:
    """The words a run-together OCR token holds (by wordninja's word frequencies), or [] if it is one word."""
    if len(token) < MIN_SPLIT or not token.isascii() or not token.isalnum() or token.isdigit():
        return []
    words = _wordninja()
    if words is None or token in words[1]:
        return []
    parts = words[0].split(token)
    if len(parts) < 2:
        return []
    # misread letters come out as 1-2 letter scraps (BRIDGESTONEWMIA: bridgestone wmi a): keep the words
    return [t for p in parts if len(p) >= MIN_PART and not p.isdigit() for t in tokenize(p)]


@lru_cache(maxsize=1)
def _wordninja():
    """wordninja and its vocabulary, or None when the [ocr] extra is absent (tokens then stay whole)."""
    try:
        import wordninja
    except ImportError:
        log.warning("wordninja is not installed: run-together OCR words are not split (%s)", EXTRA_HINT)
        return None
    return wordninja, frozenset(wordninja.DEFAULT_LANGUAGE_MODEL._wordcost)
