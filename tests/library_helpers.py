"""Small captioned libraries for composed-search tests: a dog on a leash in a park, and its neighbours."""

from __future__ import annotations

from test_search import FILLER, add

PARK = {
    "ref": "Tags: dog, leash, park\nCaption: A dog on a leash in a park.",
    "dogpark": "Tags: dog, park\nCaption: A dog running in a park.",
    "leashed": "Tags: dog, leash, grass\nCaption: A dog with a leash on grass.",
}


def add_library(store, captions: dict[str, str]) -> dict[str, int]:
    """One image per name with that caption, then the FILLER images; the named images' ids."""
    ids = {name: add(store, name, text) for name, text in captions.items()}
    for i, text in enumerate(FILLER):
        add(store, f"filler{i}", f"Caption: {text}.")
    return ids
