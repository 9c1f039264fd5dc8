"""A library on read-only media is searched without rebuilding its index on every call: the index goes to a
cache folder (MLLMRET_CACHE_DIR, else the data dir's cache/) keyed by the library's identity."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import pytest
from cli_helpers import mllmret
from test_search import add

from mllm_retrieval.library.identity import library_id
from mllm_retrieval.library.store import Store
from mllm_retrieval.search.index.store_index import StoreIndex
from mllm_retrieval.search.searcher import Searcher


def make_library(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "lib.db"
    with Store(db) as store:
        add(store, "zebra", "Tags: zebra, grass")
        add(store, "giraffe", "Tags: giraffe, tree")
    return db


def test_cache_dir_holds_the_derived_files_and_a_restart_loads_them(tmp_path, monkeypatch):
    db = make_library(tmp_path / "lib")
    monkeypatch.setenv("MLLMRET_CACHE_DIR", str(tmp_path / "cache"))
    with Store(db) as store:
        assert StoreIndex(store).sync() == 2
        cached = tmp_path / "cache" / library_id(store)
    assert [p.name.split(".index-")[0] for p in cached.glob("*.index-*.npz")] == ["lib.db"]
    assert not list(db.parent.glob("*.index-*"))
    with Store(db) as store:
        assert StoreIndex(store).sync() == 0, "loaded from the cache, not rebuilt"


@pytest.fixture
def read_only(tmp_path):
    """A library in a folder this process cannot write (chmod, or as root a read-only bind mount)."""
    source = make_library(tmp_path / "src").parent
    if os.geteuid() != 0:
        for p in source.iterdir():
            p.chmod(0o444)
        source.chmod(0o555)
        yield source / "lib.db"
        source.chmod(0o755)
        return
    mount = tmp_path / "ro"
    mount.mkdir()
    done = subprocess.run(["mount", "--bind", "-o", "ro", str(source), str(mount)], capture_output=True)
    if done.returncode:
        pytest.skip(f"no read-only folder can be made here as root (mount --bind -o ro: {done.stderr!r})")
    try:
        yield mount / "lib.db"
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_read_only_library_is_searched_and_its_index_kept_in_the_cache(read_only, tmp_path, caplog):
    before = sorted(p.name for p in read_only.parent.iterdir())
    with caplog.at_level(logging.WARNING), Store(read_only) as store:
        assert store.read_only
        index = StoreIndex(store)
        assert index.sync() == 2
        assert [r.path for r in Searcher(store).search("zebra")] == ["/photos/zebra.jpg"]
    notes = [r.getMessage() for r in caplog.records if "read-only" in r.getMessage()]
    assert len(notes) == 1 and str(tmp_path / "data" / "cache") in notes[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING), Store(read_only) as store:
        assert StoreIndex(store).sync() == 0, "the second search loads the cached index"
    assert not caplog.records, "the note is said once, when the cache is made"
    assert sorted(p.name for p in read_only.parent.iterdir()) == before, "nothing written beside it"


def test_writing_to_a_read_only_library_is_one_line(read_only, tmp_path):
    r = mllmret("search", "zebra", "--mode", "keyword", "--db", read_only)
    assert "zebra" in r.stdout
    src = tmp_path / "c.jsonl"
    src.write_text('{"image_id": 9, "text": "Tags: lion"}\n')
    r = mllmret("import", src, "--no-embed", "-q", "--db", read_only, ok=False)
    assert r.exit_code == 1 and "Traceback" not in r.output
