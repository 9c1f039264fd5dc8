"""Small captioned libraries for composed-search tests: a dog on a leash in a park, and its neighbours."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

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


def caption_units(db: Path) -> tuple[int, int]:
    """(units, distinct tiles) stored by caption runs: not the photos' metadata, read beside them."""
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return conn.execute("SELECT count(*), count(DISTINCT tile_id) FROM captions WHERE run_id IN "
                            "(SELECT id FROM runs WHERE kind = 'caption')").fetchone()


def wait_for_captions(db: Path, at_least: int, timeout: float) -> int:
    """Poll another process's library until it holds `at_least` captions (or the time is up); how many."""
    stored, deadline = 0, time.time() + timeout
    while time.time() < deadline and stored < at_least:
        time.sleep(0.05)
        try:
            with sqlite3.connect(db) as conn:
                stored = conn.execute("SELECT count(*) FROM captions").fetchone()[0]
        except sqlite3.OperationalError:
            pass
    return stored
