"""Text in photos: read lines with RapidOCR (PP-OCRv4, ONNX, CPU) and turn them into index tokens.

An OCR run is a run of kind "ocr": each tile it read holds one row in `captions` whose `raw` is the JSON
of every line found ({"lines": [{"text", "box", "confidence"}]}, boxes as four [x, y] corners in the
EXIF-oriented pixels of the image, the frame tiles use) and whose `caption` is the text of the lines
confident enough to search (MIN_CONFIDENCE), one per line. Low-confidence lines stay in `raw`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import MllmretError
from ..hashing import file_sha256
from ..search.text import stem, tokenize, words

log = logging.getLogger(__name__)

BACKEND = "rapidocr"
KIND = "ocr"
EXTRA_HINT = "OCR needs the [ocr] extra: pip install -e '.[ocr]' (rapidocr-onnxruntime, wordninja)"
# Lines below this recogniser confidence are stored but not searched. Measured (bench/ocr_eval.py): at 0.7 and
# below the same hand-labelled COCO words are found and no text-free photo matches a dictionary word; 0.7
# leaves out most junk (lone CJK characters and symbols read in textures at 0.05-0.55); 0.8 loses 2% of words.
MIN_CONFIDENCE = 0.7
# Engine settings that change what is read; they are part of the run's identity. Each image is read with the
# detected boxes widened by each unclip ratio in turn (one detection, recognised twice) and the lines pooled:
# at 1.6 (RapidOCR's default) a first or last letter is often cut off at the box's edge (artoon, IGURE), at
# 2.0 neighbouring words run into one box. Measured (bench/ocr_eval.py, 154 COCO photos + rendered words):
# both together find 3.3 points more of the hand-labelled words than 1.6 alone (2.0 alone: 3.3 fewer) and 94%
# of the rendered words >= 24 px (91%, 91%), with no false dictionary match, for 1.25x the time of one.
SETTINGS: dict[str, Any] = {"text_score": 0.0, "det_limit_side_len": 736, "det_limit_type": "min",
                            "max_side_len": 2000, "use_cls": True, "det_box_thresh": 0.5,
                            "unclip_ratios": [1.6, 2.0]}
MIN_SPLIT = 7  # run-together words are split only from this length (shorter ones are rarely two words)
MIN_PART = 3  # shorter parts of a split are scraps, not words
# A misread letter (NICEAURPORT, rgbinson) is corrected to a common word one edit away from the token or from
# a stretch of it, for words of at least FUZZY_MIN letters among wordninja's FUZZY_VOCAB most frequent
# (shorter or rarer words have too many neighbours: junk read in textures would match them).
FUZZY_MIN = 6
FUZZY_VOCAB = 30000
_LETTERS = re.compile(r"[a-z]+")


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

    def __init__(self, threads: int | None = None, settings: dict[str, Any] | None = None) -> None:
        try:
            import rapidocr_onnxruntime
        except ImportError as e:
            raise MllmretError(EXTRA_HINT) from e
        self._package = Path(rapidocr_onnxruntime.__file__).parent
        self._threads = threads
        self._settings = {**SETTINGS, **(settings or {})}  # other settings: for measuring them
        self._engine = None

    @property
    def model_id(self) -> str:
        """Package version and the model files' names and hashes: a new model makes a new run."""
        return f"rapidocr-onnxruntime {metadata.version('rapidocr-onnxruntime')}: " + ", ".join(
            f"{p.stem} {_short_hash(p)}" for p in sorted((self._package / "models").glob("*.onnx")))

    def params(self) -> dict[str, Any]:
        """The settings that change what is read."""
        return dict(self._settings)

    def _load(self):
        if self._engine is None:
            from rapidocr_onnxruntime import RapidOCR

            threads = {} if self._threads is None else {"intra_op_num_threads": self._threads}
            kwargs = {k: v for k, v in self._settings.items() if k != "unclip_ratios"}
            self._engine = RapidOCR(**kwargs, **threads)
            det = getattr(self._engine, "text_det", None)
            if callable(getattr(det, "infer", None)):  # else each ratio runs the detection model again
                det.infer = _remember_last(det.infer)
        return self._engine

    def read(self, image: Image.Image) -> list[Line]:
        """Every text line in an RGB image, top to bottom for each unclip ratio, with its box and confidence;
        a line read again with a wider box is kept only if its text differs."""
        import numpy as np

        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        lines: list[Line] = []
        for ratio in self._settings["unclip_ratios"]:
            found, _ = self._load()(bgr, unclip_ratio=ratio, box_thresh=self._settings["det_box_thresh"],
                                    text_score=self._settings["text_score"])
            seen = {line.text for line in lines}
            for box, text, score in found or ():
                text = " ".join(str(text).split())
                if text and text not in seen:
                    corners = tuple((round(float(x)), round(float(y))) for x, y in box)
                    lines.append(Line(text, corners, float(score)))
        return lines


def _remember_last(infer):
    """The detection model, answering a repeat of its last input from memory (the next unclip ratio)."""
    last: list = [None, None]

    def once(x):
        key = (x.shape, hashlib.blake2b(x.tobytes(), digest_size=16).digest())
        if last[0] != key:
            last[:] = [key, infer(x)]
        return last[1]

    return once


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


def ocr_tokens(text: str, fuzzy: bool = True) -> list[str]:
    """Tokens of OCR text, line by line; a run-together word is followed by its parts, then (`fuzzy`) the
    common words that its misread letters hide. Both look at the word as read, before stemming: the stem
    of RICATOURISM is ricatour, whose parts would be rica and tour, not tourism."""
    tokens: list[str] = []
    for line in text.splitlines():
        for word in words(line):
            tokens.append(stem(word))
            tokens.extend(split_run_together(word))
            if fuzzy:
                tokens.extend(t for letters in _LETTERS.findall(word) for t in misread_words(letters))
    return tokens


def split_run_together(token: str) -> list[str]:
    """The words a run-together OCR token holds (by wordninja's word frequencies), or [] if it is one word."""
    if len(token) < MIN_SPLIT or not token.isascii() or not token.isalnum() or token.isdigit():
        return []
    ninja = _wordninja()
    if ninja is None or token in ninja[1]:
        return []
    parts = ninja[0].split(token)
    if len(parts) < 2:
        return []
    # misread letters come out as 1-2 letter scraps (BRIDGESTONEWMIA: bridgestone wmi a): keep the words
    return [t for p in parts if len(p) >= MIN_PART and not p.isdigit() for t in tokenize(p)]


def misread_words(word: str) -> list[str]:
    """The tokens of common words one edit (a letter changed, added or lost) away from the word or from a
    stretch of it (FUZZY_MIN+ letters): niceaurport -> airport, rgbinson -> robinson. Stretches that are words
    as they are (bridgestone in bridgestonewmia) are kept first, then longer stretches go first, so letters
    are never read again as the neighbour of a part of a word (report in aurport, makeover in makepoverty)."""
    if len(word) < FUZZY_MIN or not word.isascii():
        return []
    vocab = _fuzzy_vocab()
    if vocab is None or word in vocab[1]:  # a word spelled right is not corrected
        return []
    # letters already part of a word: of a common word wordninja finds (blue|shop, never bluish in bluesh),
    # then of stretches that are words as they are, longer first
    taken, at = [False] * len(word), 0
    for part in vocab[3].split(word):
        if len(part) >= MIN_PART and part in vocab[2]:
            taken[at:at + len(part)] = [True] * len(part)
        at += len(part)
    found: dict[str, None] = {}
    for exact in (True, False):
        for size in range(len(word), FUZZY_MIN - 1, -1):
            for start in range(len(word) - size + 1):
                part = word[start:start + size]
                if all(taken[start:start + size]) or (part in vocab[1]) != exact:
                    continue
                near = exact or [w for key in _deletes(part) for w in vocab[0].get(key, ())
                                 if _one_edit(part, w)]
                if near:
                    taken[start:start + size] = [True] * size
                new = [] if exact else [w for w in near if w not in word]  # not one it holds as it is
                if new:
                    found[min(new, key=vocab[2].__getitem__)] = None
    return [t for w in found for t in tokenize(w)]


def _deletes(word: str) -> list[str]:
    return [word, *{word[:i] + word[i + 1:] for i in range(len(word))}]


def _one_edit(a: str, b: str) -> bool:
    """Whether two different words are one letter changed, added or lost apart."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long = sorted((a, b), key=len)
    i = next((i for i, (x, y) in enumerate(zip(short, long, strict=False)) if x != y), len(short))
    return short[i:] == long[i + 1:]


@lru_cache(maxsize=1)
def _fuzzy_vocab():
    """Common words of FUZZY_MIN+ letters by each of their one-letter deletions, every known word, the
    common words' frequency ranks, wordninja."""
    ninja = _wordninja()
    if ninja is None:
        return None
    ranks = {w: r for r, w in enumerate(ninja[2][:FUZZY_VOCAB])}
    index: dict[str, list[str]] = {}
    for w in ranks:
        if len(w) >= FUZZY_MIN and w.isalpha() and w.isascii():
            for key in _deletes(w):
                index.setdefault(key, []).append(w)
    return index, ninja[1], ranks, ninja[0]


@lru_cache(maxsize=1)
def _wordninja():
    """wordninja and its vocabulary, or None when the [ocr] extra is absent (tokens then stay whole)."""
    try:
        import wordninja
    except ImportError:
        log.warning("wordninja is not installed: run-together OCR words are not split (%s)", EXTRA_HINT)
        return None
    costs = wordninja.DEFAULT_LANGUAGE_MODEL._wordcost
    return wordninja, frozenset(costs), sorted(costs, key=costs.__getitem__)
