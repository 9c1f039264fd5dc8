"""One tokeniser for documents and queries: lowercase, words, no stopwords, Snowball English stems.

Stems are the Snowball (Porter2) English stemmer's, through PyStemmer (as bm25s uses it), after a short
table of irregular plurals (men -> man, people -> person) that no suffix rule can fold: movies and movie
meet (movi), cookies and cookie, giraffes and giraffe, skiing and skis; news stays news. Measured on COCO,
VOC and published M-LLM captions against the earlier plural-only folding, macro AP rose on every set
(eval/README.md). Stems are what the index holds; `surface_words` gives back the words a person typed.

Chinese, Japanese and Korean are written without spaces, so a run of their characters is indexed as
overlapping character bigrams (as Lucene's CJK analyzer does): 东京塔 -> 东京, 京塔. A query goes through
the same function, so any two-character word inside a longer run is found; a lone character stays a token.
"""

from __future__ import annotations

import functools
import re
import unicodedata

STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
    image picture photo photograph shows showing shown depicts depicting appears seen visible
    also""".split()
)

IRREGULAR = {
    "men": "man", "women": "woman", "children": "child", "people": "person", "persons": "person",
    "mice": "mouse", "geese": "goose", "feet": "foot", "teeth": "tooth", "knives": "knife",
    "wives": "wife", "leaves": "leaf", "shelves": "shelf", "wolves": "wolf", "loaves": "loaf",
    "halves": "half", "calves": "calf", "scarves": "scarf", "oxen": "ox", "dice": "die",
    "buses": "bus", "glasses": "glass", "lenses": "lens", "tvs": "tv", "skis": "ski", "taxis": "taxi",
    "kiwis": "kiwi",
    "cacti": "cactus", "fungi": "fungus", "potatoes": "potato", "tomatoes": "tomato",
    "heroes": "hero", "mangoes": "mango", "volcanoes": "volcano", "species": "species",
    "series": "series", "sheep": "sheep", "fish": "fish", "deer": "deer", "aircraft": "aircraft",
}
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'"})
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_CJK = (
    "\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\ua960-\ua97f\uac00-\ud7af\ud7b0-\ud7ff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f"
)
_CJK_RUN = re.compile(f"[{_CJK}]+")
_HAS_CJK = re.compile(f"[{_CJK}]")
_KANA_MARKS = "\u3099\u309a"  # voicing marks: ka+mark is ga, a different sound, never an accent


@functools.lru_cache(maxsize=1 << 17)  # a library's words repeat: a lookup instead of Snowball
def stem(word: str) -> str:
    """The index form of a word: irregular plurals made singular, then the Snowball English stem."""
    word = IRREGULAR.get(word, word)
    return _stemmer().stemWord(word) if word.isalpha() else word


@functools.cache
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def fold(text: str) -> str:
    """Lowercase, compatibility forms unified, accents dropped, typographic apostrophes made ASCII; CJK
    recomposed (kana marks, Hangul kept)."""
    if text.isascii():  # nothing to decompose, drop or recompose (most captions)
        return text.lower()
    text = unicodedata.normalize("NFKD", text.lower()).translate(_APOSTROPHES)
    if not _HAS_CJK.search(text):
        return "".join(ch for ch in text if not unicodedata.combining(ch))
    text = "".join(ch for ch in text if not unicodedata.combining(ch) or ch in _KANA_MARKS)
    return unicodedata.normalize("NFC", text)


def cjk_bigrams(run: str) -> list[str]:
    """Overlapping character pairs of a CJK run; a single character stays whole."""
    return [run] if len(run) < 2 else [run[i : i + 2] for i in range(len(run) - 1)]


def _pieces(word: str) -> list[str]:
    """A word as-is, or split at script changes with its CJK runs as bigrams (iPhone手机 -> iphone, 手机)."""
    if not _HAS_CJK.search(word):
        return [word]
    out, pos = [], 0
    for m in _CJK_RUN.finditer(word):
        out.extend(p for p in [word[pos : m.start()]] if p)
        out.extend(cjk_bigrams(m.group()))
        pos = m.end()
    out.extend(p for p in [word[pos:]] if p)
    return out


def words(text: str) -> list[str]:
    """The words of a text as typed (folded, "dog's" -> dog), stopwords dropped, before stemming."""
    text = fold(text)
    cjk = _HAS_CJK.search(text)
    if not cjk and "'" not in text:  # the common case, in one pass
        return [w for w in _WORD.findall(text) if w not in STOPWORDS]
    found = []
    for match in _WORD.findall(text):
        for word in _pieces(match) if cjk else (match,):
            word = word.split("'")[0] if word.endswith("'s") else word.replace("'", "")
            if word and word not in STOPWORDS:
                found.append(word)
    return found


def tokenize(text: str) -> list[str]:
    """Words of a text, lowercased, accents folded, stopwords dropped, stemmed (see `stem`); CJK bigrams."""
    return [stem(w) for w in words(text)]


def surface_words(text: str) -> dict[str, str]:
    """Each token of a text -> the first word that gave it, as typed (lowercased): what to show a person."""
    out: dict[str, str] = {}
    for word in words(text):
        out.setdefault(stem(word), word)
    return out
