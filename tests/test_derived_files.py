"""Derived files (keyword and semantic index) are never used for another library or another state of this
one: foreign, stale, truncated, corrupt and swapped files are rebuilt with a one-line notice, and a kill -9
during a save leaves an index that loads or is rebuilt, never one that gives wrong results."""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_fusion import FakeEmbedder
from test_search import add

from mllm_retrieval.library.identity import library_id
from mllm_retrieval.library.store import Store
from mllm_retrieval.search.index.semantic_index import SemanticIndex
from mllm_retrieval.search.index.store_index import StoreIndex
from mllm_retrieval.search.searcher import Searcher


def build(db: Path, animal: str, n: int) -> list[int]:
    """A library of n images captioned with `animal`; its keyword index saved beside it."""
    with Store(db) as store:
        ids = [add(store, f"{animal}{i}", f"Tags: {animal}, grass\nCaption: A {animal} number {i}.")
               for i in range(n)]
        StoreIndex(store).sync()
    return ids


def forget(db: Path) -> None:
    """Delete a library's database (and its WAL files), keeping every derived file beside it."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def found(db: Path, word: str) -> list[str]:
    with Store(db) as store:
        return sorted(r.path.rsplit("/", 1)[-1] for r in Searcher(store).search(word, k=50))


def index_file(db: Path) -> Path:
    [path] = db.parent.glob(f"{db.name}.index-????????????.npz")  # the base, not its segments
    return path


def test_every_library_has_its_own_identity(tmp_path):
    with Store(tmp_path / "a.db") as a, Store(tmp_path / "b.db") as b:
        assert library_id(a) != library_id(b) and len(library_id(a)) == 36
    with Store(tmp_path / "a.db") as again:
        assert library_id(again) == library_id(Store(tmp_path / "a.db"))


def test_a_new_library_beside_old_index_files_never_serves_their_text(tmp_path, caplog):
    db = tmp_path / "lib.db"
    build(db, "giraffe", 5)
    forget(db)
    build(db, "zebra", 5)  # the change head reaches the old watermark again
    with caplog.at_level(logging.WARNING):
        assert found(db, "zebra") == [f"zebra{i}.jpg" for i in range(5)]
        assert found(db, "giraffe") == []


def test_a_smaller_new_library_beside_old_index_files_is_no_traceback(tmp_path, caplog):
    db = tmp_path / "lib.db"
    build(db, "giraffe", 6)
    forget(db)
    with Store(db) as store:  # fewer images, as many changes: each captioned twice
        ids = [add(store, f"zebra{i}", "Tags: zebra") for i in range(3)]
        for i in ids:
            store.db.execute("UPDATE captions SET caption = 'a zebra' WHERE tile_id IN "
                             "(SELECT id FROM tiles WHERE image_id = ?)", [i])
        assert store.change_head() >= 6
    with caplog.at_level(logging.WARNING):
        assert found(db, "zebra") == ["zebra0.jpg", "zebra1.jpg", "zebra2.jpg"]
        assert found(db, "giraffe") == []
    assert any("another library" in r.getMessage() for r in caplog.records)


def test_index_files_swapped_between_two_libraries_are_rebuilt(tmp_path, caplog):
    a, b = tmp_path / "a" / "lib.db", tmp_path / "b" / "lib.db"
    a.parent.mkdir()
    b.parent.mkdir()
    build(a, "giraffe", 4)
    build(b, "zebra", 4)
    shutil.copy(index_file(a), index_file(b))  # same name, same watermark: only the identity differs
    with caplog.at_level(logging.WARNING):
        assert found(b, "zebra") == [f"zebra{i}.jpg" for i in range(4)]
        assert found(b, "giraffe") == []
    [notice] = [r.getMessage() for r in caplog.records if "rebuilding the search index" in r.getMessage()]
    assert "another library" in notice and "\n" not in notice
    with Store(b) as store:  # rebuilt and saved: the next start loads it
        assert StoreIndex(store).sync() == 0


@pytest.mark.parametrize("damage", ["truncated", "random bytes", "empty"])
def test_a_damaged_keyword_index_is_rebuilt(tmp_path, caplog, damage):
    db = tmp_path / "lib.db"
    build(db, "giraffe", 5)
    path = index_file(db)
    data = bytearray(path.read_bytes())
    rng = random.Random(7)
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "random bytes":
        for _ in range(64):
            data[rng.randrange(len(data))] = rng.randrange(256)
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        assert found(db, "giraffe") == [f"giraffe{i}.jpg" for i in range(5)]
    assert any("rebuilding the search index" in r.getMessage() for r in caplog.records)


def test_a_restored_older_history_of_the_same_library_is_not_trusted(tmp_path):
    db = tmp_path / "lib.db"
    build(db, "giraffe", 3)
    shutil.copy(db, tmp_path / "backup.db")  # a backup before more changes
    with Store(db) as store:
        for i in range(3):
            add(store, f"lion{i}", "Tags: lion")
        StoreIndex(store).sync()
    saved = index_file(db).read_bytes()
    forget(db)
    shutil.copy(tmp_path / "backup.db", db)  # restored: same identity, older state
    with Store(db) as store:  # then other changes reach the same head
        for i in range(3):
            add(store, f"zebra{i}", "Tags: zebra")
    index_file(db).write_bytes(saved)
    assert found(db, "lion") == []
    assert found(db, "zebra") == [f"zebra{i}.jpg" for i in range(3)]


def semantic(store, fake=None) -> SemanticIndex:
    return SemanticIndex(store, embedder=fake or FakeEmbedder())


def test_semantic_index_of_another_library_is_re_embedded(tmp_path, caplog):
    db = tmp_path / "lib.db"
    with Store(db) as store:
        [add(store, f"cat{i}", "Caption: a cat.") for i in range(4)]
        semantic(store).sync()
    forget(db)
    with Store(db) as store:
        dogs = [add(store, f"dog{i}", "Caption: a dog.") for i in range(4)]
        with caplog.at_level(logging.WARNING):
            index = semantic(store)
            assert index.sync() == 4, "re-embedded, not loaded"
        hits = index.search(FakeEmbedder().encode_query("dog"), 4)
        assert sorted(i for i, _ in hits) == dogs and all(s > 0.99 for _, s in hits)
    assert any("another library" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("damage", ["truncated rows", "flipped rows", "truncated sidecar"])
def test_a_damaged_semantic_index_is_re_embedded(tmp_path, caplog, damage):
    db = tmp_path / "lib.db"
    with Store(db) as store:
        ids = [add(store, f"cat{i}", "Caption: a cat.") for i in range(4)]
        semantic(store).sync()
    [rows] = tmp_path.glob("*.semantic-*.f32")
    [sidecar] = tmp_path.glob("*.semantic-*.npz")
    if damage == "truncated rows":
        rows.write_bytes(rows.read_bytes()[:-8])
    elif damage == "flipped rows":
        vectors = np.fromfile(rows, dtype=np.float32)
        vectors[:] = -vectors  # the same size, wrong numbers: only the checksum can tell
        vectors.tofile(rows)
    else:
        sidecar.write_bytes(sidecar.read_bytes()[:100])
    with Store(db) as store, caplog.at_level(logging.WARNING):
        index = semantic(store)
        assert index.sync() == 4
        assert sorted(i for i, s in index.search(FakeEmbedder().encode_query("cat"), 4) if s > 0.99) == ids
    assert any("re-embedding" in r.getMessage() for r in caplog.records)


SAVER = """
import sys, time
from mllm_retrieval.library.store import Store
from mllm_retrieval.search.index.store_index import StoreIndex
store = Store(sys.argv[1])
index = StoreIndex(store)
index.sync()
print("ready", flush=True)
while True:
    index._save()
"""


def killed_while_running(code: str, args: list[str], delays: list[float]):
    """Run `python -c code args` once per delay: wait for it to print "ready", let it work for the delay,
    kill -9 it; yields after each kill."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for delay in delays:
        proc = subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        yield


def test_kill_9_during_index_saves_leaves_a_usable_index(tmp_path):
    db = tmp_path / "lib.db"
    with Store(db) as store:
        run = store.get_or_create_run("t", "m", {})
        words = [f"w{i}" for i in range(400)]
        rng = random.Random(3)
        for i in range(1500):  # a few hundred KB of index: a save takes a while
            add(store, f"img{i}", "Tags: " + ", ".join(rng.sample(words, 12)), run=run)
        add(store, "giraffe", "Tags: giraffe, savanna", run=run)
        StoreIndex(store).sync()
    for _ in killed_while_running(SAVER, [str(db)], [0.05 + 0.13 * r for r in range(4)]):
        with Store(db) as store:
            index = StoreIndex(store)
            assert index._load(store.change_head()), "the index file on disk is always a whole one"
            fresh = StoreIndex(store, persist=False)  # rebuilt from the database
            for terms in (["giraffe"], ["w7"], ["w3", "w250"]):
                assert index.search(terms, 50) == fresh.search(terms, 50)
    leftovers = [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]
    assert len(leftovers) <= 4  # a killed save leaves at most its own temporary file
