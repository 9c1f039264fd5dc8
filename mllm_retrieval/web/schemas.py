"""The JSON API's response models (their schema is the API's documentation at /api/openapi.json)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from ..search.modes import MODES

Mode = Literal[MODES]  # the API's schema lists them


class SearchResult(BaseModel):
    """One ranked image (the search result's fields, plus what the page shows)."""

    model_config = ConfigDict(extra="allow")
    rank: int
    image_id: int
    score: float
    path: str | None
    external_id: str | None
    matched: list[str]
    tile: str | None
    box: list[int] | None
    width: int | None
    height: int | None
    tags: list[str]
    thumbnail: str | None
    url: str
    via: str  # keyword | meaning | both
    bm25: float | None
    similarity: float | None


class LikeInfo(BaseModel):
    """The reference of a composed search and what became of its words (`modification` is `q`)."""

    image_id: int
    path: str | None
    external_id: str | None
    width: int | None
    height: int | None
    thumbnail: str | None
    url: str
    modification: str
    kept: list[str]  # reference words searched for (at half weight)
    dropped: list[str]  # reference words the modification removes
    added: list[str]  # words of the modification that are not the reference's
    excluded: list[str]  # words no result may hold (as -word)
    composed: str  # the text semantic ranking embeds


class SearchPage(BaseModel):
    """A page of results; `empty` names why there are none (no_database, no_captions, no_words)."""

    query: str
    mode: str
    default_mode: str
    k: int
    offset: int
    results: list[SearchResult]
    has_more: bool
    empty: str | None = None
    message: str | None = None
    hint: str | None = None
    like: LikeInfo | None = None  # a composed search's reference and words
    notice: str | None = None  # set when a search by meaning was answered by keyword (embeddings missing),
    # or results come from the keyword index as it was before the latest captions (see `stale`)
    stale: bool = False  # the keyword index is catching up in the background; these results are from before
    hidden: int = 0  # meaning-only results below the cut-off, left out (more_meaning=true shows them)
    suggested: list[str] = []  # words hybrid feedback drew from the first results (to refine by)
    more_meaning: bool = False  # the request asked for them too
