"""One tokeniser for documents and queries: lowercase, words, no stopwords, singular nouns."""

from __future__ import annotations

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
    "buses": "bus", "glasses": "glass", "skis": "ski", "taxis": "taxi", "kiwis": "kiwi",
    "cacti": "cactus", "fungi": "fungus", "potatoes": "potato", "tomatoes": "tomato",
    "heroes": "hero", "mangoes": "mango", "volcanoes": "volcano", "species": "species",
    "series": "series", "sheep": "sheep", "fish": "fish", "deer": "deer", "aircraft": "aircraft",
}
_NO_STRIP = ("ss", "us", "is", "os", "as", "ys")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


def singular(word: str) -> str:
    """Light, noun-oriented plural stemming: pigeons -> pigeon, benches -> bench, skies -> sky."""
    if word in IRREGULAR:
        return IRREGULAR[word]
    if len(word) <= 2 or not word.endswith("s") or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zzes")):
        return word[:-2]
    if word.endswith(_NO_STRIP):
        return word
    return word[:-1]


def tokenize(text: str) -> list[str]:
    """Words of a text, lowercased, accents folded, stopwords dropped, plurals made singular."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    tokens = []
    for word in _WORD.findall(text):
        word = word.split("'")[0] if word.endswith("'s") else word.replace("'", "")
        if word and word not in STOPWORDS:
            tokens.append(singular(word))
    return tokens
