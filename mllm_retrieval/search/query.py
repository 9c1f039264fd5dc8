"""User query syntax: plain words (ranked), "quoted phrase", +must, -exclude. Never raises."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .text import tokenize

MAX_QUERY_CHARS = 2000
_PART = re.compile(r'([+-]?)"([^"]*)"?|([+-]?)(\S+)')


@dataclass(frozen=True)
class Query:
    """A parsed query; every field holds tokens from `text.tokenize`."""

    terms: tuple[str, ...] = ()
    must: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    phrases: tuple[tuple[str, ...], ...] = ()
    excluded_phrases: tuple[tuple[str, ...], ...] = ()
    text: str = ""  # the words and phrases as typed, without operators and excluded parts (for embedding)

    @property
    def ranking_terms(self) -> tuple[str, ...]:
        """Tokens that score a document: plain words, +words and phrase words, deduplicated."""
        words = [*self.terms, *self.must, *(t for p in self.phrases for t in p)]
        return tuple(dict.fromkeys(words))

    @property
    def empty(self) -> bool:
        """True when nothing in the query can rank a document."""
        return not self.ranking_terms


def parse_query(text: str) -> Query:
    """Parse user input; unbalanced quotes, operators and symbols are read as plain words."""
    text = (text or "")[:MAX_QUERY_CHARS]
    terms: list[str] = []
    must: list[str] = []
    exclude: list[str] = []
    phrases: list[tuple[str, ...]] = []
    excluded_phrases: list[tuple[str, ...]] = []
    positive: list[str] = []
    for m in _PART.finditer(text):
        if m.group(2) is not None:
            sign, tokens = m.group(1), tuple(tokenize(m.group(2)))
            if not tokens:
                continue
            if sign != "-":
                positive.append(m.group(2).strip())
            if sign == "-":
                (excluded_phrases if len(tokens) > 1 else exclude).append(
                    tokens if len(tokens) > 1 else tokens[0]
                )
            elif len(tokens) == 1:
                (must if sign == "+" else terms).append(tokens[0])
            else:
                phrases.append(tokens)
            continue
        sign, tokens = m.group(3), tokenize(m.group(4))
        if sign != "-" and tokens:
            positive.append(m.group(4))
        target = must if sign == "+" else exclude if sign == "-" else terms
        target.extend(tokens)
    excluded = set(exclude)
    return Query(
        terms=tuple(t for t in dict.fromkeys(terms) if t not in excluded),
        must=tuple(t for t in dict.fromkeys(must) if t not in excluded),
        exclude=tuple(dict.fromkeys(exclude)),
        phrases=tuple(dict.fromkeys(phrases)),
        excluded_phrases=tuple(dict.fromkeys(excluded_phrases)),
        text=" ".join(positive),
    )


def contains_phrase(tokens: list[str], phrase: tuple[str, ...]) -> bool:
    """True when `phrase` occurs as consecutive tokens."""
    n = len(phrase)
    first = phrase[0]
    return any(
        tokens[i] == first and tuple(tokens[i : i + n]) == phrase
        for i in range(len(tokens) - n + 1)
    )


def why_empty(text: str) -> str:
    """Why a query has nothing to rank by, naming the words that were ignored and why (one line)."""
    if not (text or "").strip():
        return "type at least one word to look for"
    ignored, excluded = [], []
    for m in _PART.finditer(text[:MAX_QUERY_CHARS]):
        sign, raw = (m.group(1), m.group(2)) if m.group(2) is not None else (m.group(3), m.group(4))
        (excluded if sign == "-" else ignored).append(raw.strip())
    common = [w for w in ignored if w and not tokenize(w) and re.search(r"[^\W_]", w)]
    symbols = [w for w in ignored if w and not tokenize(w) and w not in common]
    parts = []
    if common:
        verb = "is" if len(common) == 1 else "are"
        parts.append(f"{_quoted(common)} {verb} ignored: too common in captions to tell images apart "
                     "(stopwords such as the, of, photo)")
    if symbols:
        parts.append(f"{_quoted(symbols)} {'has' if len(symbols) == 1 else 'have'} no letters or digits")
    if excluded and not parts:
        parts.append(f"{_quoted(['-' + w for w in excluded])} only "
                     f"exclude{'s' if len(excluded) == 1 else ''} images")
    return "nothing to search for: " + "; ".join(parts or ["no words"]) + "; add a word to look for"


def _quoted(words: list[str]) -> str:
    return ", ".join(f"'{w}'" for w in words)
